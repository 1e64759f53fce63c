"""``semcomm eval``: the paper's Table II layout on held-out tabletop clips.

Rows: ours (full) and one module switched off each (lambda_R, lambda_C, lambda_T, lambda_rho = 0); what
the operator would have without the synthesizer on the same transmission (the received low-res frame
upsampled; rho on it without denoising) and the backbone's reconstruction ceiling; VP9/AV1 given the
whole link rate on downscaled frames; HEVC/AV1/VP9 at the camera size (which cannot reach 2 kbps).
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

from semcomm_ros.eval.options import add_chain_arguments, chain_kwargs, check_chain_arguments
from semcomm_ros.eval.report import ABLATIONS, COLUMNS, DOWNSCALED, REFERENCES, evaluate_clip, print_table
from semcomm_ros.scenes.splits import TABLE_SEED0
from semcomm_ros.segmentation import load_segmenter

BASELINES = ("hevc", "av1", "vp9")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clips", type=int, default=4, help="held-out clips (default: %(default)s)")
    add_chain_arguments(p, frames=40)
    p.add_argument("--out", default="out/eval", help="folder for table.json and table.md (default: %(default)s)")


def run(args) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.clips < 1:
            raise ValueError(f"--clips must be >= 1, got {args.clips}")
        check_chain_arguments(args)
    except ValueError as exc:
        print(f"semcomm eval: {exc}", file=sys.stderr)
        return 2
    # deferred: imports torch (~2 s), which `semcomm eval --help` need not load
    from semcomm_ros.synth import CausalSynthesizer

    seg = load_segmenter()
    synth = CausalSynthesizer.from_pretrained(args.model, device=args.device, runtime=args.runtime)
    per_clip = []
    for i in range(args.clips):
        seed = TABLE_SEED0 + i
        print(f"clip {i + 1}/{args.clips} (scene seed {seed})", flush=True)
        res = evaluate_clip(seed=seed, **chain_kwargs(args), baselines=BASELINES, variants=ABLATIONS, synth=synth,
                            seg=seg, references=REFERENCES, downscaled=DOWNSCALED)
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
             f"{clip0['synth_resolution'][1]}, T={clip0['steps']}, W={clip0['window']}, {clip0['runtime']} runtime, "
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
