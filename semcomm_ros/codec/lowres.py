"""The low-resolution degraded stream (paper V-C): appearance cues at ~1 kbps.

The robot downscales each camera frame by ``scale`` (4 in the paper) and sends it through a real
video codec (VP9 via PyAV's libvpx by default; SVT-AV1 and x265 selectable) at a target bitrate
far below what the codecs' own rate control reaches. The operator decodes these degraded frames
and feeds them to the Restoration Adapter.

Why VP9 (figures in ``docs/lowres.md``): its quantizer can be set per frame through PyAV
(FFmpeg's libvpx wrapper re-applies ``qmax`` on every frame), which is what holds the rate
within a 10 s window; at 1 kbps it also has the best PSNR (+1.2 dB over SVT-AV1, +2.3 dB
over x265 with the same outer loop). SVT-AV1 and x265 stay selectable with a quantizer fixed
per keyframe; x264 writes a ~600-byte SEI and a 3x larger I-frame.

Rate control (our own outer loop: at these rates every codec sits near its coarsest quantizer
and its internal rate control cannot go lower). The budget is ``kbps * 1024 / fps`` bits per
frame; every packet counts with its header. What moves the rate of a sliding 10 s window is how
much the encoder's buffer level differs between the window's two ends, so the loop keeps that
level periodic with a period that divides the window:

- keyframes on a fixed grid (frame 0, then every ``keyframe_interval`` frames; 100 = the 10 s
  window at 10 fps), paid by a reserve that fills evenly between them up to the next keyframe's
  need (the last keyframe's cost with 10 % to grow, at most ``KEY_SHARE`` = 20 % of the bits
  between keyframes). Every window then holds one keyframe and the same reserve share. The
  keyframe's quantizer is the finest that fits, found by bisection over trial encodes (cheap at
  this size); past the coarsest, the keyframe's input is low-passed;
- delta frames on a pattern: m frames spread evenly over p, p a divisor of the window and of
  the keyframe interval, the densest that fits the budget a few quantizer steps finer than the
  coarsest (VP9 CRF 60); the frames between are *skipped* (``b""``, the decoder holds the
  previous frame). Each delta frame gets the quantizer at which a learnt size model (fixed
  header bytes plus a part growing with the quantizer step and the gap) says it spends what the
  account holds; the pattern is chosen anew when the account or the quantizer runs away;
- the coded size follows the rate: at low rates the low-res frame is halved once or twice
  (0.5 kbps: 32x32, 1 kbps: 64x64 for a 128x128 low-res frame) and the decoder upsamples it back,
  since a delta frame's bytes are mostly headers and motion and grow slowly with its size;
- ``set_kbps`` acts from the next frame; a change of coded size starts with a keyframe.

Latency: zero frames. No B-frames, no lookahead, no lag: frame k's packet (or ``b""`` for a
skipped frame) is returned by the ``encode`` call of frame k and decodes alone on arrival.
``force_keyframe()`` makes the next frame a keyframe, of at most 5 % of a window's bits (its
cost is repaid by skipping delta frames); the regular grid goes on.

Packet format, version 1 (all integers little-endian; CRC-8/ATM over everything before it):

- keyframe:  ``tag | frame_index u16 | shift << 4 | codec_id u8 | width u16 | height u16 |
  payload | crc8`` (``width`` x ``height``: the low-res size the decoder returns; the coded
  size is that halved ``shift`` times, 0..2)
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
import math
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
KEY_SHARE = 0.2  # of the bits between two keyframes (at most one window's)
KEY_QMIN_SLACK = 8  # quantizer steps under the last delta frame's that a keyframe's qmin keeps
FORCED_SHARE = 0.05  # of a window's bits, at most, for a forced keyframe
KEY_SPREAD = 0.04  # a window's rate change from one keyframe more or less, when they vary
HEADROOM = 4  # quantizer steps between the planned and the coarsest delta quantizer
SKIP_BELOW = 0.5  # a due delta frame is skipped when the account holds less than this share
RECHOOSE_DEBT, RECHOOSE_SURPLUS = 1.0, 1.0  # account bounds (in periods' budgets) for a new cadence
Q_BAND = 8  # quantizer steps below the coarsest at which the cadence is chosen anew
MAX_Q_STEP = 6  # quantizer steps finer than the last delta frame, per delta frame
MAX_SPEND = 2.0  # times the frame's share: the quantizer model is least sure far from it
SPEND = 1.0  # share of the account's surplus or debt a delta frame takes up
KEY_GROWTH = 1.1  # a keyframe may cost this much more than the last one
LEARN_RATE = 0.3  # of the log ratio measured / expected delta frame size, per delta frame
KEY_BLUR_SIGMAS = (0.0, 0.8, 1.2, 1.8, 2.5, 3.5, 5.0, 8.0)
MAX_SIZE = 4096
MAX_PATTERN = 20  # delta frames per pattern period at most
MAX_SHIFT = 2  # the coded size is at least a quarter of the low-res size (each side)
SIDE_BITS = 1.6  # bits per frame per pixel of the coded side (see LowResEncoder.set_kbps)

# AV1 packets from SVT-AV1 start with a temporal-delimiter OBU that carries no information:
# 2 bytes per frame is 16 % of a 1 kbps budget, so it is stripped on the wire and restored.
_AV1_TD = b"\x12\x00"


@dataclass(frozen=True)
class _CodecSpec:
    codec_id: int
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
CODECS: dict[str, _CodecSpec] = {
    "vp9": _CodecSpec(1, "libvpx-vp9", "vp9", 4, 63, 60, 12.0, 0.065, 9.0, True),
    "av1": _CodecSpec(2, "libsvtav1", "libdav1d", 4, 63, 63, 10.0, 0.056, 25.0, False),
    "hevc": _CodecSpec(3, "libx265", "hevc", 10, 51, 51, 8.0, 0.115, 14.0, False),
}
_BY_ID = {spec.codec_id: name for name, spec in CODECS.items()}
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


def downscale(rgb: np.ndarray, scale: int) -> np.ndarray:
    """Area-average downscale by an integer factor (what the robot sends)."""
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (w // scale, h // scale), interpolation=cv2.INTER_AREA)


def upsample(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic upsampling of a decoded low-res frame back to the camera size (for metrics)."""
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC)


