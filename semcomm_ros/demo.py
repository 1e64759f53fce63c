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

import numpy as np

from semcomm_ros.synth.config import NOISE_MODES

# Held-out scene seeds: the synthesizer trains from 100_000, the segmenter from 1_000_000 and
# 2_000_000, its benchmark uses 9_000_000+. Demo and evaluation clips start here.
EVAL_SEED0 = 9_500_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="out/demo", help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help=f"clip index; the scene seed is {EVAL_SEED0} + this")
    p.add_argument("--frames", type=int, default=40, help="frames in the clip (default: %(default)s)")
    p.add_argument("--size", type=int, default=512, help="camera resolution, square (default: %(default)s)")
    p.add_argument("--fps", type=float, default=10.0, help="camera frame rate (default: %(default)s)")
    p.add_argument("--link-kbps", type=float, default=2.0, help="link cap and baselines' total rate (default: %(default)s)")
    p.add_argument("--lowres-kbps", type=float, default=1.0, help="low-res stream target (default: %(default)s)")
    p.add_argument("--profile", default="tracked", choices=("tracked", "paper"), help="semantic codec profile")
    p.add_argument("--xi", type=float, default=None,
                   help="contour simplification tolerance xi in px (default: the profile's, paper 6, tracked 4)")
    p.add_argument("--period", type=int, default=None,
                   help="I-frame period P (default: the profile's, paper 4, tracked 32)")
    p.add_argument("--q-symbols", type=int, default=256, help="quantization symbols Q")
    p.add_argument("--model", default=None, help="synthesizer directory (default: the shipped tabletop model)")
    p.add_argument("--strength", type=float, default=None,
                   help="share of the T denoising steps run, starting from the received low-res frame "
                        "(0 < s <= 1; 1 = from pure noise as in the paper; default: the model's)")
    p.add_argument("--noise", default=None, choices=NOISE_MODES,
                   help="noise draws: each frame its own (the paper) or the first frame's for the whole "
                        "stream (less flicker); default: the model's")
    p.add_argument("--segmenter", default="ultralytics", choices=("ultralytics", "labels"),
                   help="robot-side segmentation: the shipped model, or ground-truth labels")
    p.add_argument("--device", default=None, help="torch device for synthesis (default: cuda if present, else cpu)")
    p.add_argument("--baselines", default="hevc", help="comma-separated classical codecs at the same rate "
                   "(hevc, av1, vp9; 'none' to skip)")
    p.add_argument("--no-video", action="store_true", help="skip the MP4 (the PNG strip and metrics are still written)")


def _check(args) -> None:
    if args.frames < 2:
        raise ValueError(f"--frames must be >= 2, got {args.frames}")
    if args.size % 32 or not 64 <= args.size <= 2048:
        raise ValueError(f"--size must be a multiple of 32 within 64..2048, got {args.size}")
    if not 1 <= args.fps <= 60:
        raise ValueError(f"--fps must be within 1..60, got {args.fps}")
    if args.link_kbps <= 0 or args.lowres_kbps <= 0:
        raise ValueError("--link-kbps and --lowres-kbps must be > 0")
    if args.lowres_kbps >= args.link_kbps:
        raise ValueError(f"--lowres-kbps ({args.lowres_kbps}) must leave room on the link ({args.link_kbps} kbps) "
                         "for the semantic stream")
    from semcomm_ros.synth.config import valid_strength

    if args.strength is not None and not valid_strength(args.strength):
        raise ValueError(f"--strength must be in (0, 1], got {args.strength}")
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
    from semcomm_ros.eval.report import print_table, write_media

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
                f"strength {c['strength']:g}, noise {c['noise']}")
    print(f"link: {json.dumps(result['link'])}")
    for name, path in {**media, "metrics": out / "metrics.json"}.items():
        print(f"wrote {name}: {path}")
    return 0


def _evaluate(args) -> dict:
    from semcomm_ros.eval.report import evaluate_clip

    return evaluate_clip(
        seed=EVAL_SEED0 + args.seed, frames=args.frames, size=args.size, fps=args.fps,
        link_kbps=args.link_kbps, lowres_kbps=args.lowres_kbps, profile=args.profile, xi=args.xi,
        period=args.period, q_symbols=args.q_symbols, model=args.model, segmenter=args.segmenter,
        device=args.device, baselines=_baseline_list(args), keep_frames=True, strength=args.strength, noise=args.noise,
        references=("lowres-only", "vae-ceiling"), downscaled=("vp9",),
    )
