"""Seeds for ``semcomm fuzz --target semantic``: valid semantic packet streams of a hand-made
moving scene, both profiles, three quantizer / tolerance / period settings, and streams predicted
from acknowledged frames with packets lost on the way (long P-frames naming older references)."""

from __future__ import annotations

import cv2
import numpy as np

from semcomm_ros.codec.packet import P_LONG_MARKER, P_MARKER, crc8, p_check
from semcomm_ros.codec.semantic import FrameLostError, SemanticDecoder, SemanticEncoder


def _maps(rng: np.random.Generator, n: int, h: int, w: int) -> list[np.ndarray]:
    """A moving hand-made scene: ring with a hole, nested square, disc, occluding box, appearing blob."""
    out = []
    for t in range(n):
        lab = np.zeros((h, w), np.uint8)
        ox, oy = int(4 * t + rng.integers(0, 3)), int(2 * t)
        cv2.rectangle(lab, (10 + ox, 10 + oy), (70 + ox, 60 + oy), 1, -1)
        cv2.rectangle(lab, (25 + ox, 22 + oy), (50 + ox, 45 + oy), 0, -1)
        cv2.rectangle(lab, (32 + ox, 28 + oy), (40 + ox, 36 + oy), 2, -1)
        c = (w - 50 - 2 * t, h // 2 + t)
        cv2.ellipse(lab, c, (28, 18), 7 * t, 0, 360, 3, -1)
        cv2.rectangle(lab, (c[0] - 5, c[1] - 40), (c[0] + 25, c[1] - 5), 4, -1)
        if t >= n // 2:
            cv2.circle(lab, (w // 2, h - 30), 6 + t, 5, -1)
        out.append(lab)
    return out


def fuzz_corpus(seed: int) -> list[list[bytes]]:
    rng = np.random.default_rng(seed)
    streams = []
    for profile in ("paper", "tracked"):
        for q, xi, period in ((256, 6.0, 4), (1024, 2.0, 3), (37, 10.0, 8)):
            enc = SemanticEncoder(xi=xi, period=period, q_symbols=q, profile=profile)
            maps = _maps(rng, 12, 96 + 32 * (q == 37), 160)
            streams.append([enc.encode(m) for m in maps])
        # reference picture selection: acknowledgements two frames late, a few packets lost; the
        # stream keeps what a decoder decodes (a frame predicted from a lost one is refused)
        enc, dec = SemanticEncoder(xi=4.0, period=32, profile=profile), SemanticDecoder()
        enc.predict_from_acked = True
        stream, decoded = [], set()
        for k, m in enumerate(_maps(rng, 18, 96, 160)):
            if k - 3 in decoded:
                enc.acknowledge(k - 3)
            pkt = enc.encode(m)
            if k in (3, 7, 8, 13):
                continue
            try:
                dec.decode(pkt)
            except FrameLostError:
                continue
            stream.append(pkt)
            decoded.add(k)
        streams.append(stream)
    return streams


def fuzz_reseal(pkt: bytes) -> bytes:
    """Recompute a mutated packet's check bits (P-frame) or CRC (I-frame), so the fuzzer reaches
    the payload parser."""
    if not pkt:
        return pkt
    b = bytearray(pkt)
    if b[0] >> 6 == P_MARKER or b[0] >> 7 == P_LONG_MARKER:
        mask = 3 if b[0] >> 6 == P_MARKER else 7
        b[0] = (b[0] & ~mask & 0xFF) | p_check(bytes(b))
        return bytes(b)
    if len(b) < 2:
        return pkt
    return bytes(b[:-1]) + bytes([crc8(bytes(b[:-1]))])
