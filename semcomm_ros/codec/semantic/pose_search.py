"""The tracked encoder's search: which decoded instance is which region now, and the pose
correction (quantized to the profile's residual steps) that brings it closest, by IoU."""

from __future__ import annotations

import math

import cv2
import numpy as np

from semcomm_ros.codec.contours import ONE, Region, simplify
from semcomm_ros.codec.semantic.intra import quantize_contour
from semcomm_ros.codec.semantic.state import MAX_SCALE, SCALE_UNITS, Instance, State, step16


class Crop:
    """A filled polygon as a mask in its own bounding box (cheap IoUs between small shapes)."""

    __slots__ = ("x0", "y0", "m")

    def __init__(self, x0, y0, m):
        self.x0, self.y0, self.m = x0, y0, m


def fill(v16: np.ndarray, h: int, w: int) -> Crop:
    v = np.asarray(v16, dtype=np.int64)
    x0 = max(0, int(v[:, 0].min()) // ONE - 1)
    y0 = max(0, int(v[:, 1].min()) // ONE - 1)
    x1 = min(w, int(v[:, 0].max()) // ONE + 2)
    y1 = min(h, int(v[:, 1].max()) // ONE + 2)
    if x1 <= x0 or y1 <= y0:
        return Crop(0, 0, np.zeros((0, 0), np.uint8))
    m = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = (v - np.array([x0 * ONE, y0 * ONE])).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(m, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return Crop(x0, y0, m)


def iou(a: Crop, b: Crop) -> float:
    if a.m.size == 0 or b.m.size == 0:
        return 0.0
    x0, y0 = min(a.x0, b.x0), min(a.y0, b.y0)
    x1 = max(a.x0 + a.m.shape[1], b.x0 + b.m.shape[1])
    y1 = max(a.y0 + a.m.shape[0], b.y0 + b.m.shape[0])
    A = np.zeros((y1 - y0, x1 - x0), np.uint8)
    B = np.zeros_like(A)
    A[a.y0 - y0 : a.y0 - y0 + a.m.shape[0], a.x0 - x0 : a.x0 - x0 + a.m.shape[1]] = a.m
    B[b.y0 - y0 : b.y0 - y0 + b.m.shape[0], b.x0 - x0 : b.x0 - x0 + b.m.shape[1]] = b.m
    inter = int(np.count_nonzero(A & B))
    union = int(np.count_nonzero(A | B))
    return inter / union if union else 1.0


def _moments(c: Crop):
    m = cv2.moments(c.m, binaryImage=True)
    if m["m00"] == 0:
        return None
    cx, cy = m["m10"] / m["m00"] + c.x0, m["m01"] / m["m00"] + c.y0
    ang = 0.5 * math.degrees(math.atan2(2 * m["mu11"], m["mu20"] - m["mu02"]))
    return cx, cy, ang, m["m00"]


def simplified_iou(reg: Region, mask: Crop, xi: float, st: State) -> float:
    """IoU an intra refresh of this region would reach (simplification + quantization)."""
    h, w = st.height, st.width
    pts = simplify(reg.contour, float(xi))
    step = step16(st.q, h, w)
    _, rec = quantize_contour(pts, (int(pts[0, 0]) * ONE, int(pts[0, 1]) * ONE), step, st.q, h, w)
    return iou(fill(rec, h, w), mask)


def estimate_move(inst: Instance, mask: Crop, h: int, w: int, t_unit: int):
    """Translation-only correction in steps of ``t_unit`` (1/16 px) and the IoU it reaches."""
    pose = inst.predicted()
    pm = _moments(fill(inst.vertices(pose), h, w))
    tm = _moments(mask)
    if pm is None or tm is None:
        return (0, 0, 0, 0), 0.0
    rx, ry = int(round((tm[0] - pm[0]) * ONE / t_unit)), int(round((tm[1] - pm[1]) * ONE / t_unit))
    v = inst.vertices((pose[0] + rx * t_unit, pose[1] + ry * t_unit, pose[2], pose[3]))
    return (rx, ry, 0, 0), iou(fill(v, h, w), mask)


def estimate_update(inst: Instance, mask: Crop, h: int, w: int, t_unit: int, r_unit: int, s_unit: int):
    """Pose correction relative to the extrapolated pose (translation in steps of ``t_unit``,
    rotation in degrees and scale in 1/SCALE_UNITS octave, multiples of ``r_unit`` / ``s_unit``)
    and the IoU it reaches."""
    px, py, pr, ps = inst.predicted()
    pm = _moments(fill(inst.vertices((px, py, pr, ps)), h, w))
    tm = _moments(mask)
    if pm is None or tm is None:
        return (0, 0, 0, 0), 0.0
    rs = int(round(SCALE_UNITS * 0.5 * math.log2(max(tm[3], 1) / max(pm[3], 1))))
    rs = max(-MAX_SCALE - ps, min(MAX_SCALE - ps, rs))
    rs = s_unit * int(round(rs / s_unit))
    cands = {0}
    d = tm[2] - pm[2]
    for base in (d, d + 90, d - 90, d + 180):  # second-moment axes are ambiguous for near-square shapes
        r = int(round(((base + 180) % 360) - 180))
        if abs(r) <= 45:
            cands.add(r_unit * int(round(r / r_unit)))

    def trial(rr):
        # rotation/scaling about the instance centre moves its centroid: re-measure, then translate
        mm = _moments(fill(inst.vertices((px, py, pr + rr, ps + rs)), h, w))
        if mm is None:
            return (0, 0, rr, rs), 0.0
        rx = int(round((tm[0] - mm[0]) * ONE / t_unit))
        ry = int(round((tm[1] - mm[1]) * ONE / t_unit))
        v2 = inst.vertices((px + rx * t_unit, py + ry * t_unit, pr + rr, ps + rs))
        return (rx, ry, rr, rs), iou(fill(v2, h, w), mask)

    best = ((0, 0, 0, 0), -1.0)
    for rr in sorted(cands):
        t = trial(rr)
        if t[1] > best[1]:
            best = t
    for delta in (2 * r_unit, r_unit):
        r0 = best[0][2]
        for rr in (r0 - delta, r0 + delta):
            t = trial(rr)
            if t[1] > best[1]:
                best = t
    return best


def match(instances: list[Instance], preds: list[np.ndarray], regions: list[Region]) -> dict[int, int]:
    """Greedy nearest-centroid matching of decoder instances to current regions of the same class."""
    pairs = []
    rc = [(r.contour[:, 0].mean(), r.contour[:, 1].mean(), math.sqrt(r.area)) for r in regions]
    for i, (inst, v) in enumerate(zip(instances, preds)):
        cx, cy = v[:, 0].mean() / ONE, v[:, 1].mean() / ONE
        for j, r in enumerate(regions):
            if r.label != inst.label:
                continue
            d = math.hypot(rc[j][0] - cx, rc[j][1] - cy)
            if d <= max(12.0, 0.75 * rc[j][2]):
                pairs.append((d, i, j))
    pairs.sort()
    out: dict[int, int] = {}
    taken = set()
    for _d, i, j in pairs:
        if i in out or j in taken:
            continue
        out[i] = j
        taken.add(j)
    return out
