"""The video codecs under the low-res stream: their tuned constants and the PyAV wrappers.

PyAV is imported where a codec is opened, so the table (which the rate control reads) needs
none. Why VP9 is the default and what the numbers were measured on: docs/lowres.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from semcomm_ros.codec.errors import BitstreamError

# AV1 packets from SVT-AV1 start with a temporal-delimiter OBU that carries no information:
# 2 bytes per frame is 16 % of a 1 kbps budget, so it is stripped on the wire and restored.
_AV1_TD = b"\x12\x00"


@dataclass(frozen=True)
class CodecSpec:
    encoder: str
    decoder: str
    finest: int  # quantizer scale of the codec: CRF (VP9, AV1) or QP (HEVC), finest allowed
    coarsest: int  # coarsest the codec takes (keyframes)
    delta_coarsest: int  # coarsest used for delta frames
    # A delta frame's payload: fixed bytes (frame headers) plus a part that grows with the
    # quantizer step (alpha: log size per step) and the gap to its reference frame (gap **
    # GAP_EXPONENT); p_prior is that part at delta_coarsest, gap 1, 128x128. Measured on
    # generated tabletop clips; only a starting point, the encoder rescales it by what it
    # measures on the scene at hand.
    fixed: float
    alpha: float
    p_prior: float
    # the quantizer can change on every frame (FFmpeg's libvpx wrapper re-applies qmax per
    # frame); for the others it is fixed per keyframe, where the encoder is re-opened
    per_frame_q: bool


# VP9: CRF 60 is the coarsest useful delta quantizer: at CRF 61-63 libvpx boosts its golden
# frames, which leaves the delta frames no smaller on average but more variable (4 frames
# apart at 128x128: 33.6 / 32.7 / 33.5 bytes on average, standard deviation 11.1 / 13.9 / 17.5
# at CRF 60 / 62 / 63)
CODECS: dict[str, CodecSpec] = {
    "vp9": CodecSpec("libvpx-vp9", "vp9", 4, 63, 60, 12.0, 0.065, 9.0, True),
    "av1": CodecSpec("libsvtav1", "libdav1d", 4, 63, 63, 10.0, 0.056, 25.0, False),
    "hevc": CodecSpec("libx265", "hevc", 10, 51, 51, 8.0, 0.115, 14.0, False),
}
GAP_EXPONENT = 0.55  # VP9 at 128x128, CRF 60: 21 / 25 / 34 / 41 bytes at gaps 1 / 2 / 4 / 8


def _vp9_options(q: int, qmin: int) -> dict:
    # CRF 63 is only the ceiling the per-frame qmax is clamped under; qmin is the floor for
    # every frame of this encoder: at the keyframe's q it pins the keyframe's quantizer (libvpx
    # boosts keyframes otherwise)
    return {
        "crf": "63", "b": "0", "deadline": "good", "cpu-used": "1", "qmin": str(qmin),
        "lag-in-frames": "0", "auto-alt-ref": "0", "row-mt": "0", "tile-columns": "0",
    }


def _av1_options(q: int, qmin: int) -> dict:
    return {"crf": str(q), "preset": "6", "svtav1-params": "pred-struct=1:lookahead=0:scd=0"}


def _hevc_options(q: int, qmin: int) -> dict:
    return {
        "preset": "medium", "tune": "zerolatency",
        "x265-params": f"qp={q}:bframes=0:rc-lookahead=0:repeat-headers=1:info=0:log-level=error",
    }


_OPTIONS = {"vp9": _vp9_options, "av1": _av1_options, "hevc": _hevc_options}


def open_encoder(name: str, width: int, height: int, fps: int, q: int, qmin: int):
    """A zero-latency encoder whose first frame is a keyframe at quantizer ``q``."""
    import av

    spec = CODECS[name]
    if name == "av1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner per encoder otherwise

    ctx = av.CodecContext.create(spec.encoder, "w")
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps)
    ctx.max_b_frames = 0
    ctx.gop_size = 1 << 30  # keyframes are ours: the encoder is re-opened for each one
    ctx.thread_count = 1
    ctx.options = _OPTIONS[name](q, qmin)
    ctx.open()
    if spec.per_frame_q:
        ctx.qmax = q  # applied from the next frame on (the keyframe)
    return ctx


def encode_frame(name: str, ctx, rgb: np.ndarray, k: int) -> bytes:
    """One frame in, its whole payload out (the wire form: AV1's temporal delimiter stripped)."""
    import av

    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    frame = frame.reformat(format="yuv420p")
    frame.pts = k
    packets = ctx.encode(frame)
    data = b"".join(bytes(p) for p in packets)
    if not data:
        # zero-latency configuration: this would be a codec buffering a frame
        raise RuntimeError(f"{CODECS[name].encoder} returned no packet for frame {k}")
    if name == "av1" and data.startswith(_AV1_TD):
        data = data[len(_AV1_TD):]
    return data


def flush(ctx) -> None:
    if ctx is not None:
        ctx.encode(None)  # SVT-AV1 logs an error for an encoder dropped without its EOS


def open_decoder(name: str):
    import av

    ctx = av.CodecContext.create(CODECS[name].decoder, "r")
    ctx.thread_count = 1  # frame threads would delay output: one packet, one picture
    if name == "av1":
        ctx.options = {"max_frame_delay": "1"}
    return ctx


def decode_payload(name: str, ctx, payload: bytes) -> list:
    """The pictures FFmpeg returns for one wire payload; what FFmpeg rejects raises
    ``BitstreamError``."""
    import av

    try:
        return ctx.decode(av.Packet(_AV1_TD + payload if name == "av1" else payload))
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise BitstreamError(f"{name} decoder rejected the payload: {exc}") from exc


def check_payload(name: str, payload: bytes, key: bool) -> None:
    """Cheap syntax checks before FFmpeg sees the bytes (its decoders accept much garbage)."""
    b0 = payload[0]
    if name == "vp9":
        if b0 >> 6 != 2:
            raise BitstreamError("VP9 payload lacks the frame marker")
        # profile 0 keyframe: marker(2) profile(2) show_existing(1) type(1) -> sync code follows
        if key and (b0 & 0x3C != 0 or payload[1:4] != b"\x49\x83\x42"):
            raise BitstreamError("VP9 keyframe payload lacks the keyframe sync code")
    elif name == "av1":
        if b0 & 0x81:
            raise BitstreamError("AV1 payload has forbidden/reserved OBU header bits set")
    elif name == "hevc":
        if not (payload.startswith(b"\x00\x00\x01") or payload.startswith(b"\x00\x00\x00\x01")):
            raise BitstreamError("HEVC payload lacks an Annex-B start code")
