"""Link emulator: relays the link topics through a constrained channel (semcomm_ros.link:
token-bucket bandwidth cap with a queue bounded in time, added latency, loss, reordering), in
wall-clock time.

Subscribes ``tx/semantic``, ``tx/lowres`` (remap the encoder's outputs there) and publishes what
gets through on ``semantic``, ``lowres``; ``link_stats_rx`` (LinkStats, 1 Hz) reports the payload
bits actually delivered over a sliding window, and the drops. ``keyframe_request`` is not relayed
(the feedback channel is tiny; route it through a second emulator if it must be impaired).
Parameters (run-time changeable): ``bandwidth_kbps`` (0 = unlimited), ``latency_ms``,
``loss_rate``, ``reorder_rate``, ``max_delay_s`` (longest wait for the cap; a bandwidth change
re-times what is queued), ``window_s``; read-only ``seed``. The link's parameters are
``LinkParams`` fields of the same name (defaults, ranges, descriptions from ``LinkParams``).
"""

from __future__ import annotations

import time

from rclpy.node import Node

from semcomm_ros.codec.packet import frame_bits
from semcomm_ros.link import DeliveryWindow, LinkParams, SimulatedLink
from semcomm_ros.msg import LinkStats, LowResFrame, SemanticFrame
from semcomm_ros.nodes.common import NAMESPACE, declare, declare_fields, run, set_result
from semcomm_ros.ranges import Range
from semcomm_ros.ros import qos
from semcomm_ros.ros.convert import stamp_from_ns

#: the LinkParams fields declared as parameters of the same name
LINK_PARAMETERS = ("bandwidth_kbps", "latency_ms", "loss_rate", "reorder_rate", "max_delay_s")
#: the node's own parameters
NODE_PARAMETERS = {
    "seed": Range("random seed of loss/reordering", 0, 2**31 - 1, read_only=True),
    "window_s": Range("window of the delivered-rate figure, s", 0.5, 600.0),
}


class LinkEmulator(Node):
    def __init__(self):
        super().__init__("link_emulator", namespace=NAMESPACE)
        values = declare_fields(self, LinkParams(), LINK_PARAMETERS)
        seed = declare(self, "seed", 0, NODE_PARAMETERS["seed"])
        self.window = DeliveryWindow(declare(self, "window_s", DeliveryWindow.DEFAULT_S, NODE_PARAMETERS["window_s"]))
        self.link = SimulatedLink(LinkParams(**values), seed=seed)
        self.t0 = time.monotonic()
        self.add_on_set_parameters_callback(self._on_params)
        self.pub = {"semantic": self.create_publisher(SemanticFrame, "semantic", qos.LINK),
                    "lowres": self.create_publisher(LowResFrame, "lowres", qos.LINK)}
        self.create_subscription(SemanticFrame, "tx/semantic", lambda m: self._offer("semantic", m), qos.LINK)
        self.create_subscription(LowResFrame, "tx/lowres", lambda m: self._offer("lowres", m), qos.LINK)
        self.pub_stats = self.create_publisher(LinkStats, "link_stats_rx", qos.STATS)
        self.offered = 0
        self.create_timer(0.005, self._deliver)
        self.create_timer(1.0, self._stats)
        self.get_logger().info(f"link: {values}")

    def _now(self) -> float:
        return time.monotonic() - self.t0

    def _on_params(self, params):
        # ranges are in the descriptors: rclpy refuses out-of-range values before this runs; the
        # link checks its whole new parameter set before it takes it
        changes = {p.name: p.value for p in params if p.name in LINK_PARAMETERS}
        window = [float(p.value) for p in params if p.name == "window_s"]
        if changes:
            try:
                self.link.set_params(t=self._now(), **changes)
            except ValueError as exc:
                return set_result(False, str(exc))
        if window:
            self.window.window_s = window[-1]
        return set_result(True)

    def _offer(self, stream: str, msg):
        self.offered += 1
        self.link.send(self._now(), (stream, msg), len(msg.payload))

    def _deliver(self):
        now = self._now()
        for stream, msg in self.link.receive(now):
            self.pub[stream].publish(msg)
            self.window.add(now, stream, frame_bits(msg.payload))

    def _stats(self):
        kbps, span, packets = self.window.rates(self._now())
        m = LinkStats()
        m.header.stamp = stamp_from_ns(time.time_ns())
        m.semantic_kbps, m.lowres_kbps = kbps.get("semantic", 0.0), kbps.get("lowres", 0.0)
        m.total_kbps = m.semantic_kbps + m.lowres_kbps
        m.window_s, m.window_frames = float(span), packets
        m.target_kbps = float(self.link.params.bandwidth_kbps)
        m.frames = self.link.delivered
        m.dropped = self.link.dropped_loss + self.link.dropped_queue
        m.bits = self.link.delivered_bits
        self.pub_stats.publish(m)


def main(args=None) -> int:
    return run(LinkEmulator, args)


if __name__ == "__main__":
    raise SystemExit(main())
