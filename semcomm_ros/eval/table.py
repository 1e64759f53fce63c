"""``semcomm eval``: the paper's Table II layout on held-out tabletop clips.

Rows: HEVC, AV1, VP9 at the same total rate; ours (full); lambda_R = 0; lambda_C = 0; lambda_T = 0.
Columns: kbps, bpp, PSNR, MS-SSIM, mIoU (the shipped segmenter on the output vs the exact scene
labels), flicker, LPIPS/DISTS where local weights are present, and synthesis FPS. Each clip is
transmitted once; the ablations re-run only the synthesizer on what arrived.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from semcomm_ros.synth.config import NOISE_MODES

from semcomm_ros.demo import EVAL_SEED0
from semcomm_ros.eval.report import ABLATIONS, COLUMNS, DOWNSCALED, REFERENCES, evaluate_clip, print_table

BASELINES = ("hevc", "av1", "vp9")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clips", type=int, default=4, help="held-out clips (default: %(default)s)")
    p.add_argument("--frames", type=int, default=40, help="frames per clip (default: %(default)s)")
    p.add_argument("--size", type=int, default=512, help="camera resolution, square (default: %(default)s)")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--link-kbps", type=float, default=2.0, help="total rate for every method (default: %(default)s)")
    p.add_argument("--lowres-kbps", type=float, default=1.0)
    p.add_argument("--profile", default="tracked", choices=("tracked", "paper"))
    p.add_argument("--model", default=None, help="synthesizer directory (default: the shipped model)")
    p.add_argument("--strength", type=float, default=None,
                   help="share of the T denoising steps run, starting from the received low-res frame "
                        "(0 < s <= 1; 1 = from pure noise as in the paper; default: the model's)")
    p.add_argument("--noise", default=None, choices=NOISE_MODES,
                   help="noise draws: each frame its own (the paper) or the first frame's for the whole "
                        "stream (less flicker); default: the model's")
    p.add_argument("--segmenter", default="ultralytics", choices=("ultralytics", "labels"),
                   help="robot-side segmentation (the evaluation always scores with the shipped segmenter)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="out/eval", help="folder for table.json and table.md (default: %(default)s)")


def run(args) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.clips < 1 or args.frames < 2:
        print("semcomm eval: --clips must be >= 1 and --frames >= 2", file=sys.stderr)
        return 2
    from semcomm_ros.synth.config import valid_strength

    if args.strength is not None and not valid_strength(args.strength):
        print(f"semcomm eval: --strength must be in (0, 1], got {args.strength}", file=sys.stderr)
        return 2
    from semcomm_ros.segmentation import load_segmenter
    from semcomm_ros.synth import CausalSynthesizer

    seg = load_segmenter()
    synth = CausalSynthesizer.from_pretrained(args.model, device=args.device)
    per_clip = []
    for i in range(args.clips):
        seed = EVAL_SEED0 + 1000 + i  # past the demo's clips
        print(f"clip {i + 1}/{args.clips} (scene seed {seed})", flush=True)
        res = evaluate_clip(seed=seed, frames=args.frames, size=args.size, fps=args.fps,
                            link_kbps=args.link_kbps, lowres_kbps=args.lowres_kbps, profile=args.profile,
                            segmenter=args.segmenter, baselines=BASELINES, variants=ABLATIONS, synth=synth, seg=seg,
                            strength=args.strength, noise=args.noise, references=REFERENCES,
                            downscaled=DOWNSCALED)
        per_clip.append(res)
    order = list(per_clip[0]["methods"])
    table = {}
    for name in order:
        rows = [r["methods"][name] for r in per_clip]
        table[name] = {c: (float(np.mean([row[c] for row in rows])) if all(row.get(c) is not None for row in rows)
                           else None) for c in COLUMNS}
    clip0 = per_clip[0]["clip"]
    title = (f"Table II layout: {args.clips} held-out clips x {args.frames} frames, {args.size}x{args.size} @ "
             f"{args.fps:g} fps, {args.link_kbps:g} kbps total; ours at {clip0['synth_resolution'][0]}x"
             f"{clip0['synth_resolution'][1]}, T={clip0['steps']}, W={clip0['window']}, "
             f"strength {clip0['strength']:g}, noise {clip0['noise']}")
    print_table(table, title=title)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps({"title": title, "methods": table,
                                                "clips": [{k: r[k] for k in ("clip", "methods", "link")}
                                                          for r in per_clip]}, indent=2))
    lines = [f"{title}\n", "| method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in table.items():
        cells = ["n/a" if row[c] is None else f"{row[c]:.4g}" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'table.json'} and {out / 'table.md'}")
    return 0
