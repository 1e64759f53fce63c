"""``semcomm bench lowres``: low-res stream rate control and HEVC/AV1/VP9 baselines.

The low-res stream's rate control and quality, and the full-res HEVC/AV1/VP9 baselines at the
system's total rate (paper V-C, Table II).

On generated tabletop clips (512x512 -> 128x128, 10 fps): achieved kbps against each target,
the worst 10 s sliding window (on longer continuous clips), PSNR / MS-SSIM of the decoded low-res
frames upsampled (bicubic) back to 512x512 against the camera frames, encode/decode ms per frame;
then the codec comparison behind the choice of VP9, and the baselines.
"""

from __future__ import annotations

import json
import time

import numpy as np

from semcomm_ros.codec.baselines import encode_baseline
from semcomm_ros.codec.lowres import LowResDecoder, LowResEncoder, upsample
from semcomm_ros.eval import metrics
from semcomm_ros.eval.metrics import ms_ssim, psnr, window_kbps
from semcomm_ros.scenes import tabletop_clip
from semcomm_ros.scenes.splits import CODEC_BENCH


def add_arguments(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="2 short clips, a smoke run")
    parser.add_argument("--videos", type=int, default=10, help="clips (default 10)")
    parser.add_argument("--frames", type=int, default=100, help="frames per clip (default 100)")
    parser.add_argument("--long-videos", type=int, default=3,
                        help="continuous clips for the sliding-window figure (default 3)")
    parser.add_argument("--long-frames", type=int, default=300, help="their length (default 300)")
    parser.add_argument("--size", type=int, default=512, help="camera frame size (default 512)")
    parser.add_argument("--scale", type=int, default=4, help="downscale factor (default 4)")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--rates", default="0.5,1,2,4", help="target kbps, comma-separated")
    parser.add_argument("--codec", default="vp9", help="low-res codec (vp9, av1, hevc)")
    parser.add_argument("--keyframe-interval", type=int, default=100)
    parser.add_argument("--fixed-size", action="store_true",
                        help="code the low-res size at every rate (no halving at low rates)")
    parser.add_argument("--compare-codecs", default="vp9,av1,hevc",
                        help="codecs compared at --compare-rate ('' to skip)")
    parser.add_argument("--compare-rate", type=float, default=1.0)
    parser.add_argument("--baselines", default="hevc,av1,vp9", help="full-res baselines ('' skips)")
    parser.add_argument("--baseline-rate", type=float, default=2.0, help="their target kbps")
    parser.add_argument("--seed", type=int, default=CODEC_BENCH.start, help="first clip seed (held-out range)")
    parser.add_argument("--json", help="also write all figures to this JSON file")


def _clips(n: int, frames: int, size: int, seed: int) -> list[list[np.ndarray]]:
    return [[rgb for rgb, _ in tabletop_clip(seed + i, frames, size, size)] for i in range(n)]


def run_stream(clip, kbps: float, codec: str, scale: int, fps: int, keyframe_interval: int,
               quality: bool = True, resize: bool = True) -> dict:
    """One continuous low-res stream over ``clip``; every displayed frame is scored."""
    h, w = clip[0].shape[:2]
    enc = LowResEncoder(w, h, fps=fps, scale=scale, kbps=kbps, codec=codec,
                        keyframe_interval=keyframe_interval, resize=resize)
    dec = LowResDecoder()
    t_enc = t_dec = 0.0
    ps, ms = [], []
    for rgb in clip:
        t = time.perf_counter()
        packet = enc.encode(rgb)
        t_enc += time.perf_counter() - t
        t = time.perf_counter()
        low = dec.decode(packet)
        t_dec += time.perf_counter() - t
        if low is None:
            raise RuntimeError("lossless link but the decoder returned no frame")
        if quality:
            up = upsample(low, w, h)
            ps.append(psnr(up, rgb))
            ms.append(ms_ssim(up, rgb))
    enc.close()
    types = "".join(enc.frame_types)
    return {
        "bits": enc.bits, "kbps": metrics.kbps(sum(enc.bits), len(clip), fps),
        "windows": window_kbps(enc.bits, fps, 10.0).tolist(),
        "psnr": ps, "ms_ssim": ms,
        "enc_ms": 1000 * t_enc / len(clip), "dec_ms": 1000 * t_dec / len(clip),
        "coded": sum(c != "S" for c in types), "keys": types.count("K"),
        "frames": len(clip), "coded_size": enc.coded_width,
        "q_delta": [q for q, t in zip(enc.quantizers, types) if t == "P"],
    }


