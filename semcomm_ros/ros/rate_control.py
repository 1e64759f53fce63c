"""Closed-loop rate control for the whole link (both streams), and sliding-window bit counts.

The paper sweeps xi by hand to trace its rate-distortion curve; a robot on a real link has to
hold a budget instead. ``RateController`` holds ``target_kbps`` for semantic + low-res bits
together: the low-res stream gets a fixed share of the budget (its own bit bucket holds it), the
semantic stream gets what the low-res stream leaves, and xi (contour simplification tolerance,
the paper's rate knob) moves multiplicatively with the ratio of measured to allowed semantic
rate. When xi is pinned at its maximum and the semantic stream still overspends, the low-res
share shrinks (down to its floor); when xi is at its minimum with bits to spare, it grows back.
Rates are in kbit/s, 1 kbit = 1000 bits.
"""

from __future__ import annotations

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
                 gain: float = 0.35):
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