def _open_encoder(spec: _CodecSpec, name: str, width: int, height: int, fps: int, q: int,
                  qmin: int):
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
    ctx.options = _OPTIONS[name](q, qmin)
    ctx.open()
    if spec.per_frame_q:
        ctx.qmax = q  # applied from the next frame on (the keyframe)
    return ctx


def _coded_ok(width: int, height: int, shift: int) -> bool:
    cw, ch = width >> shift, height >> shift
    return cw << shift == width and ch << shift == height and cw % 2 == 0 and ch % 2 == 0 \
        and cw >= 16 and ch >= 16


def _patterns(span: int) -> list[tuple[int, int]]:
    """Delta-frame patterns (p, m): m frames evenly spread over p, p a divisor of ``span``
    (the window and keyframe interval), so the pattern repeats a whole number of times in a
    window. Densest first; each density once, with its shortest period."""
    found: dict[Fraction, tuple[int, int]] = {}
    for p in (d for d in range(1, min(span, MAX_GAP) + 1) if span % d == 0):
        for m in range(1, min(p, MAX_PATTERN) + 1):
            found.setdefault(Fraction(m, p), (p, m))
    return [found[f] for f in sorted(found, reverse=True)]


def _flush(ctx) -> None:
    if ctx is not None:
        ctx.encode(None)  # SVT-AV1 logs an error for an encoder dropped without its EOS