def _rate_table(clips, long_clips, rates, args, codec) -> list[dict]:
    rows = []
    for kb in rates:
        resize = not args.fixed_size
        streams = [run_stream(c, kb, codec, args.scale, args.fps, args.keyframe_interval,
                              resize=resize) for c in clips]
        longs = [run_stream(c, kb, codec, args.scale, args.fps, args.keyframe_interval,
                            quality=False, resize=resize) for c in long_clips]
        per_clip = [s["kbps"] for s in streams]
        wins = np.concatenate([s["windows"] for s in longs]) if longs else np.array(per_clip)
        frames = sum(s["frames"] for s in streams)
        rows.append({
            "target": kb, "kbps": float(np.mean(per_clip)),
            "clip_min": float(np.min(per_clip)), "clip_max": float(np.max(per_clip)),
            "win_min": float(wins.min() / kb - 1), "win_max": float(wins.max() / kb - 1),
            "psnr": float(np.mean([p for s in streams for p in s["psnr"]])),
            "ms_ssim": float(np.mean([m for s in streams for m in s["ms_ssim"]])),
            "enc_ms": float(np.mean([s["enc_ms"] for s in streams])),
            "dec_ms": float(np.mean([s["dec_ms"] for s in streams])),
            "coded_pct": 100.0 * sum(s["coded"] for s in streams) / frames,
            "keys": sum(s["keys"] for s in streams),
            "coded_size": sorted({s["coded_size"] for s in streams}),
            "q_delta": [q for s in streams for q in s["q_delta"]],
        })
        r = rows[-1]
        qs = r.pop("q_delta")
        r["q_delta_median"] = float(np.median(qs)) if qs else None
        size = ",".join(map(str, r["coded_size"]))
        q = f"{np.percentile(qs, 10):.0f}-{np.percentile(qs, 90):.0f}" if qs else "-"
        print(f"  {kb:5.2f} {r['kbps']:7.3f} {r['clip_min']:6.3f}-{r['clip_max']:<6.3f} "
              f"{100 * r['win_min']:+6.1f}%/{100 * r['win_max']:+5.1f}% {r['psnr']:6.2f} "
              f"{r['ms_ssim']:7.4f} {r['coded_pct']:6.1f}% {r['keys']:4d} {size:>5} {q:>6} "
              f"{r['enc_ms']:6.2f} {r['dec_ms']:6.2f}", flush=True)
    return rows


_HEAD = ("  target achieved  per-clip    10s-window    PSNR  MS-SSIM  coded  keys coded  delta "
         "enc ms dec ms\n   kbps    kbps    min-max      min/max       dB (512px)  frames      "
         "size  CRF/QP")


def run(args) -> int:
    import cv2

    cv2.setNumThreads(1)  # the machine's cores are shared
    if args.quick:
        args.videos, args.frames, args.long_videos, args.long_frames = 2, 40, 1, 120
        args.baselines = args.baselines and "vp9"
        args.compare_codecs = args.compare_codecs and "vp9,hevc"
    rates = [float(x) for x in args.rates.split(",") if x]
    t0 = time.time()
    clips = _clips(args.videos, args.frames, args.size, args.seed)
    long_clips = _clips(args.long_videos, args.long_frames, args.size, args.seed + 500)
    low = args.size // args.scale
    print(f"low-res stream: {args.videos} tabletop clips x {args.frames} frames, "
          f"{args.size}x{args.size} -> {low}x{low}, {args.fps} fps, codec {args.codec}, "
          f"keyframe interval {args.keyframe_interval}; 10 s windows over {args.long_videos} "
          f"continuous clips x {args.long_frames} frames; 1 kbps = 1024 bit/s")
    print(_HEAD)
    out = {"config": vars(args).copy(), "lowres": _rate_table(clips, long_clips, rates, args,
                                                              args.codec)}
    codecs = [c for c in args.compare_codecs.split(",") if c]
    if codecs:
        n = min(3, len(clips))
        print(f"\ncodec choice at {args.compare_rate} kbps ({n} clips, same rate control):")
        print(_HEAD)
        out["codecs"] = {}
        for c in codecs:
            print(f" {c}:")
            out["codecs"][c] = _rate_table(clips[:n], long_clips[:1], [args.compare_rate],
                                           args, c)[0]
    base = [c for c in args.baselines.split(",") if c]
    if base:
        print(f"\nfull-res baselines ({args.size}x{args.size}, {args.fps} fps) at target "
              f"{args.baseline_rate} kbps, {len(clips)} clips x {args.frames} frames:")
        print("  codec   achieved kbps (min-max)  reached  QP/CRF   PSNR  MS-SSIM")
        out["baselines"] = {}
        for c in base:
            res = [encode_baseline(clip, c, args.baseline_rate, args.fps) for clip in clips]
            ps = [psnr(np.stack(r.frames), np.stack(clip)) for r, clip in zip(res, clips)]
            ms = [ms_ssim(np.stack(r.frames), np.stack(clip)) for r, clip in zip(res, clips)]
            k = [r.kbps for r in res]
            row = {"kbps": float(np.mean(k)), "kbps_min": float(min(k)),
                   "kbps_max": float(max(k)), "reached": all(r.reached for r in res),
                   "quality": sorted({r.quality for r in res}),
                   "psnr": float(np.mean(ps)), "ms_ssim": float(np.mean(ms))}
            out["baselines"][c] = row
            print(f"  {c:6s} {row['kbps']:8.2f} ({row['kbps_min']:.2f}-{row['kbps_max']:.2f})"
                  f"     {'yes' if row['reached'] else 'NO':4s} {','.join(map(str, row['quality'])):>7}"
                  f" {row['psnr']:6.2f} {row['ms_ssim']:8.4f}", flush=True)
        if not all(r["reached"] for r in out["baselines"].values()):
            print("  (NO: the codec's coarsest quantizer is above the target; its lowest reachable"
                  " rate is shown)")
    print(f"\ntotal {time.time() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=float)
    return 0
