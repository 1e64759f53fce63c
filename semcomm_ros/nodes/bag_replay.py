"""Bag replay node: publishes the link topics of a rosbag2 file (recorded with ``semcomm bag
record`` or ``ros2 bag record``) as recorded: the same CDR bytes, with the recorded spacing
divided by ``rate``. Topics are published under this node's namespace by their last name
component (``/semcomm/semantic`` -> ``semantic``), so a decoder in any namespace can take them.

Parameters: ``bag`` (path, required), ``rate`` (speed factor), ``loop``, ``topics`` (names to
replay; default the link streams ``semantic`` and ``lowres``), ``start_delay_s`` (time for
subscribers to match before the first message), ``exit_when_done``.
"""

from __future__ import annotations

import time

from rclpy.node import Node

from semcomm_ros.nodes.common import NAMESPACE, declare, run
from semcomm_ros.ros import qos


class BagReplay(Node):
    def __init__(self):
        super().__init__("bag_replay", namespace=NAMESPACE)
        from semcomm_ros.ros.bag import LINK_TOPICS, read
        from semcomm_ros.ros.topic import msg_class

        self.bag = declare(self, "bag", "", "rosbag2 folder to replay", read_only=True)
        self.rate = declare(self, "rate", 1.0, "replay speed factor", 0.01, 100.0, read_only=True)
        self.loop = declare(self, "loop", False, "start over at the end")
        self.topics = declare(self, "topics", ["semantic", "lowres"], "topics to replay (last name "
                              "component or full name)", read_only=True)
        self.start_delay_s = declare(self, "start_delay_s", 1.0, "wait before the first message, s", 0.0, 60.0)
        self.exit_when_done = declare(self, "exit_when_done", False, "exit after the last message")
        if not self.bag:
            raise SystemExit("bag_replay: parameter 'bag' (a rosbag2 folder) is required")
        self.items = list(read(self.bag, list(self.topics)))
        if not self.items:
            raise SystemExit(f"bag_replay: no messages of {list(self.topics)} in {self.bag}")
        self.pubs = {}
        for topic, msgtype, _, _ in self.items:
            if topic not in self.pubs:
                base = topic.rsplit("/", 1)[-1]
                profile = qos.LINK if base in LINK_TOPICS and base != "link_stats" else qos.STATS
                if base == "keyframe_request":
                    profile = qos.FEEDBACK
                self.pubs[topic] = self.create_publisher(msg_class(msgtype), base, profile)
        self.i = 0
        self.sent = 0
        self.t0_bag = self.items[0][2]
        self.t0 = time.monotonic() + self.start_delay_s
        self.create_timer(0.002, self._tick)
        self.get_logger().info(f"replaying {len(self.items)} messages from {self.bag} at x{self.rate}")

    def _tick(self):
        now = time.monotonic()
        while self.i < len(self.items):
            topic, _, t, data = self.items[self.i]
            if self.t0 + (t - self.t0_bag) / 1e9 / self.rate > now:
                return
            self.pubs[topic].publish(data)  # serialized bytes: published as recorded
            self.i += 1
            self.sent += 1
        if self.get_parameter("loop").value:
            self.i, self.t0 = 0, now + 0.1
        elif self.get_parameter("exit_when_done").value:
            self.get_logger().info(f"replayed {self.sent} messages")
            raise SystemExit(0)


def main(args=None) -> int:
    try:
        return run(BagReplay, args)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else (print(exc.code) or 1)


if __name__ == "__main__":
    raise SystemExit(main())
