"""Low-res packet format, version 1 (layout and loss rules: docs/lowres.md, "Packet format")."""

from __future__ import annotations

import struct

from semcomm_ros.codec.errors import BitstreamError
from semcomm_ros.codec.packet import crc8  # CRC-8/ATM, shared with the semantic packets

VERSION = 1
_MAGIC = 0xA0
TYPE_KEY = 0
TYPE_DELTA = 1
_KEY_HDR = struct.Struct("<BHBHH")  # tag, frame index, shift << 4 | codec id, width, height
_DELTA_HDR = struct.Struct("<BBB")  # tag, frame index mod 256, gap
KEY_OVERHEAD = _KEY_HDR.size + 1
DELTA_OVERHEAD = _DELTA_HDR.size + 1
MAX_GAP = 255
MAX_SIZE = 4096
MAX_SHIFT = 2  # the coded size is at least a quarter of the low-res size (each side)
CODEC_IDS = {"vp9": 1, "av1": 2, "hevc": 3}  # low nibble of a keyframe's codec byte
_BY_ID = {codec_id: name for name, codec_id in CODEC_IDS.items()}


def coded_ok(width: int, height: int, shift: int) -> bool:
    """Whether ``width`` x ``height`` halved ``shift`` times is a size the codecs take."""
    cw, ch = width >> shift, height >> shift
    return cw << shift == width and ch << shift == height and cw % 2 == 0 and ch % 2 == 0 \
        and cw >= 16 and ch >= 16


def _seal(packet: bytes) -> bytes:
    return packet + bytes([crc8(packet)])


def pack_key(index: int, codec: str, shift: int, width: int, height: int, payload: bytes) -> bytes:
    head = _KEY_HDR.pack(_MAGIC | VERSION << 2 | TYPE_KEY, index & 0xFFFF,
                         CODEC_IDS[codec] | shift << 4, width, height)
    return _seal(head + payload)


def pack_delta(index: int, gap: int, payload: bytes) -> bytes:
    return _seal(_DELTA_HDR.pack(_MAGIC | VERSION << 2 | TYPE_DELTA, index & 0xFF, gap) + payload)


def parse_header(packet: bytes) -> dict:
    """Check and split a non-empty packet; raises ``BitstreamError`` saying what is wrong."""
    if not isinstance(packet, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"low-res packet must be bytes, got {type(packet).__name__}")
    packet = bytes(packet)
    if len(packet) < DELTA_OVERHEAD + 1:
        raise BitstreamError(f"low-res packet truncated: {len(packet)} bytes")
    tag = packet[0]
    if tag & 0xF0 != _MAGIC:
        raise BitstreamError(f"not a low-res packet (tag byte 0x{tag:02x})")
    version, kind = (tag >> 2) & 3, tag & 3
    if version != VERSION:
        raise BitstreamError(f"unsupported low-res packet version {version} (this is {VERSION})")
    if kind not in (TYPE_KEY, TYPE_DELTA):
        raise BitstreamError(f"unknown low-res packet type {kind}")
    if crc8(packet[:-1]) != packet[-1]:
        raise BitstreamError("low-res packet checksum mismatch (corrupt packet)")
    if kind == TYPE_KEY:
        if len(packet) < KEY_OVERHEAD + 1:
            raise BitstreamError(f"low-res keyframe truncated: {len(packet)} bytes")
        _, index, codec_byte, w, h = _KEY_HDR.unpack_from(packet)
        codec_id, shift = codec_byte & 0x0F, codec_byte >> 4
        if codec_id not in _BY_ID:
            raise BitstreamError(f"unknown low-res codec id {codec_id}")
        if not (16 <= w <= MAX_SIZE and 16 <= h <= MAX_SIZE) or w % 2 or h % 2:
            raise BitstreamError(f"invalid low-res frame size {w}x{h}")
        if shift > MAX_SHIFT or not coded_ok(w, h, shift):
            raise BitstreamError(f"invalid coded size: {w}x{h} halved {shift} times")
        return {"key": True, "index": index, "codec": _BY_ID[codec_id], "width": w, "height": h,
                "shift": shift, "coded_width": w >> shift, "coded_height": h >> shift,
                "payload": packet[_KEY_HDR.size:-1]}
    _, index, gap = _DELTA_HDR.unpack_from(packet)
    if gap == 0:
        raise BitstreamError("low-res delta packet with gap 0")
    return {"key": False, "index": index, "gap": gap, "payload": packet[_DELTA_HDR.size:-1]}
