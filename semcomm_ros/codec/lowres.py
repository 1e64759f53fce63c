"""The low-resolution degraded stream (paper V-C): appearance cues at ~1 kbps.

The robot downscales each camera frame by ``scale`` (4 in the paper) and sends it through a real
video codec (VP9 via PyAV's libvpx by default; SVT-AV1 and x265 selectable) at a target bitrate
far below what the codecs' own rate control reaches. The operator decodes these degraded frames
and feeds them to the Restoration Adapter.

Why VP9 (figures in ``docs/lowres.md``): with this rate control at 1 kbps on 128x128 tabletop
clips VP9 gives the highest PSNR (+0.6 dB over SVT-AV1, +1.6 dB over x265); SVT-AV1 has a
slightly higher MS-SSIM (+0.02) and stays selectable; x265 is last on both; x264 writes a
~600-byte SEI and a 3x larger I-frame.

Rate control (our own outer loop, because at these rates every codec sits at its coarsest
quantizer and its internal rate control cannot go lower):

- a bit bucket fills by ``kbps * 1024 / fps`` bits per frame and is emptied by every packet's
  real size, header included;
- a frame is coded as a delta (P) frame only when the bucket holds the expected cost of one,
  otherwise it is *skipped*: ``encode`` returns ``b""`` and the decoder holds the previous frame
  (temporal resolution is what gives at very low rates);
- a keyframe (first frame, every ``keyframe_interval`` frames, or on ``force_keyframe()``) is
  coded once the bucket holds half its expected cost, so its cost is spread over the frames
  before and after it; P-frames pause meanwhile. Its size is bounded to 12 % of a 10 s window
  by low-passing the keyframe input as much as needed (trial encodes, see ``_code_key``);
- the quality tier (codec CRF/QP) is chosen at each keyframe, where the encoder is re-opened:
  the finest tier that still codes >= 80 % of the frames. When the bucket overflows (the scene
  needs less than the budget at this tier: 8 % of the last 1.5 s unused), an extra keyframe moves to
  the next finer tier. ``set_kbps`` acts on the bucket at once and on the tier at the next
  keyframe.

Latency: zero frames. No B-frames, no lookahead, no lag: frame k's packet (or ``b""`` for a
skipped frame) is returned by the ``encode`` call of frame k and decodes alone on arrival.
A forced keyframe is delayed until the bucket allows it (about ``K / (2 * rate)`` seconds for a
keyframe of K bits, e.g. ~1 s at 1 kbps).

Packet format, version 1 (all integers little-endian; CRC-8/ATM over everything before it):

- keyframe:  ``tag | frame_index u16 | codec_id u8 | width u16 | height u16 | payload | crc8``
- delta:     ``tag | frame_index mod 256 u8 | gap u8 | payload | crc8``
- skipped:   ``b""`` (nothing is sent)

``tag = 0xA0 | version << 2 | type`` (type 0 keyframe, 1 delta). ``gap`` is the number of frames
since the previous coded packet, so the decoder can tell a skipped frame (nothing sent) from a
lost packet: ``(previous frame_index + gap) mod 256`` must equal ``frame_index``.

Loss: a gap mismatch means a coded packet was lost or reordered; the decoder returns ``None``,
sets ``needs_keyframe`` (the receiver should ask the sender for ``force_keyframe()``) and returns
``None`` for every packet until the next keyframe, so it never shows a frame predicted from a
missing reference. A lost coded packet followed only by skipped frames is noticed at the next
coded packet; until then the decoder holds the last correctly decoded frame.
Corrupt, truncated, foreign or unknown-version packets raise ``BitstreamError``.
"""

from __future__ import annotations

import copy
import logging
import os
import struct
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from semcomm_ros.codec.errors import BitstreamError
from semcomm_ros.codec.packet import crc8  # CRC-8/ATM, shared with the semantic packets

log = logging.getLogger(__name__)

