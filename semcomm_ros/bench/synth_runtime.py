"""``semcomm bench synth --runtime torch onnx``: the same model, clip and cores in each runtime.

For each runtime: milliseconds per frame of every part of a frame (psi's condition, the encoder of
the degraded frame, the T denoising calls, the render -- D and rho -- and what is left: noise, LCM
updates, Python), the frame at the model's size, ``to_camera`` and the frame at the camera's size
(what the decoder node publishes). Then the pictures' agreement between the runtimes on the same
inputs (PSNR, max difference) and the speed-up. Timings are medians over the timed frames after a
warm-up; the CPU, thread count and load average are printed with them, since hosts differ.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np
import torch

from semcomm_ros.eval import metrics as M
from semcomm_ros.receiver import model_inputs, to_camera
from semcomm_ros.scenes import CLASS_NAMES, tabletop_clip
from semcomm_ros.stages import OrderedStage
from semcomm_ros.synth.synthesizer import CausalSynthesizer

#: the parts of a frame, as CausalSynthesizer calls them
PARTS = (("condition", "_condition"), ("encoder", "_lowres_latents"), ("denoise", "_denoise"),
         ("render", "_output"))


def cpu_name() -> str:
    """The CPU's model name and widest vector extension (hosts differ: AVX-512 vs AVX2 runs 5.2 vs 4.1 FPS)."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                platform.machine())
    return f"{name} ({'AVX-512' if 'avx512f' in info else 'AVX2' if 'avx2' in info else 'no AVX2'})"


