import subprocess
import sys
from pathlib import Path

from semcomm_ros import cli

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_subcommand_and_benchmark(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in [*cli.COMMANDS, "bench"]:
        assert f"\n    {name}" in out
    assert cli.main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    for name in ("semantic", "lowres", "seg", "synth", "train", "ros"):
        assert f"\n  {name} " in out
    assert cli.main(["bench", "nope"]) == 2


def test_python_dash_m_matches_console_script():
    via_module = subprocess.run([sys.executable, "-m", "semcomm_ros", "--help"], capture_output=True, text=True,
                                cwd=ROOT)
    assert via_module.returncode == 0, via_module.stderr
    assert "usage: semcomm" in via_module.stdout
    assert via_module.stdout == subprocess.run(
        [str(Path(sys.executable).parent / "semcomm"), "--help"], capture_output=True, text=True, cwd=ROOT
    ).stdout


def test_unknown_command_is_a_clear_error(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
