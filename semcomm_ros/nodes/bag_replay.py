"""Bag replay node: publishes the link topics of a rosbag2 file (recorded with ``semcomm bag
record`` or ``ros2 bag record``) as recorded: the same CDR bytes. Topics are published under this
node's namespace by their last name component (``/semcomm/semantic`` -> ``semantic``), so a decoder
in any namespace can take them.

Two modes:
- **timed** (default): the recorded spacing divided by ``rate``, as ``ros2 bag play``;
- **lockstep**: frame by frame -- every message of one frame index, then a wait until the decoder
  reports that frame on ``diagnostics`` -- so a decoder with ``every_frame`` synthesizes every
  frame of the bag, however slow it is. Two lockstep replays of one bag give the same synthesized
  frames bit for bit (the decoder seeds each frame by its index from the stream's start).

Before the first message it waits until every replayed topic has a subscriber (and, in lockstep,
``diagnostics`` a publisher), then ``start_delay_s`` more. It publishes ``/clock`` with the bag's
time (``clock``), so nodes with ``use_sim_time`` measure latency against the replay, not against
the hours since the recording.

Parameters: see docs/ros.md and config/replay.yaml.
"""

from __future__ import annotations

import time

from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from semcomm_ros.nodes.common import NAMESPACE, declare, run
from semcomm_ros.ranges import Range
from semcomm_ros.ros import qos
from semcomm_ros.ros.bag import LINK_TOPICS, read
from semcomm_ros.ros.topic import msg_class

#: how often /clock is published, s (a sim-time timer cannot run finer than this)
CLOCK_PERIOD_S = 0.01


NODE_PARAMETERS = {
    "bag": Range("rosbag2 folder to replay", read_only=True),
    "rate": Range("replay speed factor (timed mode)", 0.01, 100.0, read_only=True),
    "loop": Range("start over at the end (timed mode)"),
    "topics": Range("topics to replay (last name component or full name)", read_only=True),
    "start_delay_s": Range("wait after the subscribers matched, before the first message, s", 0.0, 60.0,
                           read_only=True),
    "wait_for_subscribers": Range("hold the first message until every replayed topic has a subscriber",
                                  read_only=True),
    "lockstep": Range("publish frame by frame, each once the decoder reported the previous one on diagnostics",
                      read_only=True),
    "frame_timeout_s": Range("lockstep: longest wait for the decoder's report of one frame, s", 0.1, 3600.0,
                             read_only=True),
    "clock": Range("publish /clock with the bag's time", read_only=True),
    "exit_when_done": Range("exit after the last message"),
}


