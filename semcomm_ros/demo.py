"""``semcomm demo``: the whole chain on a held-out tabletop clip, offline, on the shipped default.

Robot side: generate a clip the models never saw, segment it with the shipped segmenter, encode
the semantic map (paper IV-A) and the low-res stream (V-C). Link: both packet streams through a
simulated link capped at ``--link-kbps``. Operator side: decode and synthesize causally with the
shipped model (IV-B). Then compare with HEVC at the same total rate and write a side-by-side MP4,
a PNG strip, ``metrics.json`` and a printed summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from semcomm_ros.eval.options import add_chain_arguments, chain_kwargs, check_chain_arguments
from semcomm_ros.eval.report import evaluate_clip, print_table, write_media
from semcomm_ros.scenes.splits import EVAL_SEED0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="out/demo", help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help=f"clip index; the scene seed is {EVAL_SEED0} + this")
    add_chain_arguments(p, frames=40)
    p.add_argument("--xi", type=float, default=None,
                   help="contour simplification tolerance xi in px (default: the profile's, paper 6, tracked 4)")
    p.add_argument("--period", type=int, default=None,
                   help="I-frame period P (default: the profile's, paper 4, tracked 32)")
    p.add_argument("--q-symbols", type=int, default=256, help="quantization symbols Q")
    p.add_argument("--baselines", default="hevc", help="comma-separated classical codecs at the same rate "
                   "(hevc, av1, vp9; 'none' to skip)")
    p.add_argument("--no-video", action="store_true",
                   help="skip the MP4 (the PNG strip and metrics are still written)")


def _check(args) -> None:
    check_chain_arguments(args)
    unknown = set(_baseline_list(args)) - {"hevc", "av1", "vp9"}
    if unknown:
        raise ValueError(f"unknown baseline(s) {sorted(unknown)}; choose from hevc, av1, vp9 or none")


def _baseline_list(args) -> list[str]:
    names = [b.strip().lower() for b in args.baselines.split(",") if b.strip()]
    return [] if names == ["none"] else names


def run(args) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        _check(args)
    except ValueError as exc:
        print(f"semcomm demo: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        result = _evaluate(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"semcomm demo: {exc}", file=sys.stderr)
        return 2
    media = write_media(result, out, video=not args.no_video)
    metrics = {"clip": result["clip"], "methods": result["methods"], "link": result["link"]}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    c = result["clip"]
    print_table(result["methods"], title=f"semcomm demo: {args.frames} frames {args.size}x{args.size} "
                f"@ {args.fps:g} fps, link {args.link_kbps:g} kbps (scene seed {EVAL_SEED0 + args.seed}); ours at "
                f"{c['synth_resolution'][0]}x{c['synth_resolution'][1]}, T={c['steps']}, W={c['window']}, "
                f"{c['runtime']} runtime, strength {c['strength']:g}, noise {c['noise']}")
    print(f"link: {json.dumps(result['link'])}")
    for name, path in {**media, "metrics": out / "metrics.json"}.items():
        print(f"wrote {name}: {path}")
    return 0


def _evaluate(args) -> dict:
    return evaluate_clip(
        seed=EVAL_SEED0 + args.seed, **chain_kwargs(args), xi=args.xi, period=args.period,
        q_symbols=args.q_symbols, model=args.model, baselines=_baseline_list(args), keep_frames=True,
        references=("lowres-only", "vae-ceiling"), downscaled=("vp9",),
    )