def camera_clip(frames: int, size: int, lowres_scale: int = 4, seed: int = 9_000_000):
    """Label maps and received low-res frames at the camera's size (a held-out tabletop clip)."""
    import cv2  # deferred: only the bench needs it here

    labels, low = [], []
    for rgb, lab in tabletop_clip(seed, frames, width=size, height=size):
        labels.append(lab)
        low.append(cv2.resize(rgb, (size // lowres_scale, size // lowres_scale), interpolation=cv2.INTER_AREA))
    return labels, low


class PartTimer:
    """Wraps a synthesizer's part methods and sums their wall time per frame."""

    def __init__(self, synth):
        self.synth = synth
        self.totals = {name: 0.0 for name, _ in PARTS}
        for name, attr in PARTS:
            setattr(synth, attr, self._wrap(name, getattr(synth, attr)))

    def remove(self) -> None:
        """The synthesizer's own methods back (the wrappers are instance attributes)."""
        for _, attr in PARTS:
            delattr(self.synth, attr)

    def _wrap(self, name, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.totals[name] += time.perf_counter() - t0

        return timed

    def take(self) -> dict[str, float]:
        out = dict(self.totals)
        self.totals = dict.fromkeys(self.totals, 0.0)
        return out


def measure(synth, labels, low, frames: int, warmup: int = 3) -> dict:
    """Per-frame medians (ms) of every part, the model-size frame, to_camera and the camera-size frame."""
    size, low_size = synth.output_size, synth.lowres_size
    timer = PartTimer(synth)
    rows: dict[str, list[float]] = {k: [] for k in (*timer.totals, "glue", "frame", "to_camera", "camera_frame")}
    outputs = []
    synth.reset()
    for k in range(warmup + frames):
        lab, lo = labels[k % len(labels)], low[k % len(low)]
        t0 = time.perf_counter()
        small_lab, small_low = model_inputs(lab, lo, size, low_size)
        rgb = synth(small_lab, small_low, seed=0)
        t1 = time.perf_counter()
        big = to_camera(rgb, lab, lo, synth.config)
        t2 = time.perf_counter()
        parts = timer.take()
        if k < warmup:
            continue
        outputs.append((rgb, big))
        for name, v in parts.items():
            rows[name].append(1000 * v)
        rows["glue"].append(1000 * (t1 - t0 - sum(parts.values())))
        rows["frame"].append(1000 * (t1 - t0))
        rows["to_camera"].append(1000 * (t2 - t1))
        rows["camera_frame"].append(1000 * (t2 - t0))
    timer.remove()
    med = {k: statistics.median(v) for k, v in rows.items()}
    med["fps_model"] = 1000 / med["frame"]
    med["fps_camera"] = 1000 / med["camera_frame"]
    med["fps_camera_pipelined"] = pipelined_fps(synth, labels, low, frames)
    return {"ms": med, "outputs": outputs}


def pipelined_fps(synth, labels, low, frames: int) -> float:
    """Frames per second at the camera's size as the decoder node makes them: frame k brought to the
    camera's size (and rendered, where ``renders_beside``) in an OrderedStage while the synthesizer
    denoises frame k+1 (throughput, not one frame's latency)."""
    size, low_size = synth.output_size, synth.lowres_size
    def output(item):
        frame, lab, lo = item
        rgb = frame if isinstance(frame, np.ndarray) else synth.render(frame, beside=True)
        to_camera(rgb, lab, lo, synth.config)

    stage = OrderedStage(output, name="bench output")
    synth.reset()
    t0 = time.perf_counter()
    for k in range(frames):
        lab, lo = labels[k % len(labels)], low[k % len(low)]
        frame = synth.denoise_frame(*model_inputs(lab, lo, size, low_size), seed=0)
        stage.submit((frame if synth.renders_beside else synth.render(frame), lab, lo))
    stage.join()
    dt = time.perf_counter() - t0
    stage.close()
    return frames / dt


def load(model: str, runtime: str, device=None, num_classes: int | None = None):
    if model == "tiny":
        return CausalSynthesizer.tiny(128, seed=0, num_classes=num_classes or len(CLASS_NAMES), device=device,
                                      runtime=runtime)
    path = None if model == "default" else model
    return CausalSynthesizer.from_pretrained(path, device=device, runtime=runtime)


def run_runtimes(args) -> dict:
    """The side-by-side table; returns the figures (also written to --json by the caller)."""
    threads = torch.get_num_threads()
    print(f"semcomm bench synth --runtime {' '.join(args.runtime)}: {cpu_name()}, {os.cpu_count()} cores, "
          f"{threads} thread(s), load average {os.getloadavg()[0]:.2f}")
    labels, low = camera_clip(args.runtime_frames, args.camera_size)
    results, first = {}, None
    for runtime in args.runtime:
        t0 = time.perf_counter()
        synth = load(args.model, runtime, device=args.device)
        load_s = time.perf_counter() - t0
        if synth.runtime != runtime:
            print(f"  {runtime}: not available here, ran {synth.runtime} (see the log line above)")
        cfg = synth.config
        r = measure(synth, labels, low, args.runtime_frames)
        r["load_s"] = load_s
        r["actual"] = synth.runtime
        results[runtime] = r
        first = first or (runtime, cfg)
    name, cfg = first
    print(f"model {args.model}: {cfg.height}x{cfg.width}, T={cfg.num_steps}, W={cfg.window}; camera "
          f"{args.camera_size}x{args.camera_size}; {args.runtime_frames} frames timed (medians, ms per frame)")
    cols = ("condition", "encoder", "denoise", "render", "glue", "frame", "to_camera", "camera_frame")
    print(f"  {'runtime':8s} " + " ".join(f"{c:>12s}" for c in cols) + f" {'FPS model':>10s} {'FPS camera':>10s}"
          f" {'pipelined':>10s} {'load s':>7s}")
    for r in results.values():
        ms = r["ms"]
        print(f"  {r['actual']:8s} " + " ".join(f"{ms[c]:12.1f}" for c in cols)
              + f" {ms['fps_model']:10.2f} {ms['fps_camera']:10.2f} {ms['fps_camera_pipelined']:10.2f}"
              f" {r['load_s']:7.1f}")
    print("  (pipelined: frames per second at the camera's size with the render (onnx) and to_camera of frame k "
          "beside the denoising of k+1, as the decoder node runs them)")
    figures = {rt: {"ms": r["ms"], "runtime": r["actual"], "load_s": r["load_s"]} for rt, r in results.items()}
    if len(results) >= 2:
        (a, ra), (b, rb) = list(results.items())[:2]
        small = [M.psnr(x[0], y[0]) for x, y in zip(ra["outputs"], rb["outputs"])]
        big = [M.psnr(x[1], y[1]) for x, y in zip(ra["outputs"], rb["outputs"])]
        diff = max(int(np.abs(x[0].astype(int) - y[0].astype(int)).max())
                   for x, y in zip(ra["outputs"], rb["outputs"]))
        speed = ra["ms"]["frame"] / rb["ms"]["frame"]
        speed_cam = ra["ms"]["camera_frame"] / rb["ms"]["camera_frame"]
        print(f"  {b} vs {a}: {speed:.2f}x at the model's size, {speed_cam:.2f}x at the camera's; pictures: "
              f"min PSNR {min(small):.1f} dB at the model's size, {min(big):.1f} dB at the camera's, max |diff| "
              f"{diff} grey levels")
        figures["agreement"] = {"min_psnr_model": min(small), "min_psnr_camera": min(big), "max_diff": diff,
                                "speedup_model": speed, "speedup_camera": speed_cam}
    return figures