class LowResEncoder:
    """Downscale + real video codec + bit-bucket rate control; one packet per frame.

    ``width``/``height`` are the camera frame's size; the coded size is ``width // scale`` x
    ``height // scale`` (both must be even and >= 16). ``keyframe_interval`` in frames, 0 for
    keyframes only at the start and on ``force_keyframe()``. ``window_s`` is the rate window
    the controller holds (10 s in the issue); keyframes are sized against it. ``resize=False``
    always codes the low-res size (otherwise low rates code it halved, see ``set_kbps``).
    """

    def __init__(self, width: int, height: int, fps: int = 10, scale: int = 4, kbps: float = 1.0,
                 codec: str = "vp9", keyframe_interval: int = 100, window_s: float = 10.0,
                 resize: bool = True):
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
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.width, self.height, self.scale = width, height, scale
        self.low_width, self.low_height = lw, lh
        self.fps = int(fps)
        self.codec = codec
        self.keyframe_interval = int(keyframe_interval)
        self.window_s = float(window_s)
        self._window = max(1, int(round(self.window_s * self.fps)))  # frames
        self.key_blur = 0.0
        self._spec = CODECS[codec]
        self.resize = bool(resize)
        self._shift = None  # the coded size is the low-res size halved this many times
        self.coded_width, self.coded_height = lw, lh
        self.kbps = 0.0
        self.set_kbps(kbps)
        self._ctx = None
        self._q = self._spec.delta_coarsest  # quantizer of the last delta frame
        self._key_q = self._spec.coarsest
        self._delta_finest = self._spec.coarsest  # the open encoder's qmin
        self._frame_index = 0
        self._last_key = 0
        self._last_coded = -1
        self._key_pending = False  # a requested keyframe
        n = self._window
        # periods that divide the window and the keyframe interval, so that the grid of
        # delta frames runs on from one keyframe to the next
        span = math.gcd(n, self.keyframe_interval) if self.keyframe_interval else n
        self._patterns = _patterns(span)
        self._pattern = self._patterns[0]  # (period p, m delta frames spread over it)
        self._slots = frozenset({0})
        # Two accounts, both in bits. The keyframe reserve fills by key_target / interval per
        # frame and pays each keyframe; the delta account gets the rest of the budget and pays
        # the delta frames. With the interval a divisor of the window every window holds the
        # same number of keyframes and the same reserve share, so keyframes do not move a
        # window's rate; what moves it is the delta account's swing (about one delta frame).
        self._reserve = 0.0
        self._account = 0.0
        self._key_cost: float | None = None  # bits of the last keyframe
        self._log_c = 0.0
        self.frame_types: list[str] = []  # "K", "P" or "S" (skipped) per encoded frame
        self.bits: list[int] = []  # bits sent per frame, header included
        self.quantizers: list[int] = []  # quantizer per frame (-1 for a skipped frame)

    # -- control --------------------------------------------------------------------------
    def set_kbps(self, kbps: float) -> None:
        """Change the target rate (1 kbps = 1024 bit/s); takes effect from the next frame."""
        kbps = float(kbps)
        if not (0.05 <= kbps <= 10000):
            raise ValueError(f"kbps must be within 0.05..10000, got {kbps}")
        self.kbps = kbps
        # The coded size follows the rate: the largest halving of the low-res size with at
        # least SIDE_BITS bits per frame per pixel of its side. A delta frame's size, mostly
        # headers and motion at these rates, grows slowly with the frame (1.4x for 4x the
        # pixels), so at low rates a smaller frame is coded more often, in smaller packets
        # that keep every 10 s window on target; the decoder upsamples it back. At 10 fps,
        # 512x512 -> 128x128: 0.5 kbps codes 32x32, 1 kbps 64x64, 2 kbps and up 128x128.
        per_frame = kbps * 1024.0 / self.fps
        shift = 0
        while self.resize and shift < MAX_SHIFT and per_frame < SIDE_BITS * (self.low_width >> shift) and \
                _coded_ok(self.low_width, self.low_height, shift + 1):
            shift += 1
        self._shift_next = shift

    @property
    def coded_shift(self) -> int:
        """How many times the low-res size is halved for coding (0: coded as is)."""
        return self._shift_next

    def force_keyframe(self) -> None:
        """Request a keyframe (e.g. after the receiver reported loss): the next frame is one."""
        self._key_pending = True

    @property
    def tier(self) -> int:
        """The quantizer (CRF or QP) of the last delta frame."""
        return self._q

    def _budget(self) -> float:
        return self.kbps * 1024.0 / self.fps

    def key_target(self) -> float:
        """Bits a keyframe may take: KEY_SHARE of the bits between two keyframes (at most one
        window). When the interval does not divide the window, windows hold a varying number
        of keyframes, so then a keyframe is kept small enough to move a window by at most
        KEY_SPREAD."""
        n, interval = self._window, self.keyframe_interval
        span = min(interval, n) if interval else n
        target = KEY_SHARE * self._budget() * span
        if interval and n % interval:
            frac = (n / interval) % 1.0
            target = min(target, KEY_SPREAD * self._budget() * n / max(frac, 1.0 - frac))
        return target

    def _floor(self) -> int:
        """The coarsest quantizer a delta frame gets."""
        spec = self._spec
        return max(spec.delta_coarsest, self._delta_finest) if spec.per_frame_q else self._key_q

    @property
    def _cadence(self) -> float:
        """Frames per delta frame, on average."""
        return self._pattern[0] / self._pattern[1]

    def _choose_cadence(self) -> None:
        # the densest pattern whose delta frames fit the budget HEADROOM quantizer steps finer
        # than the coarsest, so that the quantizer can still absorb a costlier stretch; a
        # denser one than the current only with 8 % to spare (no flapping). A surplus or debt
        # in the account is spread over the next 5 s.
        base = self._budget() - self._accrual()
        per_frame = max(base + self._account / (5 * self.fps), 0.5 * base)
        q = max(self._floor() - HEADROOM, self._spec.finest, self._delta_finest) \
            if self._spec.per_frame_q else self._floor()
        current = self._cadence
        chosen = self._patterns[-1]
        for p, m in self._patterns:
            gap = p / m
            margin = 1.0 if gap >= current else 0.92
            if self._est_delta(q, gap) <= margin * gap * per_frame:
                chosen = (p, m)
                break
        p, m = self._pattern = chosen
        self._slots = frozenset(i * p // m for i in range(m))

    def _key_need(self) -> float:
        """What the next keyframe is planned to cost: the last one's cost with KEY_GROWTH to
        spare (a scene that gets costlier gets a finer keyframe step by step), at most the
        target."""
        if self._key_cost is None:
            return self.key_target()
        return min(self.key_target(), KEY_GROWTH * self._key_cost)

    def _accrual(self) -> float:
        # the reserve fills evenly up to the next keyframe's need (frames left in the
        # interval, the keyframe's own included)
        if not self.keyframe_interval:
            return 0.0
        left = max(1, self._last_key + self.keyframe_interval - self._frame_index + 1)
        return max(0.0, self._key_need() - self._reserve) / left

    def _est_delta(self, q: int, gap: int) -> float:
        """Expected bits of a delta frame at quantizer q, gap frames after its reference."""
        return 8.0 * (self._spec.fixed + self._variable(q, gap) + DELTA_OVERHEAD)

    def _variable(self, q: int, gap: int) -> float:
        c = np.exp(self._log_c + self._spec.alpha * (self._spec.delta_coarsest - q))
        return c * gap ** GAP_EXPONENT

    # -- coding ---------------------------------------------------------------------------
    def encode(self, rgb: np.ndarray) -> bytes:
        """Code one camera frame; returns its packet, ``b""`` when the frame is skipped."""
        rgb = np.asarray(rgb)
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB of shape {(self.height, self.width, 3)}, "
                             f"got {rgb.dtype} {rgb.shape}")
        k = self._frame_index
        self._frame_index += 1
        accrual = self._accrual()
        self._reserve += accrual
        self._account += self._budget() - accrual
        regular = self.keyframe_interval and k - self._last_key >= self.keyframe_interval
        resize = self._shift_next != self._shift  # a new coded size starts with a keyframe
        if self._key_pending or regular or resize or self._ctx is None:
            forced = (self._key_pending or resize) and not regular and self._ctx is not None
            return self._code_key(k, rgb, forced=forced)
        gap = k - self._last_coded
        spec = self._spec
        floor = self._floor()
        # delta frames only on a grid of period `cadence` from the last keyframe: with the
        # cadence a divisor of the window, every window holds the same number of them and the
        # bucket's sawtooth between them cancels out of every window's rate
        due = (k - self._last_key) % self._pattern[0] in self._slots
        need = SKIP_BELOW * self._est_delta(floor, gap)
        if not spec.per_frame_q:
            # without a per-frame quantizer only the timing spends the budget: a delta frame
            # whenever the account pays for one (as a plain leaky bucket)
            due, need = True, self._est_delta(floor, gap)
        if due and self._account >= need or gap >= MAX_GAP:
            # the finest quantizer that keeps to this frame's share: the budget since the last
            # delta frame plus part of what the account holds beyond it (spent over several
            # frames, so that the account swings by about one delta frame, not more)
            share = gap * (self._budget() - self._accrual())
            target = min(share + SPEND * (self._account - share), MAX_SPEND * share)
            q = floor
            if spec.per_frame_q:
                # a few steps finer than the last delta frame at most: the size model is
                # learnt near the quantizers in use and extrapolates poorly
                finest = max(spec.finest, self._delta_finest, self._q - MAX_Q_STEP)
                while q > finest and self._est_delta(q - 1, gap) <= target:
                    q -= 1
            packet = self._code_delta(k, rgb, q, gap)
            period = self._cadence * (self._budget() - self._accrual())
            if not -RECHOOSE_DEBT * period <= self._account <= RECHOOSE_SURPLUS * period \
                    or q <= floor - Q_BAND:
                # the quantizer could not hold the account, or went far from where the size
                # model is sure: the scene's cost changed
                self._choose_cadence()
            return packet
        self.frame_types.append("S")
        self.bits.append(0)
        self.quantizers.append(-1)
        return b""

    def close(self) -> None:
        """Flush and drop the codec (optional: only SVT-AV1 complains when it is not called)."""
        self._close()

    def _close(self) -> None:
        _flush(self._ctx)  # zero latency: nothing is left, but SVT-AV1 wants its EOS
        self._ctx = None

    def _encode_frame(self, ctx, low: np.ndarray, k: int) -> bytes:
        import av

        frame = av.VideoFrame.from_ndarray(low, format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = k
        packets = ctx.encode(frame)
        data = b"".join(bytes(p) for p in packets)
        if not data:
            # zero-latency configuration: this would be a codec buffering a frame
            raise RuntimeError(f"{self._spec.encoder} returned no packet for frame {k}")
        if self.codec == "av1" and data.startswith(_AV1_TD):
            data = data[len(_AV1_TD):]
        return data

    def _source(self, rgb: np.ndarray) -> np.ndarray:
        return downscale(rgb, self.scale << self._shift)

    def _qmin(self, q: int) -> int:
        # the keyframe's quantizer, unless that would keep the delta frames that follow from
        # the quantizers they have been using (a coarse forced keyframe): then a floor a little
        # under those, and libvpx may code the keyframe somewhat finer than q (the trial
        # encodes measure what it does)
        if not self._spec.per_frame_q:
            return q
        return max(self._spec.finest, min(q, self._q - KEY_QMIN_SLACK))

    def _trial_key(self, low: np.ndarray, k: int, q: int, sigma: float):
        src = cv2.GaussianBlur(low, (0, 0), sigma) if sigma else low
        ctx = _open_encoder(self._spec, self.codec, self.coded_width, self.coded_height, self.fps,
                            q, self._qmin(q))
        return ctx, self._encode_frame(ctx, src, k)

    def _key_quantizer_bounds(self) -> tuple[int, int]:
        spec = self._spec
        if spec.per_frame_q:
            return spec.finest, spec.coarsest
        # one quantizer for the keyframe and its delta frames: the finest at which every frame
        # could be coded on the delta budget, else the coarsest
        per_frame = self._budget() - self._accrual()
        q = spec.delta_coarsest
        while q > spec.finest and self._est_delta(q - 1, 1) <= per_frame:
            q -= 1
        return q, q

    def _code_key(self, k: int, rgb: np.ndarray, forced: bool) -> bytes:
        if self._shift_next != self._shift:
            self._shift = self._shift_next
            self.coded_width = self.low_width >> self._shift
            self.coded_height = self.low_height >> self._shift
            # the variable part of a delta frame at delta_coarsest, gap 1 (log domain, learned);
            # it grows with about the cube root of the pixel count (32x32 against 128x128)
            pixels = self.coded_width * self.coded_height
            self._log_c = np.log(self._spec.p_prior * (pixels / (128 * 128)) ** 0.35)
            self._q = self._spec.delta_coarsest
        low = self._source(rgb)
        spec = self._spec
        # the reserve pays; a keyframe forced before the reserve is full borrows from the delta
        # account (paid back by skipping delta frames)
        start = self._key_cost is None
        allowance = max(self._reserve, self._key_need())
        if forced:
            # an extra keyframe adds its bits to every window that holds it and the regular
            # one before it: kept small (the delta frames that follow restore detail, and the
            # grid restarts here, so the next regular keyframe is a whole interval away)
            allowance = min(allowance, FORCED_SHARE * self._budget() * self._window)
        if self.keyframe_interval and not forced:
            # a regular keyframe falls on the delta frames' grid and takes that slot's bits
            allowance = max(allowance, self._reserve + self._account)
        if start:
            # the first keyframe, too, takes a slot's bits as every later one does (so that
            # the first window holds as much as the others)
            self._choose_cadence()
            allowance = self.key_target() + self._cadence * (self._budget() - self._accrual())
        fits = lambda data: 8 * (len(data) + KEY_OVERHEAD) <= allowance  # noqa: E731
        lo, hi = self._key_quantizer_bounds()
        # the finest quantizer that fits (bisection over trial encodes: cheap at this size);
        # at the coarsest, low-pass the keyframe's input as much as needed (e.g. sigma 1.2 px:
        # -10 % bits); the delta frames that follow restore detail a little at a time
        best = None
        guess = int(np.clip(self._key_q, lo, hi))
        coarsest = hi
        while lo <= hi:
            q, guess = (guess, None) if guess is not None else ((lo + hi) // 2, None)
            ctx, data = self._trial_key(low, k, q, 0.0)
            if fits(data):
                _flush(best and best[2])
                best, hi = (q, 0.0, ctx, data), q - 1
            else:
                _flush(ctx)
                lo = q + 1
        if best is None:
            for sigma in KEY_BLUR_SIGMAS[1:]:
                ctx, data = self._trial_key(low, k, coarsest, sigma)
                _flush(best and best[2])
                best = (coarsest, sigma, ctx, data)
                if fits(data):
                    break
        q, sigma, ctx, payload = best
        self._close()
        self._ctx = ctx
        # the next delta frame starts near the last one's quantizer, but not far finer than a
        # coarse keyframe's: restoring all the detail such a keyframe left out at once would
        # cost several frames' bits
        self._key_q = q
        self._q = max(self._q, q)
        self._delta_finest = self._qmin(q)
        self.key_blur = sigma
        head = _KEY_HDR.pack(_MAGIC | VERSION << 2 | TYPE_KEY, k & 0xFFFF,
                             spec.codec_id | self._shift << 4, self.low_width, self.low_height)
        packet = head + payload
        packet += bytes([crc8(packet)])
        cost = 8 * len(packet)
        if start:
            # a CBR buffer's initial fullness: the first keyframe counts as paid before the
            # stream (by a reserve filled over the interval before it), whatever it cost
            self._reserve = 0.0
            paid = min(cost, self.key_target())
        else:
            # what the keyframe leaves in the reserve lowers the reserve's share of the next
            # interval's budget: the delta frames get it, spread evenly
            paid = min(cost, self._reserve)
            self._reserve -= paid
            self._account -= cost - paid
        if not forced:
            self._key_cost = paid  # the reserve's part: the slot's bits come from the account
        self._last_coded = k
        if not forced or start:
            # the grid of keyframes and delta frames runs on through a forced keyframe:
            # restarting it would leave a window with no regular keyframe in it
            self._last_key = k
        self._key_pending = False
        self._choose_cadence()
        self.frame_types.append("K")
        self.bits.append(cost)
        self.quantizers.append(q)
        return packet

    def _code_delta(self, k: int, rgb: np.ndarray, q: int, gap: int) -> bytes:
        if self._spec.per_frame_q:
            self._ctx.qmax = q
        payload = self._encode_frame(self._ctx, self._source(rgb), k)
        head = _DELTA_HDR.pack(_MAGIC | VERSION << 2 | TYPE_DELTA, k & 0xFF, gap)
        packet = head + payload
        packet += bytes([crc8(packet)])
        # learn the scene's delta cost (log domain: one spike must not swamp the estimate)
        variable = max(len(payload) - self._spec.fixed, 0.1 * self._spec.fixed)
        self._log_c += LEARN_RATE * np.log(variable / self._variable(q, gap))
        self._q = q
        self._account -= 8 * len(packet)
        self._last_coded = k
        self.frame_types.append("P")
        self.bits.append(8 * len(packet))
        self.quantizers.append(q)
        return packet


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
        if shift > MAX_SHIFT or not _coded_ok(w, h, shift):
            raise BitstreamError(f"invalid coded size: {w}x{h} halved {shift} times")
        return {"key": True, "index": index, "codec": _BY_ID[codec_id], "width": w, "height": h,
                "shift": shift, "coded_width": w >> shift, "coded_height": h >> shift,
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
        self._codec, self._size = info["codec"], (info["coded_width"], info["coded_height"])
        self._out_size = (info["width"], info["height"])
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
        if self._size != self._out_size:
            # coded below the low-res size (low rates): shown at the low-res size
            self._frame = upsample(self._frame, *self._out_size)
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
