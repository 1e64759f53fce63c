"""numpy <-> ``sensor_msgs/Image`` (without cv_bridge, which is not installable here) and codec
packets <-> the custom link messages.

Every ``*_from_msg`` helper validates the message before anything downstream sees it: a field that
does not agree with the payload (wrong width for the data, unknown frame type, a header that
contradicts the codec packet) raises ``ValueError`` (images) or ``BitstreamError`` (link messages,
so the decoder counts it as a bad packet) with a message saying which field is wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from semcomm_ros.codec import lowres
from semcomm_ros.codec.errors import BitstreamError
from semcomm_ros.codec.packet import VERSION as SEMANTIC_VERSION
from semcomm_ros.codec.packet import frame_bits, parse_header, unbundle

# encoding -> (channels, numpy dtype); the ones the nodes produce or accept
IMAGE_ENCODINGS: dict[str, tuple[int, np.dtype]] = {
    "rgb8": (3, np.dtype(np.uint8)),
    "bgr8": (3, np.dtype(np.uint8)),
    "rgba8": (4, np.dtype(np.uint8)),
    "bgra8": (4, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)),
    "8UC1": (1, np.dtype(np.uint8)),
    "8UC3": (3, np.dtype(np.uint8)),
    "mono16": (1, np.dtype(np.uint16)),
    "16UC1": (1, np.dtype(np.uint16)),
}

FRAME_TYPE_I = 0
FRAME_TYPE_P = 1
_FRAME_TYPES = {FRAME_TYPE_I: "I", FRAME_TYPE_P: "P"}

# Largest payload a link message may carry: far above anything the codecs produce at these rates
# (a 512x512 I-frame is a few kB), small enough that a bogus length never allocates much.
MAX_PAYLOAD_BYTES = 1 << 20
MAX_SIDE = 8192


# --------------------------------------------------------------------------------------------
# stamps
def stamp_from_ns(ns: int):
    from builtin_interfaces.msg import Time

    ns = int(ns)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _header(stamp_ns: int | None, frame_id: str):
    from std_msgs.msg import Header

    h = Header(frame_id=frame_id)
    if stamp_ns is not None:
        h.stamp = stamp_from_ns(stamp_ns)
    return h


# --------------------------------------------------------------------------------------------
# images
def image_to_msg(array: np.ndarray, encoding: str | None = None, stamp_ns: int | None = None,
                 frame_id: str = "camera"):
    """HxW (labels / mono) or HxWxC array -> ``sensor_msgs/Image`` (dense rows, little-endian)."""
    from sensor_msgs.msg import Image

    array = np.asarray(array)
    if encoding is None:
        if array.ndim == 2:
            encoding = "mono16" if array.dtype == np.uint16 else "mono8"
        elif array.ndim == 3 and array.shape[2] == 3:
            encoding = "rgb8"
        else:
            raise ValueError(f"cannot infer an image encoding for shape {array.shape}")
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r} (known: {sorted(IMAGE_ENCODINGS)})")
    channels, dtype = IMAGE_ENCODINGS[encoding]
    expect_ndim = 2 if channels == 1 else 3
    if array.ndim == 3 and channels == 1 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != expect_ndim or (channels > 1 and array.shape[2] != channels):
        raise ValueError(f"{encoding} needs {channels} channel(s), got array of shape {array.shape}")
    if array.dtype != dtype:
        raise ValueError(f"{encoding} needs dtype {dtype}, got {array.dtype}")
    h, w = array.shape[:2]
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise ValueError(f"image size {w}x{h} out of range 1..{MAX_SIDE}")
    msg = Image()
    msg.header = _header(stamp_ns, frame_id)
    msg.height, msg.width, msg.encoding = h, w, encoding
    msg.is_bigendian = 0
    msg.step = w * channels * dtype.itemsize
    msg.data = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()
    return msg


def image_from_msg(msg, expect_encoding: str | tuple[str, ...] | None = None) -> np.ndarray:
    """``sensor_msgs/Image`` -> numpy array (a copy), refusing any inconsistent field.

    bgr8/bgra8 are returned as they are (channel order is the caller's business): use
    :func:`rgb_from_msg` for an RGB view.
    """
    enc = msg.encoding
    if expect_encoding is not None:
        allowed = (expect_encoding,) if isinstance(expect_encoding, str) else tuple(expect_encoding)
        if enc not in allowed:
            raise ValueError(f"image encoding {enc!r} not accepted here (expected one of {allowed})")
    if enc not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {enc!r} (known: {sorted(IMAGE_ENCODINGS)})")
    channels, dtype = IMAGE_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise ValueError(f"image size {w}x{h} out of range 1..{MAX_SIDE}")
    row = w * channels * dtype.itemsize
    if step < row:
        raise ValueError(f"image step {step} is smaller than width {w} x {channels} channel(s) x "
                         f"{dtype.itemsize} byte(s) = {row}")
    data = memoryview(msg.data).cast("B") if not isinstance(msg.data, bytes) else msg.data
    if len(data) != step * h:
        raise ValueError(f"image data has {len(data)} bytes, but height {h} x step {step} = "
                         f"{h * step} (width {w}, encoding {enc})")
    buf = np.frombuffer(data, dtype=np.uint8).reshape(h, step)[:, :row]
    order = ">" if msg.is_bigendian else "<"
    arr = np.ascontiguousarray(buf).view(dtype.newbyteorder(order)).astype(dtype, copy=True)
    return arr.reshape(h, w) if channels == 1 else arr.reshape(h, w, channels)


def rgb_from_msg(msg) -> np.ndarray:
    """Any 8-bit colour ``Image`` -> HxWx3 RGB uint8."""
    arr = image_from_msg(msg, ("rgb8", "bgr8", "rgba8", "bgra8", "8UC3"))
    if msg.encoding in ("bgr8", "bgra8"):
        arr = arr[:, :, 2::-1]
    return np.ascontiguousarray(arr[:, :, :3])


def labels_from_msg(msg) -> np.ndarray:
    """A label map ``Image`` (mono8 / 8UC1: one class id per pixel) -> HxW uint8."""
    return image_from_msg(msg, ("mono8", "8UC1"))


# --------------------------------------------------------------------------------------------
# semantic frames
@dataclass
class SemanticPacket:
    """A semantic codec packet plus the parameters the SemanticFrame message carries beside it."""

    payload: bytes
    frame_index: int
    frame_type: int  # FRAME_TYPE_I or FRAME_TYPE_P
    width: int
    height: int
    xi: float
    iframe_period: int
    q_symbols: int
    bitstream_version: int = SEMANTIC_VERSION
    profile: str = ""
    stamp_ns: int | None = None
    frame_id: str = "camera"
    copy_stamps_ns: tuple[int, ...] = ()  # of the frames a redundancy bundle repeats, oldest first

    @property
    def is_iframe(self) -> bool:
        return self.frame_type == FRAME_TYPE_I

    @property
    def bits(self) -> int:
        return frame_bits(self.payload)


def check_semantic(p: SemanticPacket, against_payload: bool = True) -> SemanticPacket:
    """Raise ``BitstreamError`` naming the first field that is out of range or contradicts the
    payload's own header."""
    if p.frame_type not in _FRAME_TYPES:
        raise BitstreamError(f"SemanticFrame.frame_type {p.frame_type} is unknown "
                             f"(0 = I-frame, 1 = P-frame)")
    if not (0 < p.width <= MAX_SIDE and 0 < p.height <= MAX_SIDE):
        raise BitstreamError(f"SemanticFrame size {p.width}x{p.height} out of range 1..{MAX_SIDE}")
    if not (math.isfinite(p.xi) and p.xi >= 0):
        raise BitstreamError(f"SemanticFrame.xi {p.xi} must be a finite number >= 0")
    if p.iframe_period < 1:
        raise BitstreamError(f"SemanticFrame.iframe_period {p.iframe_period} must be >= 1")
    if p.q_symbols < 2:
        raise BitstreamError(f"SemanticFrame.q_symbols {p.q_symbols} must be >= 2")
    if not p.payload:
        raise BitstreamError("SemanticFrame.payload is empty")
    if len(p.payload) > MAX_PAYLOAD_BYTES:
        raise BitstreamError(f"SemanticFrame.payload of {len(p.payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if against_payload:
        # the frame's own packet (behind the copies of a redundancy bundle); raises BitstreamError
        # on a corrupt packet or bundle
        parts = unbundle(p.payload)
        hdr = parse_header(parts.primary)
        if p.copy_stamps_ns and len(p.copy_stamps_ns) != len(parts.copies):
            raise BitstreamError(f"SemanticFrame.copy_stamps names {len(p.copy_stamps_ns)} frames, the payload "
                                 f"repeats {len(parts.copies)}")
        for field, got, value in (("width", hdr.width, p.width), ("height", hdr.height, p.height),
                                  ("bitstream_version", hdr.version, p.bitstream_version)):
            if got is not None and got != value:  # P-frames carry no size
                raise BitstreamError(f"SemanticFrame.{field} = {value} contradicts the payload "
                                     f"header ({got})")
        # the packet carries the index modulo 256 (I-frames, long P-frames) or 16 (short P-frames)
        modulo = hdr.index_modulo
        if hdr.frame_index != p.frame_index % modulo:
            raise BitstreamError(f"SemanticFrame.frame_index = {p.frame_index} contradicts the "
                                 f"payload header ({hdr.frame_index} = index mod {modulo})")
        if hdr.frame_type != p.frame_type:
            raise BitstreamError(f"SemanticFrame.frame_type {_FRAME_TYPES[p.frame_type]} "
                                 f"contradicts the payload header ({hdr.frame_type})")
    return p


def semantic_to_msg(p: SemanticPacket):
    from semcomm_ros.msg import SemanticFrame

    check_semantic(p, against_payload=False)
    msg = SemanticFrame()
    msg.header = _header(p.stamp_ns, p.frame_id)
    msg.frame_index = int(p.frame_index) & 0xFFFFFFFF
    msg.frame_type = int(p.frame_type)
    msg.xi = float(p.xi)
    msg.iframe_period = int(p.iframe_period)
    msg.q_symbols = int(p.q_symbols)
    msg.bitstream_version = int(p.bitstream_version)
    msg.profile = str(p.profile)
    msg.width, msg.height = int(p.width), int(p.height)
    msg.payload = bytes(p.payload)
    msg.copy_stamps = [stamp_from_ns(ns) for ns in p.copy_stamps_ns]
    return msg


def semantic_from_msg(msg, against_payload: bool = True) -> SemanticPacket:
    p = SemanticPacket(
        payload=bytes(msg.payload), frame_index=int(msg.frame_index), frame_type=int(msg.frame_type),
        width=int(msg.width), height=int(msg.height), xi=float(msg.xi),
        iframe_period=int(msg.iframe_period), q_symbols=int(msg.q_symbols),
        bitstream_version=int(msg.bitstream_version), profile=str(msg.profile),
        stamp_ns=stamp_to_ns(msg.header.stamp), frame_id=str(msg.header.frame_id),
        copy_stamps_ns=tuple(stamp_to_ns(t) for t in msg.copy_stamps))
    return check_semantic(p, against_payload)


# --------------------------------------------------------------------------------------------
# low-res frames
@dataclass
class LowResPacket:
    payload: bytes
    frame_index: int
    codec: str
    width: int  # low-res (coded) size, not the camera's
    height: int
    keyframe: bool
    stamp_ns: int | None = None
    frame_id: str = "camera"

    @property
    def bits(self) -> int:
        return frame_bits(self.payload)


def check_lowres(p: LowResPacket, against_payload: bool = True) -> LowResPacket:
    if not p.codec:
        raise BitstreamError("LowResFrame.codec is empty")
    if not (0 < p.width <= MAX_SIDE and 0 < p.height <= MAX_SIDE):
        raise BitstreamError(f"LowResFrame size {p.width}x{p.height} out of range 1..{MAX_SIDE}")
    if not p.payload:
        raise BitstreamError("LowResFrame.payload is empty (skipped frames are not sent)")
    if len(p.payload) > MAX_PAYLOAD_BYTES:
        raise BitstreamError(f"LowResFrame.payload of {len(p.payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if against_payload:
        hdr = lowres.parse_header(unbundle(p.payload).primary)  # behind a redundancy bundle's copies
        if bool(hdr["key"]) != bool(p.keyframe):
            raise BitstreamError(f"LowResFrame.keyframe = {p.keyframe} contradicts the payload "
                                 f"(a {'key' if hdr['key'] else 'delta'} frame)")
        if hdr["key"]:
            for field, value in (("width", p.width), ("height", p.height), ("codec", p.codec)):
                if hdr[field] != value:
                    raise BitstreamError(f"LowResFrame.{field} = {value!r} contradicts the payload "
                                         f"header ({hdr[field]!r})")
        # hdr["index"] is the low-res encoder's own counter (it restarts when the encoder is
        # re-opened for a new scale), so it is not compared with frame_index; the low-res decoder
        # checks its continuity itself.
    return p


def lowres_to_msg(p: LowResPacket):
    from semcomm_ros.msg import LowResFrame

    check_lowres(p, against_payload=False)
    msg = LowResFrame()
    msg.header = _header(p.stamp_ns, p.frame_id)
    msg.frame_index = int(p.frame_index) & 0xFFFFFFFF
    msg.codec = str(p.codec)
    msg.width, msg.height = int(p.width), int(p.height)
    msg.keyframe = bool(p.keyframe)
    msg.payload = bytes(p.payload)
    return msg


def lowres_from_msg(msg, against_payload: bool = True) -> LowResPacket:
    p = LowResPacket(
        payload=bytes(msg.payload), frame_index=int(msg.frame_index), codec=str(msg.codec),
        width=int(msg.width), height=int(msg.height), keyframe=bool(msg.keyframe),
        stamp_ns=stamp_to_ns(msg.header.stamp), frame_id=str(msg.header.frame_id))
    return check_lowres(p, against_payload)


# --------------------------------------------------------------------------------------------
def msg_to_dict(msg) -> dict:
    """Any generated message -> plain dict (arrays as lists, uint8[] as bytes), for tests, logs
    and bag inspection."""
    out = {}
    for name, typ in msg.get_fields_and_field_types().items():
        v = getattr(msg, name)
        if hasattr(v, "get_fields_and_field_types"):
            out[name] = msg_to_dict(v)
        elif typ in ("sequence<uint8>", "sequence<octet>") or typ.startswith("uint8["):
            out[name] = bytes(v)
        elif isinstance(v, (list, tuple)) or hasattr(v, "tolist"):
            out[name] = [msg_to_dict(x) if hasattr(x, "get_fields_and_field_types") else x
                         for x in (v.tolist() if hasattr(v, "tolist") else v)]
        else:
            out[name] = v
    return out
