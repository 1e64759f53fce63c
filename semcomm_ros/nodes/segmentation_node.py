"""Segmentation node (robot): ``camera/image_raw`` -> ``labels`` (mono8 class-id map, same stamp).

``backend`` picks the segmenter (semcomm_ros.segmentation.load_segmenter): "ultralytics" (the
shipped tabletop YOLO11n-seg, CPU), "labels" (ground truth from ``camera/labels_gt``, e.g. a
simulator's label camera), or "" for the default of ``config`` (config/segmentation.yaml).
``runtime`` runs the ultralytics model in ONNX Runtime ("onnx") or PyTorch ("torch").
"""

from __future__ import annotations

import time
from collections import OrderedDict

from rclpy.node import Node
from sensor_msgs.msg import Image

from semcomm_ros.nodes.common import NAMESPACE, declare, run
from semcomm_ros.ranges import Range
from semcomm_ros.ros import qos
from semcomm_ros.ros.convert import image_to_msg, labels_from_msg, rgb_from_msg, stamp_to_ns
from semcomm_ros.segmentation import load_config, load_segmenter

NODE_PARAMETERS = {
    "backend": Range("segmentation backend: ultralytics, labels, or '' for the config's default",
                     choices=("", "ultralytics", "labels"), read_only=True),
    "config": Range("segmentation YAML ('' = config/segmentation.yaml)", read_only=True),
    "runtime": Range("ultralytics backend's runtime: onnx (ONNX Runtime), torch, or '' for the config's; onnx "
                     "falls back to torch, with a warning saying why, where it cannot run",
                     choices=("", "onnx", "torch"), read_only=True),
}


class SegmentationNode(Node):
    def __init__(self):
        super().__init__("segmentation_node", namespace=NAMESPACE)
        backend = declare(self, "backend", "", NODE_PARAMETERS["backend"])
        config = declare(self, "config", "", NODE_PARAMETERS["config"])
        runtime = declare(self, "runtime", "", NODE_PARAMETERS["runtime"])
        # the labels backend has no runtime: the option goes only where the backend in force is ultralytics
        ultralytics = (backend or load_config(config or None).get("default_backend", "ultralytics")) == "ultralytics"
        options = {"runtime": runtime} if runtime and ultralytics else {}
        self.segmenter = load_segmenter(backend or None, config=config or None, **options)
        self.backend = type(self.segmenter).__name__
        self.pub = self.create_publisher(Image, "labels", qos.ROBOT_IMAGES)
        self.create_subscription(Image, "camera/image_raw", self._on_image, **qos.overridable(qos.ROBOT_IMAGES))
        self._gt: OrderedDict[int, object] = OrderedDict()  # stamp -> labels (bounded)
        self._pending: OrderedDict[int, Image] = OrderedDict()
        self.uses_gt = hasattr(self.segmenter, "feed")
        if self.uses_gt:
            self.create_subscription(Image, "camera/labels_gt", self._on_gt, **qos.overridable(qos.ROBOT_IMAGES))
        self.frames, self.seconds = 0, 0.0
        runtime = getattr(self.segmenter, "runtime", None)
        self.get_logger().info(f"segmenter: {self.backend}" + (f", runtime {runtime}" if runtime else ""))

    def _on_gt(self, msg):
        stamp = stamp_to_ns(msg.header.stamp)
        self._gt[stamp] = labels_from_msg(msg)
        while len(self._gt) > 8:
            self._gt.popitem(last=False)
        if stamp in self._pending:
            self._segment(self._pending.pop(stamp))

    def _on_image(self, msg):
        stamp = stamp_to_ns(msg.header.stamp)
        if self.uses_gt and stamp not in self._gt:
            self._pending[stamp] = msg  # its ground truth has not arrived yet
            while len(self._pending) > 4:
                self._pending.popitem(last=False)
            return
        self._segment(msg)

    def _segment(self, msg):
        stamp = stamp_to_ns(msg.header.stamp)
        try:
            rgb = rgb_from_msg(msg)
            if self.uses_gt:
                self.segmenter.feed(self._gt[stamp])
            t0 = time.perf_counter()
            labels = self.segmenter(rgb)
            self.seconds += time.perf_counter() - t0
        except ValueError as exc:
            self.get_logger().warning(f"frame dropped: {exc}")
            return
        self.frames += 1
        self.pub.publish(image_to_msg(labels, "mono8", stamp, msg.header.frame_id))


def main(args=None) -> int:
    return run(SegmentationNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
