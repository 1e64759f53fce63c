"""The ``semcomm`` command line (also ``python -m semcomm_ros``).

Each subcommand lives in its own module, which defines ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their subcommand runs, so ``--help`` stays
fast (no torch import). A subcommand is listed only once its module exists.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

_PKG = Path(__file__).resolve().parent

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

# benchmarks: ``semcomm bench <name>``
BENCHES: dict[str, tuple[str, str]] = {
    "semantic": ("semcomm_ros.codec.bench_semantic", "semantic codec rate-distortion (paper Fig. 6)"),
    "lowres": ("semcomm_ros.codec.bench_lowres", "low-res stream rate control and HEVC/AV1/VP9 baselines"),
    "seg": ("semcomm_ros.segmentation.bench", "segmenter mIoU and CPU latency"),
    "synth": ("semcomm_ros.synth.bench", "synthesizer latency, KV-cache speed-up, parameter counts"),
    "train": ("semcomm_ros.training.bench", "trainable parameters and seconds per step of each stage"),
    "ros": ("semcomm_ros.nodes.bench", "end-to-end ROS latency, decoder FPS, rate controller"),
}


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (_PKG / rel.with_suffix(".py")).is_file() or (_PKG / rel / "__init__.py").is_file()


def _available(table: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    return {name: entry for name, entry in table.items() if _exists(entry[0])}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semcomm",
        description="Ultra-low-bitrate generative semantic video communication (semcomm_ros).",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (_, help_) in _available(COMMANDS).items():
        sub.add_parser(name, help=help_, add_help=False)
    if _available(BENCHES):
        sub.add_parser("bench", help="benchmarks that print figures: " + ", ".join(_available(BENCHES)))
    return parser


def _run_module(module: str, prog: str, help_: str, argv: list[str]) -> int:
    mod = importlib.import_module(module)
    parser = argparse.ArgumentParser(prog=prog, description=help_)
    mod.add_arguments(parser)
    args = parser.parse_args(argv)
    return int(mod.run(args) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands, benches = _available(COMMANDS), _available(BENCHES)
    if not argv or argv[0] in ("-h", "--help"):
        _top_parser().print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "bench" and benches:
        if not rest or rest[0] in ("-h", "--help"):
            print("usage: semcomm bench <name> [options]\n\nbenchmarks:")
            for bname, (_, help_) in benches.items():
                print(f"  {bname:<10} {help_}")
            return 0 if rest else 2
        if rest[0] not in benches:
            print(f"semcomm bench: unknown benchmark {rest[0]!r}; choose from {', '.join(benches)}", file=sys.stderr)
            return 2
        module, help_ = benches[rest[0]]
        return _run_module(module, f"semcomm bench {rest[0]}", help_, rest[1:])
    if name not in commands:
        _top_parser().print_usage(sys.stderr)
        print(f"semcomm: unknown command {name!r}; choose from {', '.join([*commands, 'bench'])}", file=sys.stderr)
        return 2
    module, help_ = commands[name]
    return _run_module(module, f"semcomm {name}", help_, rest)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