class BagReplay(Node):
    def __init__(self):
        super().__init__("bag_replay", namespace=NAMESPACE)
        from rosgraph_msgs.msg import Clock as ClockMsg

        from semcomm_ros.msg import DecoderStats

        n = NODE_PARAMETERS
        self.bag = declare(self, "bag", "", n["bag"])
        self.rate = declare(self, "rate", 1.0, n["rate"])
        self.loop = declare(self, "loop", False, n["loop"])
        self.topics = declare(self, "topics", ["semantic", "lowres"], n["topics"])
        self.start_delay_s = declare(self, "start_delay_s", 1.0, n["start_delay_s"])
        self.wait_for_subscribers = declare(self, "wait_for_subscribers", True, n["wait_for_subscribers"])
        self.lockstep = declare(self, "lockstep", False, n["lockstep"])
        self.frame_timeout_s = declare(self, "frame_timeout_s", 10.0, n["frame_timeout_s"])
        self.clock = declare(self, "clock", True, n["clock"])
        self.exit_when_done = declare(self, "exit_when_done", False, n["exit_when_done"])
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
        self.frames = self._frames(msg_class) if self.lockstep else None
        self.reported: int | None = None  # last frame index the decoder reported (lockstep)
        if self.lockstep:
            self.create_subscription(DecoderStats, "diagnostics", self._on_diag, qos.STATS)
        self.pub_clock = self.create_publisher(ClockMsg, "/clock", 10) if self.clock else None
        self._clock_msg = ClockMsg
        self.i = 0
        self.sent = 0
        self.t0_bag = self.items[0][2]
        self.t_bag = self.t0_bag  # the replay clock: bag time of the last message out ...
        self.t_wall = None  # ... at this wall time (monotonic); None: not started
        self.t_matched = None
        self.waiting_since = None  # subscribers not matched yet, since
        self.t_frame = 0.0  # lockstep: last frame out at
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # this node's pace is wall time, whatever others use
        self.create_timer(0.002, self._tick, clock=steady)
        if self.pub_clock:
            self.create_timer(CLOCK_PERIOD_S, self._publish_clock, clock=steady)
        mode = f"lockstep, {len(self.frames)} frames" if self.lockstep else f"at x{self.rate}"
        self.get_logger().info(f"replaying {len(self.items)} messages from {self.bag} ({mode})")

    def _frames(self, msg_class) -> list[tuple[int, list[int], bool]]:
        """[(frame index, [item positions], has a semantic frame)] in the bag's order of first
        appearance. The decoder reports a frame once its semantic packet is in; a frame without
        one is not waited for."""
        from rclpy.serialization import deserialize_message

        frames: dict[int, list[int]] = {}
        semantic: set[int] = set()
        for pos, (_, msgtype, _, data) in enumerate(self.items):
            msg = deserialize_message(data, msg_class(msgtype))
            if not hasattr(msg, "frame_index"):
                raise SystemExit(f"bag_replay: lockstep replays frame-indexed topics; {msgtype} has no frame_index")
            frames.setdefault(int(msg.frame_index), []).append(pos)
            if msgtype.endswith("/SemanticFrame"):
                semantic.add(int(msg.frame_index))
        return [(k, positions, k in semantic) for k, positions in frames.items()]

    def _on_diag(self, msg):
        index = int(msg.frame_index)
        # the highest frame reported; an index far below it is a restarted stream
        if self.reported is None or index > self.reported or index <= self.reported - 50:
            self.reported = index

    # -- start ---------------------------------------------------------------------------------
    def _started(self, now: float) -> bool:
        if self.t_wall is not None:
            return True
        if self.t_matched is None:
            pending = [t for t, p in self.pubs.items() if p.get_subscription_count() == 0]
            if self.lockstep and self.count_publishers(self.get_namespace().rstrip("/") + "/diagnostics") == 0:
                pending.append("diagnostics (a decoder's)")
            if self.wait_for_subscribers and pending:
                if self.waiting_since is None:
                    self.waiting_since = now
                    self.get_logger().info(f"waiting for subscribers on {pending}")
                return False
            self.t_matched = now
        if now - self.t_matched < self.start_delay_s:
            return False
        self.t_wall = now
        return True

    def _publish_clock(self):
        if self.t_wall is None:
            t = self.t0_bag
        else:
            rate = 1.0 if self.lockstep else self.rate
            t = self.t_bag + int((time.monotonic() - self.t_wall) * rate * 1e9)
        msg = self._clock_msg()
        msg.clock.sec, msg.clock.nanosec = t // 1_000_000_000, t % 1_000_000_000
        self.pub_clock.publish(msg)

    def _publish(self, pos: int) -> None:
        topic, _, _, data = self.items[pos]
        self.pubs[topic].publish(data)  # serialized bytes: published as recorded
        self.sent += 1

    # -- replay --------------------------------------------------------------------------------
    def _tick(self):
        now = time.monotonic()
        if not self._started(now):
            return
        if self.lockstep:
            self._tick_lockstep(now)
            return
        while self.i < len(self.items):
            _, _, t, _ = self.items[self.i]
            if self.t_wall + (t - self.t_bag) / 1e9 / self.rate > now:
                return
            self._publish(self.i)
            self.i += 1
        if self.get_parameter("loop").value:
            self.i, self.t_wall, self.t_bag = 0, now + 0.1, self.t0_bag
        else:
            self._done()

    def _tick_lockstep(self, now: float):
        if self.i > 0:
            index, _, reported_on = self.frames[self.i - 1]
            done = not reported_on or (self.reported is not None and self.reported >= index)
            if not done and now - self.t_frame < self.frame_timeout_s:
                return
            if not done:
                self.get_logger().warning(f"no report of frame {index} after {self.frame_timeout_s} s; going on")
        if self.i == len(self.frames):
            self._done()
            return
        _, positions, _ = self.frames[self.i]
        # the replay clock reads the frame's bag time before its messages are out
        self.t_bag, self.t_wall = self.items[positions[0]][2], now
        if self.pub_clock:
            self._publish_clock()
        for pos in positions:
            self._publish(pos)
        self.i += 1
        self.t_frame = now

    def _done(self):
        if self.get_parameter("exit_when_done").value:
            self.get_logger().info(f"replayed {self.sent} messages")
            raise SystemExit(0)


def main(args=None) -> int:
    try:
        return run(BagReplay, args)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else (print(exc.code) or 1)


if __name__ == "__main__":
    raise SystemExit(main())
