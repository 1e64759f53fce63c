"""Encoder node (robot): camera image + label map -> the link messages.

Subscribes ``camera/image_raw`` and ``labels`` (paired by stamp, bounded caches) and
``keyframe_request``; publishes ``semantic`` (SemanticFrame), ``lowres`` (LowResFrame; a frame the
low-res rate control skips is not sent) and ``link_stats`` (LinkStats, once per frame).

Parameters (all changeable at run time; out-of-range values are refused with a reason):
``xi`` contour tolerance px, ``iframe_period`` P, ``q_symbols`` Q, ``lowres_kbps``,
``lowres_scale`` (re-opens the low-res encoder: next frame is a keyframe), ``target_kbps``
(0 = rate controller off; otherwise it drives xi and lowres_kbps, see ros/rate_control.py),
``fps`` (stream rate the kbps windows assume), ``window_s`` (LinkStats sliding window).
Read-only: ``profile`` (semantic codec profile), ``lowres_codec``.
"""

from __future__ import annotations

from collections import OrderedDict

from rclpy.node import Node
from sensor_msgs.msg import Image

from semcomm_ros.codec.packet import VERSION as SEMANTIC_VERSION
from semcomm_ros.msg import KeyframeRequest, LinkStats, LowResFrame, SemanticFrame
from semcomm_ros.nodes.common import NAMESPACE, check_params, declare, in_range, run, set_result
from semcomm_ros.ros import qos
from semcomm_ros.ros.convert import (FRAME_TYPE_I, FRAME_TYPE_P, LowResPacket, SemanticPacket,
                                     labels_from_msg, lowres_to_msg, rgb_from_msg, semantic_to_msg,
                                     stamp_from_ns, stamp_to_ns)
from semcomm_ros.ros.rate_control import RateController, SlidingWindow

XI_MAX = 63.75


