"""The low-res stream's rate control: plain arithmetic on bit counts, no codec in it.

At these rates every codec sits near its coarsest quantizer and its own rate control cannot go
lower, so an outer loop holds the rate of every sliding window (docs/lowres.md, "Rate
control"): keyframes on a fixed grid paid by a reserve, delta frames on a pattern that divides
the window, a quantizer per delta frame from a learnt size model, and a coded size that follows
the rate. ``RateControl`` decides per frame (``next_frame``) and learns from what the codec
produced (``key_coded``, ``delta_coded``); ``LowResEncoder`` runs the codec between the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from semcomm_ros.codec.lowres.codecs import GAP_EXPONENT, CodecSpec
from semcomm_ros.codec.lowres.packet import DELTA_OVERHEAD, KEY_OVERHEAD, MAX_GAP, MAX_SHIFT, coded_ok

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
MAX_PATTERN = 20  # delta frames per pattern period at most
SIDE_BITS = 1.6  # bits per frame per pixel of the coded side (see RateControl.set_kbps)


def patterns(span: int) -> list[tuple[int, int]]:
    """Delta-frame patterns (p, m): m frames evenly spread over p, p a divisor of ``span``
    (the window and keyframe interval), so the pattern repeats a whole number of times in a
    window. Densest first; each density once, with its shortest period."""
    found: dict[Fraction, tuple[int, int]] = {}
    for p in (d for d in range(1, min(span, MAX_GAP) + 1) if span % d == 0):
        for m in range(1, min(p, MAX_PATTERN) + 1):
            found.setdefault(Fraction(m, p), (p, m))
    return [found[f] for f in sorted(found, reverse=True)]


@dataclass(frozen=True)
class Keyframe:
    index: int
    forced: bool  # requested (or a new coded size) off the regular grid


@dataclass(frozen=True)
class Delta:
    index: int
    q: int  # the quantizer to code it at
    gap: int  # frames since the last coded frame


@dataclass(frozen=True)
class Skip:
    index: int


class RateControl:
    """Per-frame decisions of the low-res encoder for one codec (``spec``).

    ``low_width`` x ``low_height`` is the low-res size; ``keyframe_interval`` in frames (0: only
    at the start and on request); ``window_s`` the rate window held; ``resize=False`` always
    codes the low-res size. A frame is: ``next_frame(reference)`` -> ``Keyframe`` (then
    ``key_plan``, trial encodes checked with ``key_fits``, ``key_coded``), ``Delta`` (code it at
    its ``q``, then ``delta_coded``) or ``Skip`` (send nothing).
    """

    def __init__(self, spec: CodecSpec, low_width: int, low_height: int, fps: int, kbps: float,
                 keyframe_interval: int, window_s: float, resize: bool = True):
        self.spec = spec
        self.low_width, self.low_height = low_width, low_height
        self.fps = int(fps)
        self.keyframe_interval = int(keyframe_interval)
        self.window = max(1, int(round(float(window_s) * self.fps)))  # frames
        self.resize = bool(resize)
        self.shift: int | None = None  # the coded size is the low-res size halved this many times
        self.coded_width, self.coded_height = low_width, low_height
        self.kbps = 0.0
        self.set_kbps(kbps)
        self.q = spec.delta_coarsest  # quantizer of the last delta frame
        self.key_q = spec.coarsest
        self.delta_finest = spec.coarsest  # the open encoder's qmin
        self.frame_index = 0
        self.last_key = 0
        self.last_coded = -1
        self.key_pending = False  # a requested keyframe
        n = self.window
        # periods that divide the window and the keyframe interval, so that the grid of
        # delta frames runs on from one keyframe to the next
        span = math.gcd(n, self.keyframe_interval) if self.keyframe_interval else n
        self.patterns = patterns(span)
        self.pattern = self.patterns[0]  # (period p, m delta frames spread over it)
        self.slots = frozenset({0})
        # Two accounts, both in bits. The keyframe reserve fills by key_target / interval per
        # frame and pays each keyframe; the delta account gets the rest of the budget and pays
        # the delta frames. With the interval a divisor of the window every window holds the
        # same number of keyframes and the same reserve share, so keyframes do not move a
        # window's rate; what moves it is the delta account's swing (about one delta frame).
        self.reserve = 0.0
        self.account = 0.0
        self.key_cost: float | None = None  # bits of the last keyframe
        self.log_c = 0.0
        self._allowance = 0.0  # bits the keyframe being coded may take

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
                coded_ok(self.low_width, self.low_height, shift + 1):
            shift += 1
        self.shift_next = shift

    def force_keyframe(self) -> None:
        self.key_pending = True

    def budget(self) -> float:
        """Bits per frame."""
        return self.kbps * 1024.0 / self.fps

    def key_target(self) -> float:
        """Bits a keyframe may take: KEY_SHARE of the bits between two keyframes (at most one
        window). When the interval does not divide the window, windows hold a varying number
        of keyframes, so then a keyframe is kept small enough to move a window by at most
        KEY_SPREAD."""
        n, interval = self.window, self.keyframe_interval
        span = min(interval, n) if interval else n
        target = KEY_SHARE * self.budget() * span
        if interval and n % interval:
            frac = (n / interval) % 1.0
            target = min(target, KEY_SPREAD * self.budget() * n / max(frac, 1.0 - frac))
        return target

    def floor(self) -> int:
        """The coarsest quantizer a delta frame gets."""
        spec = self.spec
        return max(spec.delta_coarsest, self.delta_finest) if spec.per_frame_q else self.key_q

    @property
    def cadence(self) -> float:
        """Frames per delta frame, on average."""
        return self.pattern[0] / self.pattern[1]

    def choose_cadence(self) -> None:
        # the densest pattern whose delta frames fit the budget HEADROOM quantizer steps finer
        # than the coarsest, so that the quantizer can still absorb a costlier stretch; a
        # denser one than the current only with 8 % to spare (no flapping). A surplus or debt
        # in the account is spread over the next 5 s.
        base = self.budget() - self.accrual()
        per_frame = max(base + self.account / (5 * self.fps), 0.5 * base)
        q = max(self.floor() - HEADROOM, self.spec.finest, self.delta_finest) \
            if self.spec.per_frame_q else self.floor()
        current = self.cadence
        chosen = self.patterns[-1]
        for p, m in self.patterns:
            gap = p / m
            margin = 1.0 if gap >= current else 0.92
            if self.est_delta(q, gap) <= margin * gap * per_frame:
                chosen = (p, m)
                break
        p, m = self.pattern = chosen
        self.slots = frozenset(i * p // m for i in range(m))

    def key_need(self) -> float:
        """What the next keyframe is planned to cost: the last one's cost with KEY_GROWTH to
        spare (a scene that gets costlier gets a finer keyframe step by step), at most the
        target."""
        if self.key_cost is None:
            return self.key_target()
        return min(self.key_target(), KEY_GROWTH * self.key_cost)

    def accrual(self) -> float:
        # the reserve fills evenly up to the next keyframe's need (frames left in the
        # interval, the keyframe's own included)
        if not self.keyframe_interval:
            return 0.0
        left = max(1, self.last_key + self.keyframe_interval - self.frame_index + 1)
        return max(0.0, self.key_need() - self.reserve) / left

    def est_delta(self, q: int, gap: int) -> float:
        """Expected bits of a delta frame at quantizer q, gap frames after its reference."""
        return 8.0 * (self.spec.fixed + self.variable(q, gap) + DELTA_OVERHEAD)

    def variable(self, q: int, gap: int) -> float:
        """Expected bytes of a delta frame's payload beyond the fixed headers."""
        c = np.exp(self.log_c + self.spec.alpha * (self.spec.delta_coarsest - q))
        return c * gap ** GAP_EXPONENT

    def qmin(self, q: int) -> int:
        """The open encoder's finest quantizer for a keyframe at q: the keyframe's quantizer,
        unless that would keep the delta frames that follow from the quantizers they have been
        using (a coarse forced keyframe): then a floor a little under those, and libvpx may code
        the keyframe somewhat finer than q (the trial encodes measure what it does)."""
        if not self.spec.per_frame_q:
            return q
        return max(self.spec.finest, min(q, self.q - KEY_QMIN_SLACK))

    # -- per frame ------------------------------------------------------------------------
    def next_frame(self, reference: bool) -> Keyframe | Delta | Skip:
        """What to do with the next frame; ``reference``: the codec holds a reference frame
        (False before the first keyframe and after the encoder was closed)."""
        k = self.frame_index
        self.frame_index += 1
        accrual = self.accrual()
        self.reserve += accrual
        self.account += self.budget() - accrual
        regular = self.keyframe_interval and k - self.last_key >= self.keyframe_interval
        resize = self.shift_next != self.shift  # a new coded size starts with a keyframe
        if self.key_pending or regular or resize or not reference:
            forced = (self.key_pending or resize) and not regular and reference
            return Keyframe(k, bool(forced))
        gap = k - self.last_coded
        spec = self.spec
        floor = self.floor()
        # delta frames only on a grid of period `cadence` from the last keyframe: with the
        # cadence a divisor of the window, every window holds the same number of them and the
        # bucket's sawtooth between them cancels out of every window's rate
        due = (k - self.last_key) % self.pattern[0] in self.slots
        need = SKIP_BELOW * self.est_delta(floor, gap)
        if not spec.per_frame_q:
            # without a per-frame quantizer only the timing spends the budget: a delta frame
            # whenever the account pays for one (as a plain leaky bucket)
            due, need = True, self.est_delta(floor, gap)
        if due and self.account >= need or gap >= MAX_GAP:
            # the finest quantizer that keeps to this frame's share: the budget since the last
            # delta frame plus part of what the account holds beyond it (spent over several
            # frames, so that the account swings by about one delta frame, not more)
            share = gap * (self.budget() - self.accrual())
            target = min(share + SPEND * (self.account - share), MAX_SPEND * share)
            q = floor
            if spec.per_frame_q:
                # a few steps finer than the last delta frame at most: the size model is
                # learnt near the quantizers in use and extrapolates poorly
                finest = max(spec.finest, self.delta_finest, self.q - MAX_Q_STEP)
                while q > finest and self.est_delta(q - 1, gap) <= target:
                    q -= 1
            return Delta(k, q, gap)
        return Skip(k)

    def key_plan(self, forced: bool) -> tuple[int, int, int]:
        """Start a keyframe: adopt the coded size the rate asks for and fix the bits it may
        take (``key_fits``). Returns the quantizer range to search (finest, coarsest) and the
        first quantizer to try."""
        if self.shift_next != self.shift:
            self.shift = self.shift_next
            self.coded_width = self.low_width >> self.shift
            self.coded_height = self.low_height >> self.shift
            # the variable part of a delta frame at delta_coarsest, gap 1 (log domain, learned);
            # it grows with about the cube root of the pixel count (32x32 against 128x128)
            pixels = self.coded_width * self.coded_height
            self.log_c = np.log(self.spec.p_prior * (pixels / (128 * 128)) ** 0.35)
            self.q = self.spec.delta_coarsest
        # the reserve pays; a keyframe forced before the reserve is full borrows from the delta
        # account (paid back by skipping delta frames)
        allowance = max(self.reserve, self.key_need())
        if forced:
            # an extra keyframe adds its bits to every window that holds it and the regular
            # one before it: kept small (the delta frames that follow restore detail, and the
            # grid restarts here, so the next regular keyframe is a whole interval away)
            allowance = min(allowance, FORCED_SHARE * self.budget() * self.window)
        if self.keyframe_interval and not forced:
            # a regular keyframe falls on the delta frames' grid and takes that slot's bits
            allowance = max(allowance, self.reserve + self.account)
        if self.key_cost is None:
            # the first keyframe, too, takes a slot's bits as every later one does (so that
            # the first window holds as much as the others)
            self.choose_cadence()
            allowance = self.key_target() + self.cadence * (self.budget() - self.accrual())
        self._allowance = allowance
        lo, hi = self._key_quantizer_bounds()
        return lo, hi, int(np.clip(self.key_q, lo, hi))

    def key_fits(self, payload_bytes: int) -> bool:
        """Whether a keyframe with this payload keeps to what ``key_plan`` allowed."""
        return 8 * (payload_bytes + KEY_OVERHEAD) <= self._allowance

    def _key_quantizer_bounds(self) -> tuple[int, int]:
        spec = self.spec
        if spec.per_frame_q:
            return spec.finest, spec.coarsest
        # one quantizer for the keyframe and its delta frames: the finest at which every frame
        # could be coded on the delta budget, else the coarsest
        per_frame = self.budget() - self.accrual()
        q = spec.delta_coarsest
        while q > spec.finest and self.est_delta(q - 1, 1) <= per_frame:
            q -= 1
        return q, q

    def key_coded(self, k: int, q: int, bits: int, forced: bool) -> None:
        """Book the keyframe of frame k, coded at q in ``bits`` bits (its header included)."""
        # the next delta frame starts near the last one's quantizer, but not far finer than a
        # coarse keyframe's: restoring all the detail such a keyframe left out at once would
        # cost several frames' bits
        self.key_q = q
        self.q = max(self.q, q)
        self.delta_finest = self.qmin(q)
        start = self.key_cost is None
        if start:
            # a CBR buffer's initial fullness: the first keyframe counts as paid before the
            # stream (by a reserve filled over the interval before it), whatever it cost
            self.reserve = 0.0
            paid = min(bits, self.key_target())
        else:
            # what the keyframe leaves in the reserve lowers the reserve's share of the next
            # interval's budget: the delta frames get it, spread evenly
            paid = min(bits, self.reserve)
            self.reserve -= paid
            self.account -= bits - paid
        if not forced:
            self.key_cost = paid  # the reserve's part: the slot's bits come from the account
        self.last_coded = k
        if not forced or start:
            # the grid of keyframes and delta frames runs on through a forced keyframe:
            # restarting it would leave a window with no regular keyframe in it
            self.last_key = k
        self.key_pending = False
        self.choose_cadence()

    def delta_coded(self, frame: Delta, payload_bytes: int, bits: int) -> None:
        """Book a delta frame coded as planned: ``payload_bytes`` from the codec, ``bits`` sent."""
        q, gap = frame.q, frame.gap
        # learn the scene's delta cost (log domain: one spike must not swamp the estimate)
        variable = max(payload_bytes - self.spec.fixed, 0.1 * self.spec.fixed)
        self.log_c += LEARN_RATE * np.log(variable / self.variable(q, gap))
        floor = self.floor()
        self.q = q
        self.account -= bits
        self.last_coded = frame.index
        period = self.cadence * (self.budget() - self.accrual())
        if not -RECHOOSE_DEBT * period <= self.account <= RECHOOSE_SURPLUS * period \
                or q <= floor - Q_BAND:
            # the quantizer could not hold the account, or went far from where the size
            # model is sure: the scene's cost changed
            self.choose_cadence()
