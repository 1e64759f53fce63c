"""``LowResEncoder``: downscale, a real video codec, and the rate control around it."""

from __future__ import annotations

import cv2
import numpy as np

from semcomm_ros.codec.lowres import codecs
from semcomm_ros.codec.lowres.packet import MAX_SIZE, pack_delta, pack_key
from semcomm_ros.codec.lowres.rate_control import Delta, Keyframe, RateControl
from semcomm_ros.codec.packet import frame_bits

KEY_BLUR_SIGMAS = (0.0, 0.8, 1.2, 1.8, 2.5, 3.5, 5.0, 8.0)


def downscale(rgb: np.ndarray, scale: int) -> np.ndarray:
    """Area-average downscale by an integer factor (what the robot sends)."""
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (w // scale, h // scale), interpolation=cv2.INTER_AREA)


class LowResEncoder:
    """Downscale + real video codec + bit-bucket rate control; one packet per frame.

    ``width``/``height`` are the camera frame's size; the coded size is ``width // scale`` x
    ``height // scale`` (both must be even and >= 16). ``keyframe_interval`` in frames, 0 for
    keyframes only at the start and on ``force_keyframe()``. ``window_s`` is the rate window
    the controller holds (10 s in the issue); keyframes are sized against it. ``resize=False``
    always codes the low-res size (otherwise low rates code it halved, see ``set_kbps``).
    Zero latency: frame k's packet (``b""`` for a skipped frame) is returned by the ``encode``
    call of frame k and decodes alone on arrival.
    """

    def __init__(self, width: int, height: int, fps: int = 10, scale: int = 4, kbps: float = 1.0,
                 codec: str = "vp9", keyframe_interval: int = 100, window_s: float = 10.0,
                 resize: bool = True):
        if codec not in codecs.CODECS:
            raise ValueError(f"codec must be one of {sorted(codecs.CODECS)}, got {codec!r}")
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
        self.resize = bool(resize)
        self.rate = RateControl(codecs.CODECS[codec], lw, lh, self.fps, kbps, self.keyframe_interval,
                                self.window_s, self.resize)
        self.key_blur = 0.0  # the low-pass sigma (px) of the last keyframe's input
        self._ctx = None
        self.frame_types: list[str] = []  # "K", "P" or "S" (skipped) per encoded frame
        self.bits: list[int] = []  # bits sent per frame, header included
        self.quantizers: list[int] = []  # quantizer per frame (-1 for a skipped frame)

    # -- control --------------------------------------------------------------------------
    def set_kbps(self, kbps: float) -> None:
        """Change the target rate (1 kbps = 1024 bit/s); takes effect from the next frame."""
        self.rate.set_kbps(kbps)

    @property
    def kbps(self) -> float:
        return self.rate.kbps

    @property
    def coded_shift(self) -> int:
        """How many times the low-res size is halved for coding (0: coded as is)."""
        return self.rate.shift_next

    @property
    def coded_width(self) -> int:
        return self.rate.coded_width

    @property
    def coded_height(self) -> int:
        return self.rate.coded_height

    def force_keyframe(self) -> None:
        """Request a keyframe (e.g. after the receiver reported loss): the next frame is one,
        of at most 5 % of a window's bits (repaid by skipping delta frames)."""
        self.rate.force_keyframe()

    @property
    def tier(self) -> int:
        """The quantizer (CRF or QP) of the last delta frame."""
        return self.rate.q

    def key_target(self) -> float:
        """Bits a keyframe may take (``RateControl.key_target``)."""
        return self.rate.key_target()

    # -- coding ---------------------------------------------------------------------------
    def encode(self, rgb: np.ndarray) -> bytes:
        """Code one camera frame; returns its packet, ``b""`` when the frame is skipped."""
        rgb = np.asarray(rgb)
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB of shape {(self.height, self.width, 3)}, "
                             f"got {rgb.dtype} {rgb.shape}")
        frame = self.rate.next_frame(reference=self._ctx is not None)
        if isinstance(frame, Keyframe):
            return self._code_key(frame, rgb)
        if isinstance(frame, Delta):
            return self._code_delta(frame, rgb)
        self._log("S", 0, -1)
        return b""

    def close(self) -> None:
        """Flush and drop the codec (optional: only SVT-AV1 complains when it is not called)."""
        codecs.flush(self._ctx)  # zero latency: nothing is left, but SVT-AV1 wants its EOS
        self._ctx = None

    def _log(self, kind: str, bits: int, q: int) -> None:
        self.frame_types.append(kind)
        self.bits.append(bits)
        self.quantizers.append(q)

    def _source(self, rgb: np.ndarray) -> np.ndarray:
        return downscale(rgb, self.scale << self.rate.shift)

    def _trial_key(self, low: np.ndarray, k: int, q: int, sigma: float):
        src = cv2.GaussianBlur(low, (0, 0), sigma) if sigma else low
        rate = self.rate
        ctx = codecs.open_encoder(self.codec, rate.coded_width, rate.coded_height, self.fps, q, rate.qmin(q))
        return ctx, codecs.encode_frame(self.codec, ctx, src, k)

    def _code_key(self, frame: Keyframe, rgb: np.ndarray) -> bytes:
        rate, k = self.rate, frame.index
        lo, hi, guess = rate.key_plan(frame.forced)
        low = self._source(rgb)
        # the finest quantizer that fits (bisection over trial encodes: cheap at this size);
        # at the coarsest, low-pass the keyframe's input as much as needed (e.g. sigma 1.2 px:
        # -10 % bits); the delta frames that follow restore detail a little at a time
        best = None
        coarsest = hi
        while lo <= hi:
            q, guess = (guess, None) if guess is not None else ((lo + hi) // 2, None)
            ctx, data = self._trial_key(low, k, q, 0.0)
            if rate.key_fits(len(data)):
                codecs.flush(best and best[2])
                best, hi = (q, 0.0, ctx, data), q - 1
            else:
                codecs.flush(ctx)
                lo = q + 1
        if best is None:
            for sigma in KEY_BLUR_SIGMAS[1:]:
                ctx, data = self._trial_key(low, k, coarsest, sigma)
                codecs.flush(best and best[2])
                best = (coarsest, sigma, ctx, data)
                if rate.key_fits(len(data)):
                    break
        q, sigma, ctx, payload = best
        self.close()
        self._ctx = ctx
        self.key_blur = sigma
        packet = pack_key(k, self.codec, rate.shift, self.low_width, self.low_height, payload)
        bits = frame_bits(packet)
        rate.key_coded(k, q, bits, frame.forced)
        self._log("K", bits, q)
        return packet

    def _code_delta(self, frame: Delta, rgb: np.ndarray) -> bytes:
        if self.rate.spec.per_frame_q:
            self._ctx.qmax = frame.q
        payload = codecs.encode_frame(self.codec, self._ctx, self._source(rgb), frame.index)
        packet = pack_delta(frame.index, frame.gap, payload)
        bits = frame_bits(packet)
        self.rate.delta_coded(frame, len(payload), bits)
        self._log("P", bits, frame.q)
        return packet
