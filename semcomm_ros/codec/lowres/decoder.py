"""``LowResDecoder``: low-res packets back to frames, with loss detection (docs/lowres.md,
"Loss and corruption")."""

from __future__ import annotations

import copy
import logging

import cv2
import numpy as np

from semcomm_ros.codec.errors import BitstreamError
from semcomm_ros.codec.lowres import codecs
from semcomm_ros.codec.lowres.packet import parse_header

log = logging.getLogger("semcomm_ros.codec.lowres")


def upsample(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic upsampling of a decoded low-res frame back to the camera size (for metrics)."""
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC)


class LowResDecoder:
    """Decodes low-res packets; ``decode(packet) -> rgb`` (low resolution) or ``None``.

    ``b""`` (a skipped frame) returns the held previous frame. ``state`` is ``"waiting"`` (no
    keyframe yet), ``"ok"`` or ``"lost"`` (a packet went missing: waiting for a keyframe);
    ``needs_keyframe`` is True in the latter two. ``losses`` counts detected loss events.
    """

    def __init__(self):
        self._ctx = None
        self._codec: str | None = None
        self._size: tuple[int, int] | None = None  # coded
        self._out_size: tuple[int, int] | None = None  # low-res, as returned
        self._last_index: int | None = None
        self._last_packet: bytes | None = None
        self._frame: np.ndarray | None = None
        self._chain: list[bytes] = []  # payloads since the keyframe: the decoder's whole state
        self.state = "waiting"
        self.losses = 0
        self.frames_decoded = 0

    @property
    def needs_keyframe(self) -> bool:
        return self.state != "ok"

    def __deepcopy__(self, memo):
        # FFmpeg contexts cannot be copied; the copy re-decodes the chain since the keyframe
        new = LowResDecoder.__new__(LowResDecoder)
        for key, value in self.__dict__.items():
            if key != "_ctx":
                new.__dict__[key] = copy.deepcopy(value, memo)
        new._ctx = None
        if self._ctx is not None and self._chain:
            new._ctx = codecs.open_decoder(self._codec)
            for payload in self._chain:
                codecs.decode_payload(self._codec, new._ctx, payload)
        return new

    def _mark_lost(self, why: str) -> None:
        if self.state == "ok":
            self.losses += 1
            log.warning("low-res stream: %s; waiting for a keyframe", why)
        self.state = "lost" if self.state == "ok" or self.state == "lost" else self.state
        self._frame = None
        self._ctx = None
        self._chain = []

    def decode(self, packet: bytes) -> np.ndarray | None:
        if isinstance(packet, (bytes, bytearray, memoryview)) and len(packet) == 0:
            return None if self._frame is None or self.state != "ok" else self._frame.copy()
        packet = bytes(packet) if isinstance(packet, (bytearray, memoryview)) else packet
        info = parse_header(packet)
        if info["key"]:
            return self._decode_key(info, packet)
        if self.state != "ok":
            return None
        if packet == self._last_packet:  # a duplicate delivery: nothing new
            return self._frame.copy()
        if (self._last_index + info["gap"]) & 0xFF != info["index"]:
            self._mark_lost(f"delta frame {info['index']} does not follow frame "
                            f"{self._last_index} (gap {info['gap']})")
            return None
        codecs.check_payload(self._codec, info["payload"], False)
        rgb = self._run(info["payload"])
        self._last_index = info["index"]
        self._last_packet = packet
        return rgb

    def _decode_key(self, info: dict, packet: bytes) -> np.ndarray | None:
        if packet == self._last_packet and self.state == "ok":
            return self._frame.copy()
        codecs.check_payload(info["codec"], info["payload"], True)
        # a fresh decoder per keyframe: nothing predicted from before the keyframe survives
        self._ctx = codecs.open_decoder(info["codec"])
        self._codec, self._size = info["codec"], (info["coded_width"], info["coded_height"])
        self._out_size = (info["width"], info["height"])
        self._chain = []
        rgb = self._run(info["payload"])  # on error: state "lost" (or still "waiting")
        self.state = "ok"
        self._last_index = info["index"] & 0xFF
        self._last_packet = packet
        return rgb

    def _run(self, payload: bytes) -> np.ndarray:
        try:
            frames = codecs.decode_payload(self._codec, self._ctx, payload)
        except BitstreamError:
            self._mark_lost("undecodable packet")
            raise
        if len(frames) != 1:
            self._mark_lost("packet without exactly one picture")
            raise BitstreamError(f"{self._codec} payload gave {len(frames)} pictures, expected 1")
        frame = frames[0]
        if (frame.width, frame.height) != self._size:
            self._mark_lost("picture size mismatch")
            raise BitstreamError(f"{self._codec} picture is {frame.width}x{frame.height}, header "
                                 f"says {self._size[0]}x{self._size[1]}")
        self._frame = frame.to_ndarray(format="rgb24")
        if self._size != self._out_size:
            # coded below the low-res size (low rates): shown at the low-res size
            self._frame = upsample(self._frame, *self._out_size)
        self._chain.append(payload)
        self.frames_decoded += 1
        return self._frame.copy()
