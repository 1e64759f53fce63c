"""A constrained link, without ROS: token-bucket bandwidth cap, added latency, loss and reordering.

The demo pushes packets through it in simulated time; the ``link_emulator`` node wraps the same
object in wall-clock time. Everything is deterministic for a given seed so runs can be compared.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LinkParams:
    bandwidth_kbps: float = 2.0  # 0 = unlimited
    latency_ms: float = 0.0
    loss_rate: float = 0.0
    reorder_rate: float = 0.0
    # Burst the bucket may hold: one second of traffic, so an I-frame may borrow from the frames
    # around it but the long-run rate stays capped.
    burst_s: float = 1.0
    # Bits waiting to be sent beyond which new packets are dropped (no unbounded queues).
    max_queue_bits: int = 64_000

    def validate(self) -> None:
        if self.bandwidth_kbps < 0:
            raise ValueError(f"bandwidth_kbps must be >= 0, got {self.bandwidth_kbps}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {self.latency_ms}")
        for name in ("loss_rate", "reorder_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if self.burst_s <= 0:
            raise ValueError(f"burst_s must be > 0, got {self.burst_s}")


@dataclass(order=True)
class _InFlight:
    arrival: float
    seq: int
    item: Any = field(compare=False)
    bits: int = field(compare=False, default=0)


class SimulatedLink:
    """Serialises packets at ``bandwidth_kbps`` (FIFO), then delays, drops or reorders them.

    ``send(t, item, nbytes)`` offers a packet at time ``t`` (seconds); ``receive(t)`` returns the
    items that have arrived by ``t`` in arrival order. Statistics count what was offered,
    delivered and dropped (by loss or by the queue bound).
    """

    def __init__(self, params: LinkParams | None = None, seed: int = 0):
        self.params = params or LinkParams()
        self.params.validate()
        self._rng = random.Random(seed)
        # Token bucket state: tokens (bits) available at time _t_last, when the previous packet
        # left the serialiser (packets leave in FIFO order).
        self._tokens = self._capacity()
        self._t_last = 0.0
        self._heap: list[_InFlight] = []
        self._seq = 0
        self.offered_bits = 0
        self.delivered_bits = 0
        self.dropped_loss = 0
        self.dropped_queue = 0
        self.delivered = 0

    def _capacity(self) -> float:
        return self.params.bandwidth_kbps * 1000.0 * self.params.burst_s

    def set_params(self, **changes: float) -> None:
        new = LinkParams(**{**self.params.__dict__, **changes})
        new.validate()
        self.params = new
        self._tokens = min(self._tokens, self._capacity())

    def backlog_bits(self, t: float) -> float:
        """Bits accepted but not yet through the bandwidth cap at time ``t``."""
        rate = self.params.bandwidth_kbps * 1000.0
        return max(0.0, self._t_last - t) * rate if rate > 0 else 0.0

    def send(self, t: float, item: Any, nbytes: int) -> bool:
        """Offer a packet at time ``t``; returns False when it was dropped (loss or full queue)."""
        bits = 8 * int(nbytes)
        self.offered_bits += bits
        p = self.params
        rate = p.bandwidth_kbps * 1000.0
        if rate > 0:
            if self.backlog_bits(t) + bits > p.max_queue_bits:
                self.dropped_queue += 1
                return False
            start = max(t, self._t_last)
            tokens = min(self._capacity(), self._tokens + rate * (start - self._t_last))
            # A packet larger than the bucket waits until the bucket is full and then runs it into
            # debt, which later packets pay back: the long-run rate never exceeds the cap.
            depart = start if tokens >= bits else start + (min(bits, self._capacity()) - tokens) / rate
            self._tokens = tokens + rate * (depart - start) - bits
            self._t_last = depart
        else:
            depart = t
        if self._rng.random() < p.loss_rate:
            self.dropped_loss += 1
            return False
        arrival = depart + p.latency_ms / 1000.0
        if self._rng.random() < p.reorder_rate:
            # Held back by one to three frame intervals (at 10 fps) so that later packets overtake it.
            arrival += self._rng.uniform(0.1, 0.3)
        self._seq += 1
        heapq.heappush(self._heap, _InFlight(arrival, self._seq, item, bits))
        return True

    def receive(self, t: float) -> list[Any]:
        out = []
        while self._heap and self._heap[0].arrival <= t:
            pkt = heapq.heappop(self._heap)
            self.delivered += 1
            self.delivered_bits += pkt.bits
            out.append(pkt.item)
        return out

    def next_arrival(self) -> float | None:
        return self._heap[0].arrival if self._heap else None
