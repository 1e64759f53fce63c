"""A constrained link, without ROS: token-bucket bandwidth cap with a queue bounded in time, added
latency, loss and reordering.

The demo pushes packets through it in simulated time; the ``link_emulator`` node wraps the same
object in wall-clock time. Everything is deterministic for a given seed so runs can be compared.

Packets wait in a FIFO for the bandwidth cap. The queue is bounded by the delay a new packet would
see (``max_delay_s``), not by bits: a bound in bits holds tens of seconds at 1 kbps and a fraction
of one at 100 kbps, while what matters for live video is how late a frame gets. A packet that
would wait longer is dropped on arrival (tail drop), so lowering the bound or the bandwidth never
drops a burst of already queued packets. Queued packets have not left yet, so a bandwidth change
re-times them: raising the bandwidth drains the queue at the new rate.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from semcomm_ros.ranges import Range, check_ranges


@dataclass(frozen=True)
class LinkParams:
    """The link's parameters; ``RANGES`` is what each field accepts (the link emulator node
    declares its parameters from it)."""

    bandwidth_kbps: float = 2.0
    # One-way delay of a long-range radio link (the demo configuration's); 0 models a wire.
    latency_ms: float = 100.0
    loss_rate: float = 0.0
    reorder_rate: float = 0.0
    # Burst the bucket may hold: one second of traffic, so an I-frame may borrow from the frames
    # around it but the long-run rate stays capped.
    burst_s: float = 1.0
    # Two seconds lets a keyframe burst through at 2 kbps and keeps a congested link's latency bounded.
    max_delay_s: float = 2.0

    RANGES = {
        "bandwidth_kbps": Range("bandwidth cap, kbit/s (1000 bit/s); 0 = unlimited", 0.0, 1e6),
        "latency_ms": Range("added one-way latency, ms", 0.0, 60000.0),
        "loss_rate": Range("probability a packet is lost", 0.0, 1.0),
        "reorder_rate": Range("probability a packet is held back 100-300 ms", 0.0, 1.0),
        "burst_s": Range("traffic the token bucket may hold, s of the bandwidth", 0.0, lo_open=True),
        "max_delay_s": Range("longest a packet may wait for the bandwidth cap, s; later packets are dropped",
                             0.01, 600.0),
    }

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        check_ranges(self)

    def replace(self, **changes) -> "LinkParams":
        """A new, validated set of parameters (ValueError with the reason)."""
        return dataclasses.replace(self, **changes)


@dataclass(order=True)
class _InFlight:
    arrival: float
    seq: int
    item: Any = field(compare=False)
    bits: int = field(compare=False, default=0)


@dataclass
class _Queued:
    offered: float
    item: Any
    bits: int
    lost: bool
    extra_delay: float  # reordering hold-back, drawn when offered


class SimulatedLink:
    """Serialises packets at ``bandwidth_kbps`` (FIFO), then delays, drops or reorders them.

    ``send(t, item, nbytes)`` offers a packet at time ``t`` (seconds); ``receive(t)`` returns the
    items that have arrived by ``t`` in arrival order. Times must not go backwards. Statistics
    count what was offered, delivered and dropped (by loss or by the queue bound).
    """

    def __init__(self, params: LinkParams | None = None, seed: int = 0):
        self.params = params or LinkParams()
        self.params.validate()
        self._rng = random.Random(seed)
        # Token bucket state: tokens (bits, negative = debt) at time _t_last, when the previous
        # packet left the serialiser or the bandwidth last changed.
        self._tokens = self._capacity()
        self._t_last = 0.0
        self._queue: deque[_Queued] = deque()  # waiting for the cap
        self._heap: list[_InFlight] = []  # through the cap, in flight
        self._seq = 0
        self.offered_bits = 0
        self.delivered_bits = 0
        self.dropped_loss = 0
        self.dropped_queue = 0
        self.delivered = 0

    def _capacity(self) -> float:
        return self.params.bandwidth_kbps * 1000.0 * self.params.burst_s

    def _departure(self, pkt: _Queued, t_last: float, tokens: float) -> tuple[float, float]:
        """(departure time, tokens just before it leaves) of the queue's head."""
        rate, cap = self.params.bandwidth_kbps * 1000.0, self._capacity()
        start = max(pkt.offered, t_last)
        tokens = min(cap, tokens + rate * (start - t_last))
        # A packet larger than the bucket waits until the bucket is full and then runs it into
        # debt, which later packets pay back: the long-run rate never exceeds the cap.
        need = min(pkt.bits, cap)
        depart = start if tokens >= need else start + (need - tokens) / rate
        return depart, tokens + rate * (depart - start)

    def _advance(self, t: float) -> None:
        """Move every queued packet whose departure is due by ``t`` into flight."""
        while self._queue:
            pkt = self._queue[0]
            if self.params.bandwidth_kbps > 0:
                depart, tokens = self._departure(pkt, self._t_last, self._tokens)
                if depart > t:
                    return
                self._tokens, self._t_last = tokens - pkt.bits, depart
            else:
                depart = pkt.offered
            self._queue.popleft()
            if not pkt.lost:
                self._seq += 1
                arrival = depart + self.params.latency_ms / 1000.0 + pkt.extra_delay
                heapq.heappush(self._heap, _InFlight(arrival, self._seq, pkt.item, pkt.bits))

    def _last_departure(self, extra: _Queued | None = None) -> float:
        """When the last queued packet (or ``extra``, appended) will leave at the current rate."""
        t_last, tokens, depart = self._t_last, self._tokens, self._t_last
        for pkt in [*self._queue, *([extra] if extra else [])]:
            depart, tokens = self._departure(pkt, t_last, tokens)
            t_last, tokens = depart, tokens - pkt.bits
        return depart

    def set_params(self, t: float | None = None, **changes: float) -> None:
        """Change parameters at time ``t`` (default: the last departure); packets still queued are
        re-timed at the new bandwidth, packets already in flight keep their arrival."""
        new = self.params.replace(**changes)
        if t is not None:
            self._advance(t)
            if t > self._t_last and self.params.bandwidth_kbps > 0:
                rate = self.params.bandwidth_kbps * 1000.0
                self._tokens = min(self._capacity(), self._tokens + rate * (t - self._t_last))
                self._t_last = t
        self.params = new
        self._tokens = min(self._tokens, self._capacity())

    def queue_delay_s(self, t: float) -> float:
        """How long a packet offered at ``t`` would wait for the cap (0 when nothing is queued)."""
        self._advance(t)
        if not self._queue or self.params.bandwidth_kbps <= 0:
            return 0.0
        return max(0.0, self._last_departure() - t)

    def queued(self) -> int:
        return len(self._queue)

    def send(self, t: float, item: Any, nbytes: int) -> bool:
        """Offer a packet at time ``t``; returns False when it was dropped (loss or full queue)."""
        bits = 8 * int(nbytes)
        self.offered_bits += bits
        p = self.params
        self._advance(t)
        pkt = _Queued(t, item, bits, False, 0.0)
        if p.bandwidth_kbps > 0 and self._last_departure(pkt) - t > p.max_delay_s:
            self.dropped_queue += 1
            return False
        pkt.lost = self._rng.random() < p.loss_rate
        if pkt.lost:
            self.dropped_loss += 1
        elif self._rng.random() < p.reorder_rate:
            # Held back by one to three frame intervals (at 10 fps) so that later packets overtake it.
            pkt.extra_delay = self._rng.uniform(0.1, 0.3)
        self._queue.append(pkt)
        self._advance(t)
        return not pkt.lost

    def receive(self, t: float) -> list[Any]:
        self._advance(t)
        out = []
        while self._heap and self._heap[0].arrival <= t:
            pkt = heapq.heappop(self._heap)
            self.delivered += 1
            self.delivered_bits += pkt.bits
            out.append(pkt.item)
        return out

    def next_arrival(self) -> float | None:
        """Earliest time something arrives, counting queued packets (None when nothing will)."""
        t_last, tokens, times = self._t_last, self._tokens, []
        for pkt in self._queue:
            if self.params.bandwidth_kbps > 0:
                depart, tokens = self._departure(pkt, t_last, tokens)
                t_last, tokens = depart, tokens - pkt.bits
            else:
                depart = pkt.offered
            if not pkt.lost:
                times.append(depart + self.params.latency_ms / 1000.0 + pkt.extra_delay)
        if self._heap:
            times.append(self._heap[0].arrival)
        return min(times) if times else None


class DeliveryWindow:
    """What a link delivered over the last ``window_s`` (the ``link_stats_rx`` figure the encoder's
    congestion control reads): ``add(t, stream, bits)`` per delivered packet, ``rates(t)`` ->
    ({stream: kbps}, span s, packets). Over the first ``window_s`` the rate is over the time
    elapsed so far. The link emulator node and the offline ``system.Session`` both keep one."""

    DEFAULT_S = 10.0

    def __init__(self, window_s: float = DEFAULT_S):
        self.window_s = float(window_s)
        self._delivered: deque[tuple[float, str, int]] = deque()

    def add(self, t: float, stream: str, bits: int) -> None:
        self._delivered.append((t, stream, int(bits)))

    def rates(self, t: float) -> tuple[dict[str, float], float, int]:
        while self._delivered and self._delivered[0][0] < t - self.window_s:
            self._delivered.popleft()
        span = min(self.window_s, max(t, 1e-3))
        kbps: dict[str, float] = {}
        for _, stream, bits in self._delivered:
            kbps[stream] = kbps.get(stream, 0.0) + bits / span / 1000.0
        return kbps, span, len(self._delivered)
