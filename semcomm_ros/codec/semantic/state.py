"""What a semantic decoder knows after a frame; the encoder keeps an identical copy (closed loop)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from semcomm_ros.codec.contours import rasterize
from semcomm_ros.codec.packet import FRAME_I, FrameHeader

ANGLE_UNITS = 360  # rotation in degrees
SCALE_UNITS = 64  # log2 scale steps (1.1 %): objects grow while they fall towards the camera
MAX_SCALE = 4 * SCALE_UNITS


@dataclass
class Instance:
    """One region as the decoder holds it: intra-coded vertices and how they moved since."""

    label: int
    base: np.ndarray  # (N, 2) int64 vertices in 1/16 px as intra coded
    group: int = -1  # paper: index of the motion label this region follows (-1 = static)
    # tracked profile: pose relative to ``base`` = (tx, ty in 1/16 px, rotation in degrees,
    # log2-scale in 1/SCALE_UNITS) and its per-frame velocity
    pose: tuple = (0, 0, 0, 0)
    vel: tuple = (0, 0, 0, 0)
    center: np.ndarray = field(default=None)  # rotation/scaling centre (float, 1/16 px)
    last: int = 0  # mode context: 0 fresh (intra coded), 1 kept, 2 corrected

    def __post_init__(self):
        if self.center is None:
            self.center = self.base.mean(axis=0) if len(self.base) else np.zeros(2)

    def vertices(self, pose=None) -> np.ndarray:
        tx, ty, rot, sc = self.pose if pose is None else pose
        if rot % ANGLE_UNITS == 0 and sc == 0:
            return (self.base + np.array([tx, ty], dtype=np.int64)).astype(np.int32)
        a = math.radians(rot)
        f = 2.0 ** (sc / SCALE_UNITS)
        c, s = f * math.cos(a), f * math.sin(a)
        d = self.base - self.center
        x = d[:, 0] * c - d[:, 1] * s + self.center[0] + tx
        y = d[:, 0] * s + d[:, 1] * c + self.center[1] + ty
        return np.stack([np.rint(x), np.rint(y)], axis=1).astype(np.int32)

    def predicted(self) -> tuple:
        return tuple(p + v for p, v in zip(self.pose, self.vel))


class State:
    """The decoded frame: its size, Q, canvas class and instances. Each profile subclasses it
    with where its instances are drawn (``polygons``)."""

    def __init__(self, hdr: FrameHeader, canvas: int):
        self.height, self.width = hdr.height, hdr.width
        self.q = hdr.q_symbols
        self.profile = hdr.profile
        self.canvas = canvas
        self.instances: list[Instance] = []

    def header(self) -> FrameHeader:
        """The I-frame header this state's contours are coded under."""
        return FrameHeader(0, FRAME_I, profile=self.profile, height=self.height, width=self.width, q_symbols=self.q)

    def polygons(self) -> list[tuple[int, np.ndarray]]:
        raise NotImplementedError

    def render(self) -> np.ndarray:
        return rasterize((self.height, self.width), self.canvas, self.polygons())


def step16(q: int, h: int, w: int) -> int:
    """Quantization step of a vertex difference in 1/16 px: Q symbols over [-S, S], S = max(H, W)."""
    return max(1, int(round(32 * max(h, w) / q)))

