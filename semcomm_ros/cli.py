"""The ``semcomm`` command line (also ``python -m semcomm_ros``).

Each subcommand lives in its own module, which defines ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their subcommand runs, so ``--help`` stays
fast (no torch import). Benchmarks are the modules of ``semcomm_ros.bench`` (see its docstring).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from semcomm_ros.bench import benches

# name -> (module, one-line help). Order is the order of --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("semcomm_ros.demo", "end-to-end demo on a held-out tabletop clip (the main job)"),
    "eval": ("semcomm_ros.eval.table", "Table II evaluation: ours, ablations and HEVC/AV1/VP9"),
    "scenes": ("semcomm_ros.scenes.cli", "render generated tabletop clips to MP4/PNG"),
    "train": ("semcomm_ros.training.cli", "train backbone, Semantic Control, Restoration and Temporal Adapters"),
    "seg-train": ("semcomm_ros.segmentation.train", "train the tabletop segmentation model (ultralytics)"),
    "fuzz": ("semcomm_ros.codec.fuzz", "fuzz the semantic and low-res decoders with corrupt packets"),
    "bag": ("semcomm_ros.nodes.bag_cli", "record/inspect/replay rosbag2 files of the link topics"),
}

def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semcomm",
        description="Ultra-low-bitrate generative semantic video communication (semcomm_ros).",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    sub.add_parser("bench", help="benchmarks that print figures: " + ", ".join(benches()))
    return parser


def _run_module(module: str, prog: str, help_: str, argv: list[str]) -> int:
    mod = importlib.import_module(module)
    parser = argparse.ArgumentParser(prog=prog, description=help_)
    mod.add_arguments(parser)
    args = parser.parse_args(argv)
    return int(mod.run(args) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _top_parser().print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "bench":
        table = benches()
        if not rest or rest[0] in ("-h", "--help"):
            print("usage: semcomm bench <name> [options]\n\nbenchmarks:")
            for bname, (_, help_) in table.items():
                print(f"  {bname:<10} {help_}")
            return 0 if rest else 2
        if rest[0] not in table:
            print(f"semcomm bench: unknown benchmark {rest[0]!r}; choose from {', '.join(table)}", file=sys.stderr)
            return 2
        module, help_ = table[rest[0]]
        return _run_module(module, f"semcomm bench {rest[0]}", help_, rest[1:])
    if name not in COMMANDS:
        _top_parser().print_usage(sys.stderr)
        print(f"semcomm: unknown command {name!r}; choose from {', '.join([*COMMANDS, 'bench'])}", file=sys.stderr)
        return 2
    module, help_ = COMMANDS[name]
    return _run_module(module, f"semcomm {name}", help_, rest)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
