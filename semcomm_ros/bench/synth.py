"""``semcomm bench synth``: synthesizer latency, KV-cache speed-up, parameter counts, FPS.

Prints (paper IV-B5, V-D, Table I):
- parameter counts per module, Table I layout (the temporal adapter phi vs the whole model), for
  the benchmarked model and for an SD-1.5-sized configuration (counted on the meta device);
- per-frame latency over a long stream (default 200 frames) and its flatness: mean of the last
  50 frames vs frames 21-70 (the KV cache keeps the cost per frame constant);
- the KV cache's speed-up over recomputing the whole window for every frame;
- frames per second of the tiny model at 64x64 and 128x128 on the CPU;
- with a CUDA GPU: FPS and peak memory at 512x512, T=4, W=3, fp16, SD-1.5-sized random weights.

``--model DIR`` measures a trained model directory instead, at the paper's operating point (T=4,
W=3; fp16 on CUDA) on ``--device``: FPS and peak memory next to the paper's 5.1 FPS / 6.2 GB on an
RTX 4090 -- the check for a model trained with ``--preset paper --pretrained`` (SD 1.5 sized).
With tiny weights and ``--device cpu`` the same path is a dry run (tested).

Wall time on the shared build machines is dominated by other processes, so every timing is
given as wall time and as this process's CPU time (time.process_time), which is what the work
costs on an idle machine with the same thread count.
"""

from __future__ import annotations

import json
import statistics
import time
from functools import partial

import numpy as np

from semcomm_ros.synth.adapters import ADAPTERS, PHI
from semcomm_ros.synth.config import RUNTIMES, SynthConfig


def add_arguments(parser) -> None:
    parser.add_argument("--model", default=None,
                        help="'tiny' (random tiny model; the default), 'default' (the shipped model; the default "
                             "with --runtime) or a model directory (then: FPS and peak memory at T=4, W=3 on "
                             "--device, fp16 on CUDA, vs the paper)")
    parser.add_argument("--runtime", nargs="+", choices=RUNTIMES, default=None,
                        help="time these runtimes side by side on the same clip instead (e.g. --runtime torch "
                             "onnx): ms per part of a frame at the model's size and the camera's, pictures' "
                             "agreement, speed-up")
    parser.add_argument("--runtime-frames", type=int, default=30, help="frames timed per runtime (--runtime)")
    parser.add_argument("--camera-size", type=int, default=512, help="camera resolution for --runtime")
    parser.add_argument("--frames", type=int, default=200, help="length of the latency stream")
    parser.add_argument("--resolution", type=int, default=128, help="resolution of the tiny model's stream")
    parser.add_argument("--fps-resolutions", default="64,128", help="tiny-model FPS at these resolutions")
    parser.add_argument("--fps-frames", type=int, default=20)
    parser.add_argument("--cache-frames", type=int, default=12, help="frames for the KV-cache speed-up")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of torch and ONNX Runtime (default: 1, or 2 with --runtime; 1: on a "
                             "shared machine OpenMP threads of several processes spin against each other)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--gpu-frames", type=int, default=50, help="frames timed at the paper's operating point")
    parser.add_argument("--skip-gpu", action="store_true")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")