VERSION = 1
_MAGIC = 0xA0
TYPE_KEY = 0
TYPE_DELTA = 1
_KEY_HDR = struct.Struct("<BHBHH")  # tag, frame index, codec id, width, height
_DELTA_HDR = struct.Struct("<BBB")  # tag, frame index mod 256, gap
KEY_OVERHEAD = _KEY_HDR.size + 1
DELTA_OVERHEAD = _DELTA_HDR.size + 1
MAX_GAP = 255
UPGRADE_WINDOW = 15  # frames
KEY_SHARE = 0.12
KEY_BLUR_SIGMAS = (0.0, 0.8, 1.2, 1.8, 2.5, 3.5, 5.0, 8.0)
MAX_SIZE = 4096

# AV1 packets from SVT-AV1 start with a temporal-delimiter OBU that carries no information:
# 2 bytes per frame is 16 % of a 1 kbps budget, so it is stripped on the wire and restored.
_AV1_TD = b"\x12\x00"


@dataclass(frozen=True)
class _CodecSpec:
    codec_id: int
    encoder: str
    decoder: str
    # quality tiers, coarsest first: the CRF (VP9, AV1) or QP (HEVC)
    tiers: tuple[int, ...]
    # prior bits per pixel of a P-frame / keyframe at each tier, measured on generated tabletop
    # clips at 128x128 with every frame coded; only a starting point: the encoder rescales
    # them by what it measures on the scene at hand
    p_bpp: tuple[float, ...]
    k_bpp: tuple[float, ...]


def _vp9_options(q: int) -> dict:
    return {
        "crf": str(q), "b": "0", "deadline": "good", "cpu-used": "1",
        "lag-in-frames": "0", "auto-alt-ref": "0", "row-mt": "0", "tile-columns": "0",
    }


def _av1_options(q: int) -> dict:
    return {"crf": str(q), "preset": "6", "svtav1-params": "pred-struct=1:lookahead=0:scd=0"}


def _hevc_options(q: int) -> dict:
    return {
        "preset": "medium", "tune": "zerolatency",
        "x265-params": f"qp={q}:bframes=0:rc-lookahead=0:repeat-headers=1:info=0:log-level=error",
    }


def _spec(codec_id: int, encoder: str, decoder: str, measured: tuple, p: tuple, k: tuple,
          tiers: tuple) -> _CodecSpec:
    """Tiers every few CRF/QP steps, priors interpolated (log-linear) between measured points."""
    x = np.array(measured[::-1], float)
    lp = np.interp(tiers, x, np.log(p[::-1]))
    lk = np.interp(tiers, x, np.log(k[::-1]))
    return _CodecSpec(codec_id, encoder, decoder, tuple(tiers),
                      tuple(np.exp(lp).round(5)), tuple(np.exp(lk).round(5)))


# priors measured with every frame coded on 3 generated tabletop clips at 128x128
CODECS: dict[str, _CodecSpec] = {
    "vp9": _spec(1, "libvpx-vp9", "vp9", (63, 58, 52, 46, 40, 34, 28),
                 (0.0157, 0.0218, 0.0296, 0.0418, 0.0626, 0.0960, 0.1416),
                 (0.1068, 0.1439, 0.1943, 0.2523, 0.3283, 0.4201, 0.5531),
                 tuple(range(63, 27, -3))),
    "av1": _spec(2, "libsvtav1", "libdav1d", (63, 58, 52, 46, 40, 34, 28),
                 (0.0172, 0.0228, 0.0311, 0.0431, 0.0623, 0.0946, 0.1410),
                 (0.0971, 0.1357, 0.1841, 0.2466, 0.3260, 0.4219, 0.5044),
                 tuple(range(63, 27, -3))),
    "hevc": _spec(3, "libx265", "hevc", (51, 48, 45, 42, 39, 36, 33),
                  (0.0107, 0.0129, 0.0160, 0.0199, 0.0256, 0.0344, 0.0474),
                  (0.0765, 0.0889, 0.1063, 0.1330, 0.1527, 0.1802, 0.2256),
                  tuple(range(51, 32, -2))),
}
_OPTIONS = {"vp9": _vp9_options, "av1": _av1_options, "hevc": _hevc_options}
_BY_ID = {spec.codec_id: name for name, spec in CODECS.items()}


