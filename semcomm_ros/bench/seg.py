"""``semcomm bench seg``: segmenter mIoU and CPU latency on held-out generated frames.

Held-out frames come from scene seeds the training never saw (``splits.SEG_HELDOUT_SEED0`` onwards),
at 512x512. mIoU is per frame the mean IoU over the classes present in the ground truth or the
prediction (table included), then averaged over frames; it is also given on frames degraded like
synthesized ones (downscale 4x and 8x with area filtering, bicubic upscale back to 512x512).
Latency is the median wall time of ``seg(rgb)`` for a 512x512 frame with the given threads, and its
process CPU time (summed over threads), which other jobs on a shared machine do not inflate as much:
on idle cores the wall time is about CPU time / threads. ``--runtime torch onnx`` times both runtimes
of the ultralytics segmenter on the same frames, interleaved frame by frame, and prints their mIoU
difference and how many pixels their label maps share.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from semcomm_ros.eval.metrics import class_iou, miou
from semcomm_ros.scenes.splits import SEG_HELDOUT_SEED0
from semcomm_ros.segmentation import load_config, load_segmenter
from semcomm_ros.segmentation.degrade import down_up
from semcomm_ros.segmentation.onnx_runtime import RUNTIMES
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
    parser.add_argument("--threads", type=int, default=2,
                        help="CPU threads for the latency figure (ONNX Runtime's, or torch's)")
    parser.add_argument("--runtime", nargs="+", choices=RUNTIMES, default=None,
                        help="ultralytics runtime(s), timed on the same frames, interleaved frame by frame, with "
                             "their mIoU difference and pixel agreement (default: the config's)")
    parser.add_argument("--device", default=None, help="ultralytics device: cpu (default), cuda")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")


def run(args: argparse.Namespace) -> int:
    opts = {}
    if args.weights:
        opts["weights"] = args.weights
    for key in ("imgsz", "conf"):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    ultralytics = (args.backend or load_config().get("default_backend", "ultralytics")) == "ultralytics"
    if ultralytics:
        opts["threads"] = args.threads
        if args.device is not None:
            opts["device"] = args.device
    requested = list(dict.fromkeys(args.runtime or [])) if ultralytics else []
    # one segmenter per runtime, each timed on the same frames, interleaved frame by frame so that
    # other jobs on a shared machine weigh on every runtime alike
    segs = {rt: load_segmenter(args.backend, runtime=rt, **opts) for rt in requested}
    if not segs:
        seg = load_segmenter(args.backend, **opts)
        segs = {getattr(seg, "runtime", seg.backend): seg}
    frames = heldout_frames(args.frames)

    def predict(seg, rgb, lab):
        if seg.backend == "labels":  # ground truth in, ground truth out: the figure checks the plumbing, not a model
            seg.feed(lab)
        return seg(rgb)

    for seg in segs.values():
        predict(seg, *frames[0])  # warm-up (first call builds the graph)
    load_before = os.getloadavg()[0]
    variants = {"clean": None, "down4x_up": 128, "down8x_up": 64}
    scores = {n: {k: [] for k in variants} for n in segs}
    per_class: dict[str, dict[int, list[float]]] = {n: {} for n in segs}
    times = {n: [] for n in segs}
    cpu_times = {n: [] for n in segs}
    agree = []  # share of pixels where the first two runtimes' label maps agree (clean frames)
    for rgb, lab in frames:
        for name, size in variants.items():
            img = rgb if size is None else down_up(rgb, size)
            preds = []
            for n, seg in segs.items():
                t0, c0 = time.perf_counter(), time.process_time()
                pred = predict(seg, img, lab)
                dt, dc = time.perf_counter() - t0, time.process_time() - c0
                if size is None:
                    times[n].append(dt)
                    cpu_times[n].append(dc)
                    for c, iou in class_iou(pred, lab).items():
                        per_class[n].setdefault(c, []).append(iou)
                scores[n][name].append(miou(pred, lab))
                preds.append(pred)
            if size is None and len(preds) > 1:
                agree.append(float(np.mean(preds[0] == preds[1])))
    load_after = os.getloadavg()[0]
    figures = {"backend": next(iter(segs.values())).backend, "frames": len(frames), "size": "512x512",
               "threads": args.threads, "load_avg_1min": [load_before, load_after], "runtimes": {}}
    for n, seg in segs.items():
        ms, cpu = 1000 * np.asarray(times[n]), 1000 * np.asarray(cpu_times[n])
        figures["runtimes"][n] = {
            "runtime": getattr(seg, "runtime", None),
            **{f"miou_{k}": float(np.mean(v)) for k, v in scores[n].items()},
            "ms_per_frame_median": float(np.median(ms)),
            "ms_per_frame_p90": float(np.percentile(ms, 90)),
            "cpu_ms_per_frame_median": float(np.median(cpu)),
            "threads_in_effect": _threads_in_effect(seg, args.threads),
        }
    seg = next(iter(segs.values()))
    print(f"segmenter: {seg.backend}" + (f" ({getattr(seg, 'weights', '')}, imgsz {seg.imgsz}, conf {seg.conf})"
                                        if seg.backend == "ultralytics" else ""))
    print(f"held-out generated frames: {len(frames)} at 512x512 (seeds from {SEG_HELDOUT_SEED0})")
    fig = figures["runtimes"]
    print(f"{'input':<28}" + "".join(f"{'mIoU ' + n:>12}" for n in segs))
    for key, label in (("clean", "clean"), ("down4x_up", "down 4x (128) + bicubic up"),
                       ("down8x_up", "down 8x (64) + bicubic up")):
        print(f"{label:<28}" + "".join(f"{fig[n]['miou_' + key]:>12.4f}" for n in segs))
    print(f"latency per 512x512 frame, --threads {args.threads} (load average {load_before:.1f} -> {load_after:.1f} "
          f"on {os.cpu_count()} cores; CPU time = all threads, the contention-free cost):")
    # seg outlives the loop: the class names below are the last segmenter's
    for n, seg in segs.items():  # noqa: B007
        f = fig[n]
        fallback = f" (fell back to {f['runtime']})" if f["runtime"] not in (None, n) else ""
        print(f"  {n + fallback}, {f['threads_in_effect']}: wall median {f['ms_per_frame_median']:.1f} ms, "
              f"p90 {f['ms_per_frame_p90']:.1f} ms; CPU time median {f['cpu_ms_per_frame_median']:.1f} ms")
    if len(segs) > 1:
        a, b = list(segs)[:2]
        fa, fb = fig[a], fig[b]
        diff = {k: fb[f"miou_{k}"] - fa[f"miou_{k}"] for k in variants}
        figures["compare"] = {"runtimes": [a, b], **{f"miou_diff_{k}": v for k, v in diff.items()},
                              "pixel_agreement_clean": float(np.mean(agree)),
                              "speedup_wall_median": fa["ms_per_frame_median"] / fb["ms_per_frame_median"],
                              "speedup_cpu_median": fa["cpu_ms_per_frame_median"] / fb["cpu_ms_per_frame_median"]}
        c = figures["compare"]
        print(f"{b} - {a}: mIoU difference {diff['clean']:+.4f} clean, {diff['down4x_up']:+.4f} down 4x, "
              f"{diff['down8x_up']:+.4f} down 8x; label maps agree on {100 * c['pixel_agreement_clean']:.3f} % of "
              f"pixels (clean); {c['speedup_wall_median']:.2f}x the speed (wall median), "
              f"{c['speedup_cpu_median']:.2f}x less CPU time")
    names = seg.class_names
    for n in segs:
        print(f"per-class IoU (clean{', ' + n if len(segs) > 1 else ''}): "
              + ", ".join(f"{names[c]} {np.mean(v):.3f}" for c, v in sorted(per_class[n].items())))
    if args.json:
        print(json.dumps(figures))
    return 0


def _threads_in_effect(seg, threads: int) -> str:
    """What ``--threads`` came to: ultralytics' select_device resets torch's thread count at the first frame."""
    runtime = getattr(seg, "runtime", None)
    if runtime == "onnx":
        return f"{threads} ONNX Runtime threads ({seg.graph.provider})"
    if runtime == "torch":
        import torch  # deferred: heavy, and only the torch runtime's figure needs it

        n = torch.get_num_threads()
        return f"{n} torch thread{'s' * (n != 1)} in effect"
    return "no model"