def _inputs(frames: int, res: int, num_classes: int, factor: int, seed: int = 7):
    """Label maps and degraded frames of a generated tabletop clip (random maps as a fallback)."""
    try:
        import cv2

        from semcomm_ros.scenes import tabletop_clip  # deferred: needs cv2; without it random maps stand in

        labels, low = [], []
        for rgb, lab in tabletop_clip(seed, frames, width=res, height=res):
            labels.append(np.minimum(lab, num_classes - 1).astype(np.uint8))
            low.append(cv2.resize(rgb, (res // factor, res // factor), interpolation=cv2.INTER_AREA))
        return np.stack(labels), np.stack(low)
    except ImportError:
        rng = np.random.default_rng(seed)
        return (rng.integers(0, num_classes, (frames, res, res)).astype(np.uint8),
                rng.integers(0, 256, (frames, res // factor, res // factor, 3)).astype(np.uint8))


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def _stream(synth, labels, low, frames: int):
    synth.reset()
    wall, cpu = [], []
    for k in range(frames):
        _, w, c = _timed(partial(synth, labels[k % len(labels)], low[k % len(low)], seed=k))
        wall.append(w)
        cpu.append(c)
    return wall, cpu


def _recompute_window(synth, labels, low, frames: int):
    """No KV cache: every frame re-runs the whole window (its W-1 predecessors + itself)."""
    w_ = synth.config.window
    wall, cpu = [], []
    for k in range(frames):
        lo = max(0, k - w_ + 1)
        _, w, c = _timed(partial(synth.generate_clip, labels[lo:k + 1], low[lo:k + 1], seeds=range(lo, k + 1)))
        wall.append(w)
        cpu.append(c)
    return wall, cpu


def _ms(x):
    return 1000.0 * statistics.fmean(x)


def table_i(counts: dict[str, int], title: str) -> list[str]:
    total = counts["total"]
    rows = [("backbone UNet (frozen)", counts["backbone_unet"]), ("VAE (frozen)", counts["vae"]),
            *((f"{a.title} {a.symbol} ({a.weights})", counts[a.count_key]) for a in ADAPTERS),
            ("whole model", total)]
    lines = [f"Parameters, Table I layout -- {title}", f"  {'module':44s} {'parameters':>14s} {'share':>8s}"]
    for name, n in rows:
        lines.append(f"  {name:44s} {n:14,d} {100.0 * n / total:7.2f}%")
    phi = counts[PHI.count_key]
    lines.append(f"  trained in the temporal distillation (phi only): {phi:,d} "
                 f"= 1/{total / max(1, phi):.0f} of the whole model")
    return lines


def sd15_counts() -> dict[str, int]:
    """Parameter counts of an SD-1.5-sized model (built on the meta device: no memory, no time)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    # deferred: imports torch, which `semcomm bench synth --help` need not load
    from semcomm_ros.synth.backbone import sd15_unet_config
    from semcomm_ros.synth.model import SynthModel  # deferred: imports torch

    with torch.device("meta"):
        unet = UNet2DConditionModel(**sd15_unet_config())
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
        model = SynthModel.from_components(unet, vae, SynthConfig(height=512, width=512, num_classes=13,
                                                                  vae_class="AutoencoderKL"),
                                           adapter_init="random", motion_heads=8)
    return model.parameter_counts()


def _gpu_figures(frames: int, device: str = "cuda", resolution: int = 512, unet_config: dict | None = None) -> dict:
    """SD-1.5-sized random model at 512x512, T=4, W=3, fp16 on CUDA: FPS and peak memory.

    ``device``/``resolution``/``unet_config`` exist so that the code path can be smoke-tested small on a CPU.
    """
    import torch
    from diffusers import AutoencoderTiny, UNet2DConditionModel

    # deferred: imports torch, which `semcomm bench synth --help` need not load
    from semcomm_ros.synth.backbone import sd15_unet_config
    from semcomm_ros.synth.model import SynthModel  # deferred: imports torch
    from semcomm_ros.synth.synthesizer import CausalSynthesizer  # deferred: imports torch

    cuda = device.startswith("cuda")
    torch.manual_seed(0)
    ucfg = unet_config or sd15_unet_config(resolution)
    unet = UNet2DConditionModel(**ucfg)
    vae = AutoencoderTiny()  # TAESD shapes: the tiny decoder the issue allows
    cfg = SynthConfig(height=resolution, width=resolution, num_classes=13, null_tokens=77,
                      vae_class="AutoencoderTiny")
    model = SynthModel.from_components(unet, vae, cfg, adapter_init="random",
                                       motion_heads=8 if unet_config is None else None)
    synth = CausalSynthesizer(model, device=device, dtype=torch.float16 if cuda else torch.float32)
    return paper_point(synth, frames)


#: the paper's figures for this measurement (Sec. VI, SD 1.5 backbone, RTX 4090)
PAPER_FPS, PAPER_PEAK_GB = 5.1, 6.2


def paper_point(synth, frames: int) -> dict:
    """FPS and peak memory of ``synth`` streaming at T=4, W=3 after a 3-frame warm-up."""
    import torch

    cfg = synth.config
    cfg.num_steps, cfg.window = 4, 3  # the paper's operating point, whatever the model's JSON says
    synth.reset()
    cuda = synth.device.type == "cuda"
    res = cfg.height
    labels, low = _inputs(8, res, cfg.num_classes, cfg.lowres_factor)
    for k in range(3):
        synth(labels[k], low[k], seed=k)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    synth.reset()
    t0 = time.perf_counter()
    for k in range(frames):
        synth(labels[k % 8], low[k % 8], seed=k)
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {"device": torch.cuda.get_device_name(synth.device) if cuda else str(synth.device),
            "resolution": f"{cfg.height}x{cfg.width}", "dtype": str(synth.dtype).replace("torch.", ""),
            "T": cfg.num_steps, "W": cfg.window, "frames": frames, "fps": frames / dt,
            "peak_memory_gb": torch.cuda.max_memory_allocated(synth.device) / 2**30 if cuda else None}


def paper_line(g: dict, what: str) -> str:
    mem = f"{g['peak_memory_gb']:.2f} GB" if g["peak_memory_gb"] is not None else "n/a (CPU)"
    return (f"{g['device']}: {what}, {g['resolution']}, T={g['T']}, W={g['W']}, {g['dtype']}, {g['frames']} frames: "
            f"{g['fps']:.2f} FPS, peak memory {mem} (paper: {PAPER_FPS} FPS, {PAPER_PEAK_GB} GB on an RTX 4090)")


def run_model_dir(args) -> int:
    """``--model DIR``: the paper's operating point of a trained model directory on ``--device``."""
    import torch

    # deferred: imports torch, which `semcomm bench synth --help` need not load
    from semcomm_ros.synth.synthesizer import CausalSynthesizer

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    synth = CausalSynthesizer.from_pretrained(args.model, device=device, dtype=dtype)
    counts = synth.model.parameter_counts()
    print("\n".join(table_i(counts, f"model {args.model}")))
    g = paper_point(synth, args.gpu_frames)
    print("\n" + paper_line(g, f"model {args.model}"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"parameters": counts, "paper_point": g}, f, indent=1)
    return 0


def run(args) -> int:
    import torch

    # deferred: imports torch, which `semcomm bench synth --help` need not load
    from semcomm_ros.synth.synthesizer import CausalSynthesizer

    torch.set_num_threads(max(1, args.threads or (2 if args.runtime else 1)))
    if args.runtime:
        from semcomm_ros.bench.synth_runtime import run_runtimes  # deferred: imports the scenes (cv2)

        args.model = args.model or "default"
        figures = run_runtimes(args)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(figures, f, indent=1)
        return 0
    args.model = args.model or "tiny"
    if args.model not in ("tiny", "default"):
        return run_model_dir(args)
    out: dict = {"threads": torch.get_num_threads()}
    device = args.device
    print(f"semcomm bench synth -- torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), "
          f"cuda available: {torch.cuda.is_available()}")

    def load(res):
        if args.model == "tiny":
            from semcomm_ros.scenes import CLASS_NAMES  # deferred: needs cv2, as in _inputs
            return CausalSynthesizer.tiny(res, seed=0, num_classes=len(CLASS_NAMES), device=device)
        return CausalSynthesizer.from_pretrained(None if args.model == "default" else args.model, device=device)

    synth = load(args.resolution)
    cfg = synth.config
    res = cfg.height
    print(f"model: {args.model}, {cfg.height}x{cfg.width}, T={cfg.num_steps}, W={cfg.window}, causal={cfg.causal}, "
          f"lambda_C={cfg.lambda_c}, lambda_R={cfg.lambda_r}, lambda_T={cfg.lambda_t}, device {synth.device}, "
          f"{synth.dtype}")
    counts = synth.model.parameter_counts()
    out["parameters"] = counts
    print("\n".join(table_i(counts, f"benchmarked model ({args.model})")))
    sd = sd15_counts()
    out["parameters_sd15"] = sd
    print("\n".join(table_i(sd, "SD-1.5-sized configuration (ControlNet + omega + AnimateDiff-sized phi)")))

    labels, low = _inputs(min(args.frames, 100), res, cfg.num_classes, cfg.lowres_factor)
    for k in range(2):  # warm-up (allocator, oneDNN primitive caches)
        synth(labels[k], low[k], seed=k)
    wall, cpu = _stream(synth, labels, low, args.frames)
    n = len(wall)
    if n >= 120:
        a_w, b_w = _ms(wall[20:70]), _ms(wall[-50:])
        a_c, b_c = _ms(cpu[20:70]), _ms(cpu[-50:])
        flat = abs(b_c - a_c) / a_c
        out["stream"] = {"frames": n, "wall_ms_21_70": a_w, "wall_ms_last50": b_w, "cpu_ms_21_70": a_c,
                         "cpu_ms_last50": b_c, "flatness_cpu": flat, "flatness_wall": abs(b_w - a_w) / a_w,
                         "cpu_ms": [round(1000 * c, 2) for c in cpu]}
        print(f"\nPer-frame latency over a {n}-frame stream at {res}x{res} (KV cache, T={cfg.num_steps}, "
              f"W={cfg.window}):")
        print(f"  frames 1-20  : wall {_ms(wall[:20]):8.1f} ms   cpu {_ms(cpu[:20]):8.1f} ms")
        print(f"  frames 21-70 : wall {a_w:8.1f} ms   cpu {a_c:8.1f} ms")
        print(f"  last 50      : wall {b_w:8.1f} ms   cpu {b_c:8.1f} ms")
        print(f"  flatness |last50 - f21-70| / f21-70: cpu {100 * flat:.1f} %  wall "
              f"{100 * abs(b_w - a_w) / a_w:.1f} %  -> {'FLAT (< 10 %)' if flat < 0.10 else 'NOT flat'} (cpu time)")
        blocks = [f"{_ms(cpu[i:i + 20]):.0f}" for i in range(0, n, 20)]
        print(f"  cpu ms per 20-frame block: {' '.join(blocks)}")
    else:
        print(f"\n{n}-frame stream: mean wall {_ms(wall):.1f} ms, cpu {_ms(cpu):.1f} ms (flatness needs >= 120 "
              f"frames)")

    m = max(cfg.window + 2, args.cache_frames)
    cw, cc = _stream(synth, labels, low, m)
    rw, rc = _recompute_window(synth, labels, low, m)
    skip = cfg.window  # compare once the window is full
    sp_c, sp_w = _ms(rc[skip:]) / _ms(cc[skip:]), _ms(rw[skip:]) / _ms(cw[skip:])
    out["kv_cache"] = {"cached_cpu_ms": _ms(cc[skip:]), "recompute_cpu_ms": _ms(rc[skip:]),
                       "speedup_cpu": sp_c, "speedup_wall": sp_w}
    print(f"\nKV cache vs recomputing the W={cfg.window}-frame window every frame ({m} frames, full windows only):")
    print(f"  cached {_ms(cc[skip:]):.1f} ms cpu / {_ms(cw[skip:]):.1f} ms wall per frame; "
          f"recompute {_ms(rc[skip:]):.1f} ms cpu / {_ms(rw[skip:]):.1f} ms wall")
    print(f"  speed-up: {sp_c:.2f}x (cpu time), {sp_w:.2f}x (wall)")

    out["fps_tiny"] = {}
    print(f"\nTiny model, CPU ({torch.get_num_threads()} thread(s)), T={cfg.num_steps}, W={cfg.window}, "
          f"{args.fps_frames} frames:")
    for r in [int(v) for v in args.fps_resolutions.split(",") if v]:
        from semcomm_ros.scenes import CLASS_NAMES  # deferred: needs cv2, as in _inputs
        tiny = CausalSynthesizer.tiny(r, seed=0, num_classes=len(CLASS_NAMES), device="cpu")
        lab, lo = _inputs(min(args.fps_frames, 20), r, tiny.config.num_classes, tiny.config.lowres_factor)
        for k in range(2):
            tiny(lab[k], lo[k], seed=k)
        w, c = _stream(tiny, lab, lo, args.fps_frames)
        out["fps_tiny"][r] = {"fps_wall": 1000 / _ms(w), "fps_cpu": 1000 / _ms(c)}
        print(f"  {r}x{r}: {1000 / _ms(c):6.2f} FPS by cpu time ({_ms(c):.1f} ms/frame), "
              f"{1000 / _ms(w):6.2f} FPS wall ({_ms(w):.1f} ms/frame)")

    if torch.cuda.is_available() and not args.skip_gpu:
        g = _gpu_figures(args.gpu_frames)
        out["gpu"] = g
        print("\n" + paper_line(g, "SD-1.5-sized random weights"))
    else:
        print("\nGPU: no CUDA device on this machine -- the 512x512 fp16 SD-1.5-sized measurement is left for "
              "a GPU machine (run this command there).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0
