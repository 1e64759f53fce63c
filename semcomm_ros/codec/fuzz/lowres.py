"""Seeds for ``semcomm fuzz --target lowres``: valid low-res packet streams."""

from __future__ import annotations

from semcomm_ros.codec.lowres import LowResEncoder
from semcomm_ros.codec.packet import crc8
from semcomm_ros.scenes import tabletop_clip


def fuzz_corpus(seed: int = 0, frames: int = 30) -> list[list[bytes]]:
    """Valid low-res packet streams (what goes on the wire: skipped frames send nothing) of short
    tabletop clips at two rates."""
    streams = []
    for i, kbps in enumerate((2.0, 8.0)):
        enc = LowResEncoder(256, 256, fps=10, scale=4, kbps=kbps, keyframe_interval=10)
        packets = (enc.encode(rgb) for rgb, _ in tabletop_clip(seed + i, frames, 256, 256))
        streams.append([p for p in packets if p])
    return streams


def fuzz_reseal(packet: bytes) -> bytes:
    """Recompute a mutated packet's checksum, so the fuzzer reaches the payload checks."""
    if len(packet) < 2:
        return packet
    return packet[:-1] + bytes([crc8(packet[:-1])])
