"""Camera/scene source: generated tabletop video (semcomm_ros.scenes) as ``sensor_msgs/Image``
plus its exact label map, so the system runs end to end without a robot.

Publishes ``camera/image_raw`` (rgb8) and ``camera/labels_gt`` (mono8, class ids), same stamp.
Parameters: ``fps``, ``width``, ``height``, ``seed`` (clip k of the run uses seed + k),
``clip_frames`` (frames per generated clip), ``max_frames`` (0 = run forever).
"""

from __future__ import annotations

import time

from rclpy.node import Node
from sensor_msgs.msg import Image

from semcomm_ros.nodes.common import NAMESPACE, declare, run, set_result
from semcomm_ros.ranges import Range
from semcomm_ros.ros import qos
from semcomm_ros.ros.convert import image_to_msg
from semcomm_ros.scenes import tabletop_clip

NODE_PARAMETERS = {
    "fps": Range("frames per second published", 0.1, 60.0),
    "width": Range("frame width in pixels (multiple of 16)", 32, 2048, step=16, read_only=True),
    "height": Range("frame height in pixels (multiple of 16)", 32, 2048, step=16, read_only=True),
    "seed": Range("scene seed; clip k uses seed + k", 0, 2**31 - 1, read_only=True),
    "clip_frames": Range("frames per generated clip", 1, 100000, read_only=True),
    "max_frames": Range("stop after this many frames (0 = never)", 0, 10**9),
}


class SceneSource(Node):
    def __init__(self):
        super().__init__("scene_source", namespace=NAMESPACE)
        n = NODE_PARAMETERS
        self.fps = declare(self, "fps", 10.0, n["fps"])
        self.width = declare(self, "width", 512, n["width"])
        self.height = declare(self, "height", 512, n["height"])
        self.seed = declare(self, "seed", 0, n["seed"])
        self.clip_frames = declare(self, "clip_frames", 300, n["clip_frames"])
        self.max_frames = declare(self, "max_frames", 0, n["max_frames"])
        self.pub_rgb = self.create_publisher(Image, "camera/image_raw", qos.ROBOT_IMAGES)
        self.pub_labels = self.create_publisher(Image, "camera/labels_gt", qos.ROBOT_IMAGES)
        self.count = 0
        self._clip = 0
        self._frames = self._new_clip()
        self.add_on_set_parameters_callback(self._on_params)
        self.timer = self.create_timer(1.0 / self.fps, self._tick)
        self.get_logger().info(f"publishing {self.width}x{self.height} tabletop frames at {self.fps} fps")

    def _new_clip(self):
        it = tabletop_clip(self.seed + self._clip, self.clip_frames, width=self.width, height=self.height)
        self._clip += 1
        return it

    def _on_params(self, params):
        for p in params:
            if p.name == "fps":
                self.fps = float(p.value)
                self.timer.cancel()
                self.timer = self.create_timer(1.0 / self.fps, self._tick)
            elif p.name == "max_frames":
                self.max_frames = int(p.value)
        return set_result(True)

    def _tick(self):
        if self.max_frames and self.count >= self.max_frames:
            return
        try:
            rgb, labels = next(self._frames)
        except StopIteration:
            self._frames = self._new_clip()
            rgb, labels = next(self._frames)
        stamp = time.time_ns()
        self.pub_rgb.publish(image_to_msg(rgb, "rgb8", stamp, "camera_optical"))
        self.pub_labels.publish(image_to_msg(labels, "mono8", stamp, "camera_optical"))
        self.count += 1


def main(args=None) -> int:
    return run(SceneSource, args)


if __name__ == "__main__":
    raise SystemExit(main())
