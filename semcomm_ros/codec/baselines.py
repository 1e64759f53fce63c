"""Classical full-resolution baselines of the paper's Table II: HEVC, AV1, VP9 at a total rate.

Each codec codes the whole camera-resolution clip (e.g. 512x512, 10 fps) with its usual
random-access configuration (B-frames / alt-ref and lookahead allowed: these are offline
reference points, not live links) and one keyframe per clip. The quality parameter (x265 QP,
SVT-AV1 CRF, VP9 CRF) is searched so that the achieved rate is the highest one not above the
target. At 2 kbps for 512x512 no codec gets there: the result is then the codec at its coarsest
quantizer, flagged ``reached = False`` with the lowest rate it reaches. Rates count every byte
of every packet (parameter sets, keyframe, SEI) and use 1 kbps = 1024 bit/s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from semcomm_ros.eval import metrics

BASELINES = {
    # name: (encoder, decoder, quality range (finest, coarsest), options for a quality value)
    "hevc": ("libx265", "hevc", (0, 51),
             lambda q, n: {"preset": "medium",
                           "x265-params": f"qp={q}:keyint={n}:min-keyint={n}:scenecut=0:"
                                          "info=0:log-level=error"}),
    "av1": ("libsvtav1", "libdav1d", (1, 63),
            lambda q, n: {"crf": str(q), "preset": "8", "svtav1-params": f"keyint={n}:scd=0"}),
    "vp9": ("libvpx-vp9", "vp9", (0, 63),
            lambda q, n: {"crf": str(q), "b": "0", "deadline": "good", "cpu-used": "2",
                          "row-mt": "0"}),
}


@dataclass
class BaselineResult:
    codec: str
    quality: int  # the QP / CRF used
    bits: int
    kbps: float
    reached: bool  # achieved rate <= target
    frames: list = field(repr=False, default_factory=list)  # decoded RGB frames, in order
    tried: dict = field(default_factory=dict)  # quality -> kbps of every trial encode


def _code(frames: list[np.ndarray], codec: str, q: int, fps: int) -> tuple[int, list[np.ndarray]]:
    import av

    enc_name, dec_name, _, options = BASELINES[codec]
    h, w = frames[0].shape[:2]
    ctx = av.CodecContext.create(enc_name, "w")
    ctx.width, ctx.height = w, h
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps)
    ctx.gop_size = len(frames) + 1
    ctx.thread_count = 1
    ctx.options = options(q, len(frames) + 1)
    packets = []
    for k, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = k
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    total = 8 * (sum(p.size for p in packets) + len(ctx.extradata or b""))
    dec = av.CodecContext.create(dec_name, "r")
    if ctx.extradata:
        dec.extradata = ctx.extradata
    decoded = []
    for p in packets:
        decoded += dec.decode(p)
    decoded += dec.decode(None)
    decoded.sort(key=lambda f: f.pts if f.pts is not None else 0)
    out = [f.to_ndarray(format="rgb24") for f in decoded]
    if len(out) != len(frames):
        raise RuntimeError(f"{codec}: decoded {len(out)} of {len(frames)} frames")
    return total, out


def encode_baseline(frames: list[np.ndarray], codec: str, kbps: float, fps: int = 10,
                    max_trials: int = 7) -> BaselineResult:
    """Code ``frames`` (uint8 RGB, all one size) with ``codec`` at the finest quality whose rate
    is <= ``kbps``; if even the coarsest quantizer is above, return that (``reached=False``)."""
    if codec not in BASELINES:
        raise ValueError(f"codec must be one of {sorted(BASELINES)}, got {codec!r}")
    if not frames:
        raise ValueError("no frames")
    finest, coarsest = BASELINES[codec][2]
    tried: dict[int, float] = {}
    results: dict[int, tuple[int, list]] = {}

    def rate(q: int) -> float:
        bits, out = _code(frames, codec, q, fps)
        results[q] = (bits, out)
        tried[q] = metrics.kbps(bits, len(frames), fps)
        return tried[q]

    if rate(coarsest) > kbps:
        best = coarsest
    else:
        # rate falls as the quantizer grows: find the smallest q with rate <= target
        lo, hi = finest, coarsest  # invariant: rate(hi) <= target
        for _ in range(max_trials - 1):
            if hi - lo <= 1:
                break
            mid = (lo + hi) // 2
            if rate(mid) <= kbps:
                hi = mid
            else:
                lo = mid
        best = hi
    bits, out = results[best]
    for q in list(results):
        if q != best:
            del results[q]
    return BaselineResult(codec, best, bits, tried[best], tried[best] <= kbps, out, tried)
