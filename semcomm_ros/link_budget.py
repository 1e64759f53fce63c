"""The robot's link budget: closed-loop rate control for both streams together, congestion
control, and sliding-window bit counts. Plain Python, run by ``sender.Sender`` (which the encoder
node wraps); ``codec.lowres.rate_control`` is the low-res encoder's own, per-frame rate control.

The paper sweeps xi by hand to trace its rate-distortion curve; a robot on a real link has to
hold a budget instead. ``RateController`` holds ``target_kbps`` for semantic + low-res bits
together: the low-res stream gets a fixed share of the budget (its own bit bucket holds it), the
semantic stream gets what the low-res stream leaves, and xi (contour simplification tolerance,
the paper's rate knob) moves multiplicatively with the ratio of measured to allowed semantic
rate. When xi is pinned at its maximum and the semantic stream still overspends, the low-res
share shrinks (down to its floor); when bits are left over it grows back to its base share (not
beyond: the low-res stream answers a new rate over its 10 s window, and a share chasing the
semantic stream's slack overshoots the budget).
``RateController.pinned`` says when a target cannot be met and what is pinned.

``CongestionControl`` lowers the budget below the target when the link cannot carry it, from the
receiver's feedback: a standing queue on the link shows as latency (capture -> decoded) above the
lowest latency seen recently, with less delivered than sent; the budget then drops to a little
under the delivered rate, and climbs back to the target once the queue is gone. Random loss does
not raise latency, and a busy CPU raises latency without the delivered rate falling behind what
was sent: neither lowers the budget. Rates are in kbit/s, 1 kbit = 1000 bits.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


class SlidingWindow:
    """Bits per frame over the last ``window_s`` seconds of stream time (frames / fps)."""

    def __init__(self, window_s: float, fps: float):
        self.window_s, self.fps = float(window_s), float(fps)
        self._bits: deque[int] = deque()
        self._sum = 0

    @property
    def max_frames(self) -> int:
        return max(1, int(round(self.window_s * self.fps)))

    def add(self, bits: int) -> None:
        self._bits.append(int(bits))
        self._sum += int(bits)
        while len(self._bits) > self.max_frames:
            self._sum -= self._bits.popleft()

    def resize(self, window_s: float | None = None, fps: float | None = None) -> None:
        if window_s is not None:
            self.window_s = float(window_s)
        if fps is not None:
            self.fps = float(fps)
        while len(self._bits) > self.max_frames:
            self._sum -= self._bits.popleft()

    @property
    def frames(self) -> int:
        return len(self._bits)

    @property
    def kbps(self) -> float:
        if not self._bits:
            return 0.0
        return self._sum * self.fps / len(self._bits) / 1000.0

    def kbps_planned(self, plan_kbps: float) -> float:
        """The rate over the whole window, its frames not yet seen counted at ``plan_kbps``.

        A controller reading ``kbps`` at a stream's start sees its first I-frame alone as ten
        times a frame's share (one frame of a window): it drives xi to its maximum within a
        second and starves the low-res stream, and a 4 s clip then shows coarse contours
        throughout. Counted over the whole window, the first I-frame weighs what it costs."""
        missing = self.max_frames - len(self._bits)
        if missing <= 0:
            return self.kbps
        return (self._sum + missing * plan_kbps * 1000.0 / self.fps) * self.fps / self.max_frames / 1000.0


@dataclass
class RateDecision:
    xi: float
    lowres_kbps: float


class RateController:
    """Per-frame update: ``update(semantic_kbps, lowres_kbps) -> RateDecision``.

    ``semantic_kbps`` / ``lowres_kbps`` are measured over a short window (a few I-frame periods)
    so that the I/P pattern does not make the loop oscillate.
    """

    def __init__(self, target_kbps: float, xi: float, lowres_share: float = 0.4,
                 xi_min: float = 0.5, xi_max: float = 40.0, lowres_min_kbps: float = 0.1,
                 gain: float = 0.15):
        self.target_kbps = float(target_kbps)
        self.xi = float(xi)
        self.lowres_share = float(lowres_share)
        self.base_share = float(lowres_share)
        self.xi_min, self.xi_max = float(xi_min), float(xi_max)
        self.lowres_min_kbps = float(lowres_min_kbps)
        self.gain = float(gain)

    @property
    def lowres_kbps(self) -> float:
        return max(self.lowres_min_kbps, self.target_kbps * self.lowres_share)

    def pinned(self, semantic_kbps: float, lowres_kbps: float) -> str | None:
        """Why the measured rate stays above the target, or None while the target can be met."""
        total = semantic_kbps + lowres_kbps
        if (self.target_kbps <= 0 or total <= 1.05 * self.target_kbps or self.xi < self.xi_max
                or self.lowres_kbps > max(self.lowres_min_kbps, 0.05 * self.target_kbps) * 1.001):
            return None
        return (f"target {self.target_kbps:.2f} kbps cannot be met: sending {total:.2f} kbps with xi pinned at "
                f"its maximum {self.xi_max:g} px and the low-res stream at its floor "
                f"{self.lowres_kbps:.2f} kbps")

    def update(self, semantic_kbps: float, lowres_kbps: float) -> RateDecision:
        if self.target_kbps <= 0:
            return RateDecision(self.xi, self.lowres_kbps)
        # the semantic stream may use what the low-res stream does not (measured, not planned)
        allowed = max(self.target_kbps - max(lowres_kbps, 0.0), 0.2 * self.target_kbps)
        ratio = max(semantic_kbps, 1e-3) / allowed
        ratio = min(max(ratio, 0.5), 2.0)
        self.xi = min(max(self.xi * ratio ** self.gain, self.xi_min), self.xi_max)
        if self.xi >= self.xi_max and ratio > 1.05:
            self.lowres_share = max(0.05, self.lowres_share * 0.95)
        elif ratio < 0.9 and self.lowres_share < self.base_share:
            self.lowres_share = min(self.base_share, self.lowres_share * 1.05)
        return RateDecision(self.xi, self.lowres_kbps)


class CongestionControl:
    """The budget the link can carry: ``budget(t)`` <= ``target_kbps``, from receiver feedback.

    ``on_latency(t, latency_s)`` takes each decoded frame's capture -> decoded latency;
    ``on_delivered(t, kbps, sent_kbps)`` the rate the receiver got and what was sent over the
    same window (optional; without it latency alone decides and a cut is by ``backoff`` alone).
    Queueing delay = the lowest latency of the last ``level_s`` minus the lowest of the last
    ``floor_s`` (the path's own delay, clock offsets included). Reordered and burst-delayed frames
    do not count: a keyframe burst at 2 kbps drains in 1-1.5 s, and requests under 10 % loss bring
    one every second or two, so a 1 s level could sit inside bursts for long stretches, cut the
    budget without a standing queue and keep it cut. Above ``high_s``, with less than
    ``delivered_share`` of what was sent delivered (10 % random loss leaves 0.9), the budget falls
    to ``backoff`` x the delivered rate, at most once per ``hold_s`` so that the last cut can act;
    below ``low_s``, or without feedback for ``stale_s``, it climbs back to the target in
    ``recover_s``.
    """

    def __init__(self, target_kbps: float, high_s: float = 0.6, low_s: float = 0.15, level_s: float = 3.0,
                 floor_s: float = 60.0, hold_s: float = 2.5, backoff: float = 0.85, recover_s: float = 30.0,
                 stale_s: float = 5.0, min_share: float = 0.2, delivered_share: float = 0.85):
        self.target_kbps = float(target_kbps)
        self.high_s, self.low_s, self.level_s, self.floor_s = high_s, low_s, level_s, floor_s
        self.hold_s, self.backoff, self.recover_s, self.stale_s = hold_s, backoff, recover_s, stale_s
        self.min_share, self.delivered_share = min_share, delivered_share
        self.cap = self.target_kbps
        self.delivered_kbps: float | None = None
        self.sent_kbps: float | None = None
        self.queue_s = 0.0
        self._samples: deque[tuple[float, float]] = deque()  # (t, latency)
        self._last_cut = -math.inf
        self._last_feedback = -math.inf
        self.cuts = 0
        self._t = None

    def set_target(self, target_kbps: float) -> None:
        self.target_kbps = float(target_kbps)
        self.cap = min(self.cap, self.target_kbps) if self.congested else self.target_kbps

    @property
    def congested(self) -> bool:
        return self.cap < self.target_kbps

    def on_delivered(self, t: float, kbps: float, sent_kbps: float | None = None) -> None:
        self.delivered_kbps = float(kbps)
        self.sent_kbps = None if sent_kbps is None else float(sent_kbps)

    @property
    def falling_behind(self) -> bool:
        """The link delivers clearly less than is sent (unknown: assumed)."""
        if self.delivered_kbps is None or not self.sent_kbps:
            return True
        return self.delivered_kbps < self.delivered_share * self.sent_kbps

    def on_latency(self, t: float, latency_s: float) -> None:
        if not math.isfinite(latency_s):
            return
        self._last_feedback = t
        self._samples.append((t, float(latency_s)))
        while self._samples and self._samples[0][0] < t - self.floor_s:
            self._samples.popleft()
        floor = min(v for _, v in self._samples)
        level = min(v for u, v in self._samples if u >= t - self.level_s)
        self.queue_s = level - floor
        settled = t - self._samples[0][0] >= 3 * self.level_s  # a floor from one start-up frame is no floor
        if settled and self.queue_s > self.high_s and self.falling_behind and t - self._last_cut >= self.hold_s:
            base = self.cap if self.delivered_kbps is None else min(self.cap, self.delivered_kbps)
            self.cap = max(self.min_share * self.target_kbps, self.backoff * base)
            self._last_cut = t
            self.cuts += 1

    def budget(self, t: float) -> float:
        dt = 0.0 if self._t is None else max(0.0, t - self._t)
        self._t = t
        if self.congested and (self.queue_s < self.low_s or t - self._last_feedback > self.stale_s):
            self.cap = min(self.target_kbps, self.cap + self.target_kbps * dt / self.recover_s)
        return self.cap
