"""Encoder node (robot): camera image + label map -> the link messages (semcomm_ros.sender).

Subscribes ``camera/image_raw`` and ``labels`` (paired by stamp, bounded caches),
``keyframe_request``, ``semantic_ack`` (SemanticAck: frames the decoder decoded, which P-frames
are predicted from while it reports loss) and the receiver's feedback, ``link_stats_rx`` (delivered rate) and
``diagnostics`` (decode latency); publishes ``semantic`` (SemanticFrame), ``lowres``
(LowResFrame; a frame the low-res rate control skips is not sent) and ``link_stats`` (LinkStats,
once per frame).

Parameters: one per ``SenderConfig`` field, of the same name; defaults, ranges and descriptions
from ``SenderConfig`` and its ``RANGES`` (= config/robot.yaml): ``xi`` contour tolerance px,
``period`` P, ``q_symbols`` Q, ``lowres_kbps``, ``lowres_scale`` (re-opens the low-res encoder:
next frame is a keyframe), ``target_kbps`` (0 = rate controller off; otherwise it drives xi and the
low-res rate, see link_budget.py), ``lowres_share``, ``fps`` (stream rate the kbps windows
assume), ``window_s`` (LinkStats sliding window), ``min_refresh_s`` (keyframe requests honoured at
most this often), ``ack_loss`` (reported loss from which P-frames are predicted from the newest
acknowledged frame). Read-only: ``profile`` (``tracked``, or ``paper`` for the paper's exact scheme,
which also takes the paper's xi = 6 and P = 4 unless they are set), ``lowres_codec``. Deprecated:
``iframe_period`` (sets ``period``, with a warning).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from rclpy.node import Node
from sensor_msgs.msg import Image

from semcomm_ros.codec.packet import MAX_COPIES, frame_bits
from semcomm_ros.codec.packet import VERSION as SEMANTIC_VERSION
from semcomm_ros.msg import DecoderStats, KeyframeRequest, LinkStats, LowResFrame, SemanticAck, SemanticFrame
from semcomm_ros.nodes.common import NAMESPACE, declare, declare_deprecated, declare_fields, run, set_result
from semcomm_ros.ros import qos
from semcomm_ros.ros.convert import (
    FRAME_TYPE_I,
    FRAME_TYPE_P,
    LowResPacket,
    SemanticPacket,
    labels_from_msg,
    lowres_to_msg,
    rgb_from_msg,
    semantic_to_msg,
    stamp_from_ns,
    stamp_to_ns,
)
from semcomm_ros.sender import Sender, SenderConfig

#: old parameter name -> the SenderConfig field it sets (deprecated; removed in the next release)
RENAMED = {"iframe_period": "period"}
WARN_EVERY_S = 10.0


class EncoderNode(Node):
    def __init__(self):
        super().__init__("encoder_node", namespace=NAMESPACE)
        # the profile first: xi and P default to its values
        profile = declare(self, "profile", SenderConfig.profile, SenderConfig.RANGES["profile"])
        values = declare_fields(self, SenderConfig(profile=profile),
                                [n for n in SenderConfig.RANGES if n != "profile"])
        values.update(declare_deprecated(self, RENAMED))
        self.sender = Sender(SenderConfig(profile=profile, **values))
        self._stamps: dict[int, int] = {}  # capture stamps of the last frames sent, for their copies
        self.add_on_set_parameters_callback(self._on_params)
        self.pub_sem = self.create_publisher(SemanticFrame, "semantic", qos.LINK)
        self.pub_low = self.create_publisher(LowResFrame, "lowres", qos.LINK)
        self.pub_stats = self.create_publisher(LinkStats, "link_stats", qos.STATS)
        self.create_subscription(Image, "camera/image_raw", self._on_image, **qos.overridable(qos.ROBOT_IMAGES))
        self.create_subscription(Image, "labels", self._on_labels, **qos.overridable(qos.ROBOT_IMAGES))
        self.create_subscription(KeyframeRequest, "keyframe_request", self._on_request, qos.FEEDBACK)
        self.create_subscription(SemanticAck, "semantic_ack", self._on_ack, qos.FEEDBACK)
        self.create_subscription(LinkStats, "link_stats_rx", self._on_link_rx, qos.STATS)
        self.create_subscription(DecoderStats, "diagnostics", self._on_diagnostics, qos.STATS)
        self._images: OrderedDict[int, Image] = OrderedDict()
        self._labels: OrderedDict[int, Image] = OrderedDict()
        self._budget_was = self.sender.budget_kbps
        c = self.sender.cfg
        self.get_logger().info(f"semantic profile {c.profile}, xi {c.xi}, P {c.period}, Q {c.q_symbols}; "
                               f"low-res {c.lowres_codec} 1/{c.lowres_scale} at {self.sender.lowres_target_kbps:.2f} "
                               f"kbps; target {c.target_kbps or 'off'}")

    @staticmethod
    def _t() -> float:
        return time.monotonic()

    # -- parameters ----------------------------------------------------------------------------
    def _on_params(self, params):
        # ranges are in the descriptors (rclpy refuses out-of-range values before this runs); the
        # sender checks the whole new config and what a range cannot say (a scale that does not
        # divide the frame) before it swaps it in, so a refused set changes nothing
        changes = {p.name: p.value for p in params if p.name in SenderConfig.RANGES}
        if not changes:  # not the sender's (a deprecated name comes with its new one, QoS overrides, ...)
            return set_result(True)
        try:
            self.sender.reconfigure(**changes)
        except ValueError as exc:
            reason = f"{', '.join(f'{k}={v!r}' for k, v in changes.items())} refused: {exc}"
            self.get_logger().warning(reason)
            return set_result(False, reason)
        return set_result(True)

    # -- feedback ------------------------------------------------------------------------------
    def _on_request(self, msg: KeyframeRequest):
        done = self.sender.request(self._t(), bool(msg.semantic), bool(msg.lowres),
                                   self._unwrap(msg.last_good_frame_index) if msg.semantic else None)
        what = "refreshing " + " and ".join(done) if done else "refreshed recently or not needed, ignored"
        self.get_logger().info(f"keyframe request (last good frame {msg.last_good_frame_index}, {msg.detail}): {what}",
                               throttle_duration_sec=WARN_EVERY_S)

    def _unwrap(self, index: int) -> int:
        # the messages' index wraps at 2^32, the encoder's count does not: unwrap against it
        last = self.sender.sem.frame_index - 1
        return last - ((last - int(index)) & 0xFFFFFFFF)

    def _on_ack(self, msg: SemanticAck):
        self.sender.acknowledge(self._t(), self._unwrap(msg.frame_index), float(msg.fraction_lost))

    def _on_link_rx(self, msg: LinkStats):
        if msg.window_frames:
            self.sender.on_delivered(self._t(), float(msg.total_kbps), float(msg.window_s))

    def _on_diagnostics(self, msg: DecoderStats):
        self.sender.on_latency(self._t(), float(msg.latency_decode_ms) / 1000.0)

    # -- inputs --------------------------------------------------------------------------------
    def _on_image(self, msg):
        self._pair(stamp_to_ns(msg.header.stamp), msg, self._images, self._labels, image_first=True)

    def _on_labels(self, msg):
        self._pair(stamp_to_ns(msg.header.stamp), msg, self._labels, self._images, image_first=False)

    def _pair(self, stamp, msg, mine, other, image_first):
        if stamp in other:
            partner = other.pop(stamp)
            # frames older than this pair will never be completed: forget them
            for cache in (mine, other):
                for s in [s for s in cache if s < stamp]:
                    del cache[s]
            img, lab = (msg, partner) if image_first else (partner, msg)
            self._encode(stamp, img, lab)
        else:
            mine[stamp] = msg
            while len(mine) > 8:
                mine.popitem(last=False)

    # -- coding --------------------------------------------------------------------------------
    def _copy_stamps(self, sent) -> tuple[int, ...]:
        """Capture stamps of the frames ``sent`` repeats (none when one is not known: the decoder
        then stamps a repaired frame with its arrival)."""
        stamps = [self._stamps.get(k) for k in range(sent.index - sent.copies, sent.index)]
        return tuple(stamps) if None not in stamps else ()

    def _encode(self, stamp, img_msg, lab_msg):
        try:
            sent = self.sender.encode(rgb_from_msg(img_msg), labels_from_msg(lab_msg), self._t())
        except ValueError as exc:
            self.get_logger().warning(f"frame dropped: {exc}", throttle_duration_sec=WARN_EVERY_S)
            return
        if self.sender.low_error:
            self.get_logger().error(self.sender.low_error, once=True)
        s, c = self.sender, self.sender.cfg
        frame_id = img_msg.header.frame_id
        self.pub_sem.publish(semantic_to_msg(SemanticPacket(
            payload=sent.semantic, frame_index=sent.index, frame_type=FRAME_TYPE_I if sent.iframe else FRAME_TYPE_P,
            width=sent.width, height=sent.height, xi=float(s.sem.xi), iframe_period=int(s.sem.period),
            q_symbols=int(s.sem.q_symbols), bitstream_version=SEMANTIC_VERSION, profile=c.profile,
            stamp_ns=stamp, frame_id=frame_id,
            copy_stamps_ns=self._copy_stamps(sent))))
        self._stamps[sent.index] = stamp
        for k in [k for k in self._stamps if k < sent.index - MAX_COPIES]:
            del self._stamps[k]
        if sent.lowres:
            self.pub_low.publish(lowres_to_msg(LowResPacket(
                payload=sent.lowres, frame_index=sent.index, codec=c.lowres_codec, width=sent.lowres_width,
                height=sent.lowres_height, keyframe=sent.keyframe, stamp_ns=stamp, frame_id=frame_id)))
        self._warn()
        self._publish_stats(sent, stamp)

    def _warn(self):
        s = self.sender
        why = s.pinned()
        if why:
            self.get_logger().warning(why, throttle_duration_sec=WARN_EVERY_S)
        budget = s.budget_kbps
        if s.congestion and s.congestion.congested and budget < 0.95 * self._budget_was:
            self.get_logger().warning(
                f"link congested (receiver latency {s.congestion.queue_s:.2f} s above its floor, delivered "
                f"{s.congestion.delivered_kbps or float('nan'):.2f} kbps): budget {budget:.2f} of "
                f"{s.cfg.target_kbps:.2f} kbps", throttle_duration_sec=WARN_EVERY_S)
        self._budget_was = budget

    def _publish_stats(self, sent, stamp):
        s = self.sender
        m = LinkStats()
        m.header.stamp = stamp_from_ns(stamp)
        m.frame_index = sent.index
        m.semantic_bits, m.lowres_bits = frame_bits(sent.semantic), frame_bits(sent.lowres)
        m.total_bits = m.semantic_bits + m.lowres_bits
        m.semantic_kbps, m.lowres_kbps = s.win_sem.kbps, s.win_low.kbps
        m.total_kbps = m.semantic_kbps + m.lowres_kbps
        m.window_s, m.window_frames = float(s.cfg.window_s), s.win_sem.frames
        # the budget in force: the target, or less while the link is congested
        m.target_kbps = float(s.budget_kbps if s.controller else 0.0)
        m.xi = float(s.sem.xi)
        m.lowres_target_kbps = float(s.lowres_target_kbps)
        m.frames, m.iframes, m.keyframes = (s.counts[k] for k in ("frames", "iframes", "keyframes"))
        m.keyframe_requests = s.counts["keyframe_requests"]
        m.dropped = 0
        m.bits = s.counts["bits"]
        self.pub_stats.publish(m)

    def close(self):
        self.sender.close()


def main(args=None) -> int:
    return run(EncoderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
