"""``semcomm bench seg``: segmenter mIoU and CPU latency on held-out generated frames.

Held-out frames come from scene seeds the training never saw (``splits.SEG_HELDOUT_SEED0`` onwards),
at 512x512. mIoU is per frame the mean IoU over the classes present in the ground truth or the
prediction (table included), then averaged over frames; it is also given on frames degraded like
synthesized ones (downscale 4x and 8x with area filtering, bicubic upscale back to 512x512).
Latency is the median wall time of ``seg(rgb)`` for a 512x512 frame with the given torch threads,
and its process CPU time (summed over threads), which other jobs on a shared machine do not inflate
as much: on idle cores the wall time is about CPU time / threads.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from semcomm_ros.eval.metrics import class_iou, miou
from semcomm_ros.scenes.splits import SEG_HELDOUT_SEED0
from semcomm_ros.segmentation import load_segmenter
from semcomm_ros.segmentation.degrade import down_up
from semcomm_ros.segmentation.train import generated_frames


def heldout_frames(n: int, size: int = 512):
    """``(rgb, labels)`` of ``n`` held-out generated frames (5 per clip)."""
    return [(rgb, lab) for _, _, rgb, lab, _ in generated_frames(SEG_HELDOUT_SEED0, n, size=size)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default=None, help="segmentation backend (default: the config's)")
    parser.add_argument("--frames", type=int, default=60, help="held-out 512x512 frames")
    parser.add_argument("--weights", default=None, help="ultralytics weights (default: the shipped model)")
    parser.add_argument("--imgsz", type=int, default=None)
    parser.add_argument("--conf", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for the latency figure")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")


def run(args: argparse.Namespace) -> int:
    opts = {}
    if args.weights:
        opts["weights"] = args.weights
    for key in ("imgsz", "conf"):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    if (args.backend or "ultralytics") == "ultralytics":
        opts["threads"] = args.threads
    seg = load_segmenter(args.backend, **opts)
    frames = heldout_frames(args.frames)
    if seg.backend == "labels":
        # ground truth in, ground truth out: the figure checks the plumbing, not a model
        def predict(rgb, lab):
            seg.feed(lab)
            return seg(rgb)
    else:
        def predict(rgb, lab):
            return seg(rgb)

    predict(*frames[0])  # warm-up (first call builds the graph)
    variants = {"clean": None, "down4x_up": 128, "down8x_up": 64}
    scores: dict[str, list[float]] = {k: [] for k in variants}
    per_class: dict[int, list[float]] = {}
    times, cpu_times = [], []
    for rgb, lab in frames:
        for name, size in variants.items():
            img = rgb if size is None else down_up(rgb, size)
            t0, c0 = time.perf_counter(), time.process_time()
            pred = predict(img, lab)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if size is None:
                times.append(dt)
                cpu_times.append(dc)
                for c, iou in class_iou(pred, lab).items():
                    per_class.setdefault(c, []).append(iou)
            scores[name].append(miou(pred, lab))
    ms = 1000 * np.asarray(times)
    figures = {
        "backend": seg.backend,
        "frames": len(frames),
        "size": "512x512",
        "miou_clean": float(np.mean(scores["clean"])),
        "miou_down4x_up": float(np.mean(scores["down4x_up"])),
        "miou_down8x_up": float(np.mean(scores["down8x_up"])),
        "ms_per_frame_median": float(np.median(ms)),
        "ms_per_frame_p90": float(np.percentile(ms, 90)),
        "cpu_ms_per_frame_median": float(np.median(1000 * np.asarray(cpu_times))),
        "threads": args.threads,
        "load_avg_1min": float(os.getloadavg()[0]),
    }
    print(f"segmenter: {seg.backend}" + (f" ({getattr(seg, 'weights', '')}, imgsz {seg.imgsz}, conf {seg.conf})"
                                        if seg.backend == "ultralytics" else ""))
    print(f"held-out generated frames: {len(frames)} at 512x512 (seeds from {SEG_HELDOUT_SEED0})")
    print(f"{'input':<28}{'mIoU':>8}")
    print(f"{'clean':<28}{figures['miou_clean']:>8.4f}")
    print(f"{'down 4x (128) + bicubic up':<28}{figures['miou_down4x_up']:>8.4f}")
    print(f"{'down 8x (64) + bicubic up':<28}{figures['miou_down8x_up']:>8.4f}")
    print(f"CPU latency, {args.threads} threads: median {figures['ms_per_frame_median']:.1f} ms/frame, "
          f"p90 {figures['ms_per_frame_p90']:.1f} ms/frame (load average {figures['load_avg_1min']:.1f} "
          f"on {os.cpu_count()} cores)")
    print(f"CPU time per frame (all threads, contention-free cost): median {figures['cpu_ms_per_frame_median']:.1f} ms")
    names = seg.class_names
    print("per-class IoU (clean): " + ", ".join(f"{names[c]} {np.mean(v):.3f}" for c, v in sorted(per_class.items())))
    if args.json:
        print(json.dumps(figures))
    return 0