def downscale(rgb: np.ndarray, scale: int) -> np.ndarray:
    """Area-average downscale by an integer factor (what the robot sends)."""
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (w // scale, h // scale), interpolation=cv2.INTER_AREA)


def upsample(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic upsampling of a decoded low-res frame back to the camera size (for metrics)."""
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC)


def _open_encoder(spec: _CodecSpec, name: str, width: int, height: int, fps: int, q: int):
    import av

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
    ctx.options = _OPTIONS[name](q)
    ctx.open()
    return ctx


class LowResEncoder:
    """Downscale + real video codec + bit-bucket rate control; one packet per frame.

    ``width``/``height`` are the camera frame's size; the coded size is ``width // scale`` x
    ``height // scale`` (both must be even and >= 16). ``keyframe_interval`` in frames, 0 for
    keyframes only at the start and on ``force_keyframe()``. ``window_s`` is the rate window
    the keyframe size is bounded for (a keyframe gets at most 12 % of one window's bits).
    """

    def __init__(self, width: int, height: int, fps: int = 10, scale: int = 4, kbps: float = 1.0,
                 codec: str = "vp9", keyframe_interval: int = 100, window_s: float = 10.0):
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
        if scale < 1 or width % scale or height % scale:
            raise ValueError(f"width {width} and height {height} must be multiples of scale {scale}")
        lw, lh = width // scale, height // scale
        if lw % 2 or lh % 2 or lw < 16 or lh < 16 or lw > MAX_SIZE or lh > MAX_SIZE:
            raise ValueError(f"low-res size {lw}x{lh} must be even and within 16..{MAX_SIZE}")
        if not (1 <= int(fps) <= 120):
            raise ValueError(f"fps must be within 1..120, got {fps}")
        if keyframe_interval < 0:
            raise ValueError("keyframe_interval must be >= 0 (0: only on request)")
        self.width, self.height, self.scale = width, height, scale
        self.low_width, self.low_height = lw, lh
        self.fps = int(fps)
        self.codec = codec
        self.keyframe_interval = int(keyframe_interval)
        self.window_s = float(window_s)
        self.key_blur = 0.0
        self._spec = CODECS[codec]
        self._pixels = lw * lh
        self.kbps = 0.0
        self.set_kbps(kbps)
        self._ctx = None
        self._tier = 0
        self._frame_index = 0
        self._last_key = 0
        self._last_coded = -1
        self._key_pending = True
        self._bucket = 0.0
        # measured / prior cost ratio (how much harder this scene is than the prior table)
        self._p_scale = 1.0
        self._k_scale = 1.0
        self._clipped: list[float] = []  # bits the bucket's cap threw away, last frames
        self._upgrade_to = 0
        self.upgrades = 0  # keyframes spent on moving to a finer tier
        self.frame_types: list[str] = []  # "K", "P" or "S" (skipped) per encoded frame
        self.bits: list[int] = []  # bits sent per frame, header included

    # -- control --------------------------------------------------------------------------
    def set_kbps(self, kbps: float) -> None:
        """Change the target rate (1 kbps = 1024 bit/s); takes effect from the next frame."""
        kbps = float(kbps)
        if not (0.05 <= kbps <= 10000):
            raise ValueError(f"kbps must be within 0.05..10000, got {kbps}")
        self.kbps = kbps

    def force_keyframe(self) -> None:
        """Request a keyframe (e.g. after the receiver reported loss); sent as the bucket allows."""
        self._key_pending = True

    @property
    def tier(self) -> int:
        """The codec quality parameter (CRF or QP) in use."""
        return self._spec.tiers[self._tier]

    def _budget(self) -> float:
        return self.kbps * 1024.0 / self.fps

    def _est_p(self, tier: int) -> float:
        return self._spec.p_bpp[tier] * self._pixels * self._p_scale + 8 * DELTA_OVERHEAD

    def _est_k(self, tier: int) -> float:
        # _code_key low-passes a keyframe down to the key budget when it can
        est = self._spec.k_bpp[tier] * self._pixels * self._k_scale
        return min(est, self._key_budget() - 8 * KEY_OVERHEAD) + 8 * KEY_OVERHEAD

    def _choose_tier(self) -> int:
        budget = self._budget()
        amortize = max(self.keyframe_interval, 50)
        best = 0
        for t in range(len(self._spec.tiers)):
            # the finest tier that still codes >= 80 % of the frames: skipping absorbs the rest,
            # so the budget is spent rather than left unused between two tiers
            if self._est_p(t) + self._est_k(t) / amortize <= 1.25 * budget:
                best = t
        return best

    # -- coding ---------------------------------------------------------------------------
    def encode(self, rgb: np.ndarray) -> bytes:
        """Code one camera frame; returns its packet, ``b""`` when the frame is skipped."""
        rgb = np.asarray(rgb)
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB of shape {(self.height, self.width, 3)}, "
                             f"got {rgb.dtype} {rgb.shape}")
        k = self._frame_index
        self._frame_index += 1
        budget = self._budget()
        if self.keyframe_interval and k - self._last_key >= self.keyframe_interval:
            self._key_pending = True
        if self._ctx is None:
            # start as if half a keyframe had been banked (a CBR buffer's initial fullness), so
            # the first keyframe, too, is half paid before and half after
            self._bucket = self._est_k(self._choose_tier()) / 2 - budget
        if self._key_pending:
            tier = max(self._choose_tier(), self._upgrade_to)
            est = self._est_k(tier)
            self._fill(budget, est / 2 + budget)
            if self._ctx is None or self._bucket >= est / 2:
                return self._code_key(k, rgb, tier)
        else:
            est = self._est_p(self._tier)
            self._fill(budget, max(0.3 * budget * self.fps, est + budget))
            self._maybe_upgrade(budget)
            if self._bucket >= est or k - self._last_coded >= MAX_GAP:
                return self._code_delta(k, rgb)
        self.frame_types.append("S")
        self.bits.append(0)
        return b""

    def _fill(self, budget: float, cap: float) -> None:
        level = self._bucket + budget
        self._bucket = min(level, cap)
        self._clipped.append(max(level - cap, 0.0))
        del self._clipped[:-UPGRADE_WINDOW]

    def _maybe_upgrade(self, budget: float) -> None:
        # A budget the scene does not use at this tier is lost to the bucket's cap; since the
        # tier can only change at a keyframe, spend it on one at a finer tier once 8 % of the
        # last UPGRADE_WINDOW frames' budget went unused (the next regular keyframe's choice
        # may step back down).
        if (self._tier + 1 < len(self._spec.tiers) and len(self._clipped) == UPGRADE_WINDOW
                and sum(self._clipped) >= 0.08 * budget * UPGRADE_WINDOW):
            self._upgrade_to = self._tier + 1
            self._key_pending = True
            self.upgrades += 1

    def close(self) -> None:
        """Flush and drop the codec (optional: only SVT-AV1 complains when it is not called)."""
        self._close()

    def _close(self) -> None:
        if self._ctx is not None:
            self._ctx.encode(None)  # zero latency: nothing is left, but SVT-AV1 wants its EOS
            self._ctx = None

    def _encode_frame(self, low: np.ndarray, k: int) -> bytes:
        import av

        frame = av.VideoFrame.from_ndarray(low, format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = k
        packets = self._ctx.encode(frame)
        data = b"".join(bytes(p) for p in packets)
        if not data:
            # zero-latency configuration: this would be a codec buffering a frame
            raise RuntimeError(f"{self._spec.encoder} returned no packet for frame {k}")
        if self.codec == "av1" and data.startswith(_AV1_TD):
            data = data[len(_AV1_TD):]
        return data

    def _key_budget(self) -> float:
        # a keyframe may take at most this share of one rate window: with half of it banked
        # before and half repaid after, it moves any window by at most +-KEY_SHARE / 2
        return KEY_SHARE * self.kbps * 1024.0 * self.window_s

    def _code_key(self, k: int, rgb: np.ndarray, tier: int) -> bytes:
        self._tier = tier
        low = downscale(rgb, self.scale)
        # At the coarsest quantizer a 128x128 keyframe of a cluttered table is 100-800 bytes,
        # more than a 10 s window of 0.5 kbps allows. Low-passing the keyframe is what still
        # lowers its cost (e.g. sigma 1.2 px: -40 % bits, -2 dB); the P-frames that follow
        # restore detail a little at a time. Trial encodes are cheap at this size.
        for sigma in KEY_BLUR_SIGMAS:
            src = cv2.GaussianBlur(low, (0, 0), sigma) if sigma else low
            self._close()
            self._ctx = _open_encoder(self._spec, self.codec, self.low_width, self.low_height,
                                      self.fps, self._spec.tiers[tier])
            payload = self._encode_frame(src, k)
            if 8 * (len(payload) + KEY_OVERHEAD) <= self._key_budget():
                break
        self.key_blur = sigma
        head = _KEY_HDR.pack(_MAGIC | VERSION << 2 | TYPE_KEY, k & 0xFFFF, self._spec.codec_id,
                             self.low_width, self.low_height)
        packet = head + payload
        packet += bytes([crc8(packet)])
        prior = self._spec.k_bpp[tier] * self._pixels
        self._k_scale = 0.5 * self._k_scale + 0.5 * (8 * len(payload) / prior)
        self._finish(k, packet, "K")
        self._last_key = k
        self._key_pending = False
        self._upgrade_to = 0
        self._clipped = []
        return packet

    def _code_delta(self, k: int, rgb: np.ndarray) -> bytes:
        payload = self._encode_frame(downscale(rgb, self.scale), k)
        gap = k - self._last_coded
        head = _DELTA_HDR.pack(_MAGIC | VERSION << 2 | TYPE_DELTA, k & 0xFF, gap)
        packet = head + payload
        packet += bytes([crc8(packet)])
        prior = self._spec.p_bpp[self._tier] * self._pixels
        self._p_scale = 0.8 * self._p_scale + 0.2 * (8 * len(payload) / prior)
        self._finish(k, packet, "P")
        return packet

    def _finish(self, k: int, packet: bytes, kind: str) -> None:
        self._bucket -= 8 * len(packet)
        self._last_coded = k
        self.frame_types.append(kind)
        self.bits.append(8 * len(packet))


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
        _, index, codec_id, w, h = _KEY_HDR.unpack_from(packet)
        if codec_id not in _BY_ID:
            raise BitstreamError(f"unknown low-res codec id {codec_id}")
        if not (16 <= w <= MAX_SIZE and 16 <= h <= MAX_SIZE) or w % 2 or h % 2:
            raise BitstreamError(f"invalid low-res frame size {w}x{h}")
        return {"key": True, "index": index, "codec": _BY_ID[codec_id], "width": w, "height": h,
                "payload": packet[_KEY_HDR.size:-1]}
    _, index, gap = _DELTA_HDR.unpack_from(packet)
    if gap == 0:
        raise BitstreamError("low-res delta packet with gap 0")
    return {"key": False, "index": index, "gap": gap, "payload": packet[_DELTA_HDR.size:-1]}


def _check_payload(codec: str, payload: bytes, key: bool) -> None:
    """Cheap syntax checks before FFmpeg sees the bytes (its decoders accept much garbage)."""
    b0 = payload[0]
    if codec == "vp9":
        if b0 >> 6 != 2:
            raise BitstreamError("VP9 payload lacks the frame marker")
        # profile 0 keyframe: marker(2) profile(2) show_existing(1) type(1) -> sync code follows
        if key and (b0 & 0x3C != 0 or payload[1:4] != b"\x49\x83\x42"):
            raise BitstreamError("VP9 keyframe payload lacks the keyframe sync code")
    elif codec == "av1":
        if b0 & 0x81:
            raise BitstreamError("AV1 payload has forbidden/reserved OBU header bits set")
    elif codec == "hevc":
        if not (payload.startswith(b"\x00\x00\x01") or payload.startswith(b"\x00\x00\x00\x01")):
            raise BitstreamError("HEVC payload lacks an Annex-B start code")


class LowResDecoder:
    """Decodes low-res packets; ``decode(packet) -> rgb`` (low resolution) or ``None``.

    ``b""`` (a skipped frame) returns the held previous frame. ``state`` is ``"waiting"`` (no
    keyframe yet), ``"ok"`` or ``"lost"`` (a packet went missing: waiting for a keyframe);
    ``needs_keyframe`` is True in the latter two. ``losses`` counts detected loss events.
    """

    def __init__(self):
        self._ctx = None
        self._codec: str | None = None
        self._size: tuple[int, int] | None = None
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
            new._ctx = _open_decoder(self._codec)
            for payload in self._chain:
                new._ctx.decode(_packet(self._codec, payload))
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
        _check_payload(self._codec, info["payload"], False)
        rgb = self._run(info["payload"])
        self._last_index = info["index"]
        self._last_packet = packet
        return rgb

    def _decode_key(self, info: dict, packet: bytes) -> np.ndarray | None:
        if packet == self._last_packet and self.state == "ok":
            return self._frame.copy()
        _check_payload(info["codec"], info["payload"], True)
        # a fresh decoder per keyframe: nothing predicted from before the keyframe survives
        self._ctx = _open_decoder(info["codec"])
        self._codec, self._size = info["codec"], (info["width"], info["height"])
        self._chain = []
        rgb = self._run(info["payload"])  # on error: state "lost" (or still "waiting")
        self.state = "ok"
        self._last_index = info["index"] & 0xFF
        self._last_packet = packet
        return rgb

    def _run(self, payload: bytes) -> np.ndarray:
        import av

        try:
            frames = self._ctx.decode(_packet(self._codec, payload))
        except (av.FFmpegError, ValueError, OSError) as exc:
            self._mark_lost("undecodable packet")
            raise BitstreamError(f"{self._codec} decoder rejected the payload: {exc}") from exc
        if len(frames) != 1:
            self._mark_lost("packet without exactly one picture")
            raise BitstreamError(f"{self._codec} payload gave {len(frames)} pictures, expected 1")
        frame = frames[0]
        if (frame.width, frame.height) != self._size:
            self._mark_lost("picture size mismatch")
            raise BitstreamError(f"{self._codec} picture is {frame.width}x{frame.height}, header "
                                 f"says {self._size[0]}x{self._size[1]}")
        self._frame = frame.to_ndarray(format="rgb24")
        self._chain.append(payload)
        self.frames_decoded += 1
        return self._frame.copy()


def _open_decoder(codec: str):
    import av

    ctx = av.CodecContext.create(CODECS[codec].decoder, "r")
    ctx.thread_count = 1  # frame threads would delay output: one packet, one picture
    if codec == "av1":
        ctx.options = {"max_frame_delay": "1"}
    return ctx


def _packet(codec: str, payload: bytes):
    import av

    return av.Packet(_AV1_TD + payload if codec == "av1" else payload)


def fuzz_corpus(seed: int = 0, frames: int = 30) -> list[list[bytes]]:
    """Valid low-res packet streams (what goes on the wire: skipped frames send nothing) of short
    tabletop clips at two rates, as seeds for ``semcomm fuzz --target lowres``."""
    from semcomm_ros.scenes import tabletop_clip

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
