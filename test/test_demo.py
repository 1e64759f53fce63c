"""`semcomm demo` end to end on a small clip with a tiny saved synthesizer (the shipped model is
exercised by `make demo`; here the point is the chain, the files and the clear errors)."""

import json

import pytest

from semcomm_ros import cli
from semcomm_ros.scenes import CLASS_NAMES


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from semcomm_ros.synth import CausalSynthesizer

    path = tmp_path_factory.mktemp("model") / "tiny"
    CausalSynthesizer.tiny(resolution=64, num_classes=len(CLASS_NAMES)).save_pretrained(path)
    return path


def test_demo_writes_strip_video_and_metrics(tiny_model, tmp_path, capsys):
    out = tmp_path / "demo"
    rc = cli.main(["demo", "--model", str(tiny_model), "--frames", "6", "--size", "256", "--xi", "3",
                   "--out", str(out), "--segmenter", "labels", "--baselines", "hevc", "--strength", "0.5",
                   "--noise", "shared"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clip"]["strength"] == 0.5 and metrics["clip"]["noise"] == "shared"
    ours, hevc = metrics["methods"]["ours"], metrics["methods"]["hevc"]
    for row in (ours, hevc):
        for key in ("kbps", "bpp", "psnr", "ms_ssim", "miou", "flicker"):
            assert isinstance(row[key], float), key
    assert ours["fps"] > 0 and 0 < ours["kbps"] < 10
    assert abs(ours["bpp"] - ours["kbps"] * 1024 / (256 * 256 * 10)) < 1e-9
    assert metrics["link"]["semantic_kbps"] > 0 and metrics["link"]["lowres_kbps"] > 0
    assert (out / "strip.png").stat().st_size > 10_000
    assert (out / "side_by_side.mp4").stat().st_size > 1_000
    # the honest rows, on the same transmission
    low, ceiling, vp9 = (metrics["methods"][k] for k in ("lowres-only", "vae-ceiling", "vp9-2kbps"))
    assert abs(low["kbps"] - metrics["link"]["lowres_kbps"]) < 1e-9  # it uses the low-res stream only
    assert ceiling["kbps"] is None and isinstance(ceiling["miou"], float)  # clean frames: nothing sent
    assert vp9["reached_target"] and vp9["kbps"] <= 2.0 and vp9["coded_size"] < 256
    printed = capsys.readouterr().out
    assert "ours" in printed and "hevc" in printed and "psnr" in printed
    assert "lowres-only" in printed and "vae-ceiling" in printed and "vp9-2kbps" in printed
    assert "ours at 64x64, T=4, W=3, onnx runtime, strength 0.5, noise shared" in printed


@pytest.mark.parametrize("argv, message", [
    (["--frames", "1"], "--frames"),
    (["--size", "100"], "--size"),
    (["--lowres-kbps", "3"], "room on the link"),
    (["--baselines", "mpeg2"], "unknown baseline"),
    (["--strength", "0"], "--strength"),
])
def test_bad_options_are_refused_clearly(argv, message, capsys, tmp_path):
    assert cli.main(["demo", "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_model_names_the_path(tmp_path, capsys):
    rc = cli.main(["demo", "--model", str(tmp_path / "nowhere"), "--frames", "2", "--size", "64",
                   "--segmenter", "labels", "--baselines", "none", "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "nowhere" in capsys.readouterr().err