class EncoderNode(Node):
    def __init__(self):
        super().__init__("encoder_node", namespace=NAMESPACE)
        from semcomm_ros.codec.packet import MAX_Q, PROFILES

        self.profile = declare(self, "profile", "paper", "semantic codec profile", read_only=True,
                               choices=PROFILES)
        self.xi = declare(self, "xi", 6.0, "contour simplification tolerance xi, pixels", 0.0, XI_MAX)
        self.period = declare(self, "iframe_period", 4, "I-frame period P, frames", 1, 255)
        self.q = declare(self, "q_symbols", 256, "quantisation symbols Q of contour differences", 2, MAX_Q)
        self.lowres_kbps = declare(self, "lowres_kbps", 1.0, "low-res stream rate, kbit/s", 0.05, 1000.0)
        self.lowres_scale = declare(self, "lowres_scale", 4, "low-res downscale factor", 1, 16)
        self.lowres_codec = declare(self, "lowres_codec", "vp9", "low-res video codec", read_only=True,
                                    choices=("vp9", "av1", "hevc"))
        self.target_kbps = declare(self, "target_kbps", 0.0, "total link budget, kbit/s; 0 = rate "
                                   "controller off", 0.0, 10000.0)
        self.lowres_share = declare(self, "lowres_share", 0.4, "share of target_kbps given to the "
                                    "low-res stream under the rate controller", 0.05, 0.95)
        self.fps = declare(self, "fps", 10.0, "camera frame rate the kbit/s figures assume", 0.1, 120.0)
        self.window_s = declare(self, "window_s", 5.0, "sliding window of link_stats, seconds", 0.5, 600.0)
        from semcomm_ros.codec import SemanticEncoder

        self.sem = SemanticEncoder(xi=self.xi, period=self.period, q_symbols=self.q, profile=self.profile)
        self.low = None  # opened on the first frame (needs its size)
        self._checks = {
            "xi": in_range(0.0, XI_MAX), "iframe_period": in_range(1, 255), "q_symbols": in_range(2, MAX_Q),
            "lowres_kbps": in_range(0.05, 1000.0), "lowres_scale": self._check_scale,
            "target_kbps": in_range(0.0, 10000.0), "lowres_share": in_range(0.05, 0.95),
            "fps": in_range(0.1, 120.0), "window_s": in_range(0.5, 600.0),
        }
        self.add_on_set_parameters_callback(self._on_params)
        self.controller = None
        self._make_controller()
        self.win_sem = SlidingWindow(self.window_s, self.fps)
        self.win_low = SlidingWindow(self.window_s, self.fps)
        # the controller looks at a shorter window: two I-frame periods, at least 1 s
        self.ctl_sem = SlidingWindow(max(1.0, 2 * self.period / self.fps), self.fps)
        self.ctl_low = SlidingWindow(max(2.0, 2 * self.period / self.fps), self.fps)
        self.pub_sem = self.create_publisher(SemanticFrame, "semantic", qos.LINK)
        self.pub_low = self.create_publisher(LowResFrame, "lowres", qos.LINK)
        self.pub_stats = self.create_publisher(LinkStats, "link_stats", qos.STATS)
        self.create_subscription(Image, "camera/image_raw", self._on_image, qos.SENSOR)
        self.create_subscription(Image, "labels", self._on_labels, qos.SENSOR)
        self.create_subscription(KeyframeRequest, "keyframe_request", self._on_request, qos.FEEDBACK)
        self._images: OrderedDict[int, Image] = OrderedDict()
        self._labels: OrderedDict[int, Image] = OrderedDict()
        self.frame_index = 0
        self.counts = {"frames": 0, "iframes": 0, "keyframes": 0, "keyframe_requests": 0, "bits": 0}
        self.get_logger().info(f"semantic profile {self.profile}, xi {self.xi}, P {self.period}, Q {self.q}; "
                               f"low-res {self.lowres_codec} 1/{self.lowres_scale} at {self.lowres_kbps} kbps; "
                               f"target {self.target_kbps or 'off'}")

    # -- parameters ----------------------------------------------------------------------------
    def _check_scale(self, v):
        in_range(1, 16)(v)
        if self.low:
            from semcomm_ros.codec.lowres import LowResEncoder

            LowResEncoder(self.low.width, self.low.height, fps=max(1, round(self.fps)), scale=int(v),
                          kbps=self.lowres_kbps, codec=self.lowres_codec)  # raises with the reason

    def _make_controller(self):
        self.controller = (RateController(self.target_kbps, self.xi, self.lowres_share,
                                          xi_max=XI_MAX) if self.target_kbps > 0 else None)

    def _on_params(self, params):
        ok, reason = check_params(params, self._checks)
        if not ok:
            self.get_logger().warning(reason)
            return set_result(False, reason)
        for p in params:
            v = p.value
            if p.name == "xi":
                self.xi = float(v)
                self.sem.set_params(xi=self.xi)
                if self.controller:
                    self.controller.xi = self.xi
            elif p.name == "iframe_period":
                self.period = int(v)
                self.sem.set_params(period=self.period)
            elif p.name == "q_symbols":
                self.q = int(v)
                self.sem.set_params(q_symbols=self.q)
            elif p.name == "lowres_kbps":
                self.lowres_kbps = float(v)
                if self.low is not None:
                    self.low.set_kbps(self._lowres_codec_kbps(self.lowres_kbps))
            elif p.name == "lowres_scale":
                self.lowres_scale = int(v)
                self.low = None  # re-opened at the next frame, which becomes a keyframe
            elif p.name == "target_kbps":
                self.target_kbps = float(v)
                self._make_controller()
            elif p.name == "lowres_share":
                self.lowres_share = float(v)
                self._make_controller()
            elif p.name == "fps":
                self.fps = float(v)
                for w in (self.win_sem, self.win_low, self.ctl_sem, self.ctl_low):
                    w.resize(fps=self.fps)
            elif p.name == "window_s":
                self.window_s = float(v)
                self.win_sem.resize(window_s=self.window_s)
                self.win_low.resize(window_s=self.window_s)
        return set_result(True)

    @staticmethod
    def _lowres_codec_kbps(kbps: float) -> float:
        # the low-res codec counts 1 kbit = 1024 bits, the link (and LinkStats) 1000 bits
        return max(0.05, kbps * 1000.0 / 1024.0)

    # -- inputs --------------------------------------------------------------------------------
    def _on_request(self, msg: KeyframeRequest):
        self.counts["keyframe_requests"] += 1
        if msg.semantic:
            self.sem.force_iframe()
        if msg.lowres and self.low is not None:
            self.low.force_keyframe()
        self.get_logger().info(f"keyframe request (last good frame {msg.last_good_frame_index}): {msg.detail}")

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
    def _encode(self, stamp, img_msg, lab_msg):
        from semcomm_ros.codec.lowres import LowResEncoder

        try:
            rgb, labels = rgb_from_msg(img_msg), labels_from_msg(lab_msg)
        except ValueError as exc:
            self.get_logger().warning(f"frame dropped: {exc}")
            return
        if rgb.shape[:2] != labels.shape:
            self.get_logger().warning(f"frame dropped: image {rgb.shape[:2]} and labels {labels.shape} differ")
            return
        h, w = labels.shape
        if self.low is None or (self.low.width, self.low.height) != (w, h):
            try:
                self.low = LowResEncoder(w, h, fps=max(1, round(self.fps)), scale=self.lowres_scale,
                                         kbps=self._lowres_codec_kbps(self._lowres_target()),
                                         codec=self.lowres_codec)
            except ValueError as exc:
                self.get_logger().error(f"low-res stream off for {w}x{h}: {exc}")
                self.low = False
        index = self.frame_index
        self.frame_index += 1
        packet = self.sem.encode(labels)
        is_i = self.sem.last_frame_type == "I"
        sp = SemanticPacket(payload=packet, frame_index=index, frame_type=FRAME_TYPE_I if is_i else FRAME_TYPE_P,
                            width=w, height=h, xi=float(self.sem.xi), iframe_period=int(self.sem.period),
                            q_symbols=int(self.sem.q_symbols), bitstream_version=SEMANTIC_VERSION, profile=self.profile,
                            stamp_ns=stamp, frame_id=img_msg.header.frame_id)
        self.pub_sem.publish(semantic_to_msg(sp))
        low_bits = 0
        if self.low:
            lp_bytes = self.low.encode(rgb)
            if lp_bytes:
                from semcomm_ros.codec.lowres import parse_header

                key = bool(parse_header(lp_bytes)["key"])
                self.counts["keyframes"] += int(key)
                self.pub_low.publish(lowres_to_msg(LowResPacket(
                    payload=lp_bytes, frame_index=index, codec=self.lowres_codec, width=self.low.low_width,
                    height=self.low.low_height, keyframe=key, stamp_ns=stamp,
                    frame_id=img_msg.header.frame_id)))
                low_bits = 8 * len(lp_bytes)
        sem_bits = 8 * len(packet)
        for win, bits in ((self.win_sem, sem_bits), (self.ctl_sem, sem_bits),
                          (self.win_low, low_bits), (self.ctl_low, low_bits)):
            win.add(bits)
        self.counts["frames"] += 1
        self.counts["iframes"] += int(is_i)
        self.counts["bits"] += sem_bits + low_bits
        if self.controller is not None:
            d = self.controller.update(self.ctl_sem.kbps, self.ctl_low.kbps)
            self.xi = d.xi
            self.sem.set_params(xi=min(d.xi, XI_MAX))
            if self.low:
                self.low.set_kbps(self._lowres_codec_kbps(d.lowres_kbps))
        self._publish_stats(index, stamp, sem_bits, low_bits)

    def _lowres_target(self) -> float:
        return self.controller.lowres_kbps if self.controller is not None else self.lowres_kbps

    def _publish_stats(self, index, stamp, sem_bits, low_bits):
        s = LinkStats()
        s.header.stamp = stamp_from_ns(stamp)
        s.frame_index = index
        s.semantic_bits, s.lowres_bits, s.total_bits = sem_bits, low_bits, sem_bits + low_bits
        s.semantic_kbps, s.lowres_kbps = self.win_sem.kbps, self.win_low.kbps
        s.total_kbps = s.semantic_kbps + s.lowres_kbps
        s.window_s, s.window_frames = float(self.window_s), self.win_sem.frames
        s.target_kbps = float(self.target_kbps)
        s.xi = float(self.sem.xi)
        s.lowres_target_kbps = float(self._lowres_target())
        s.frames, s.iframes, s.keyframes = (self.counts[k] for k in ("frames", "iframes", "keyframes"))
        s.keyframe_requests = self.counts["keyframe_requests"]
        s.dropped = 0
        s.bits = self.counts["bits"]
        self.pub_stats.publish(s)


def main(args=None) -> int:
    return run(EncoderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
