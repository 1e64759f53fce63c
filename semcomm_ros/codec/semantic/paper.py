"""The ``paper`` profile: the paper's scheme (Sec. IV-A) exactly, encoder and decoder side by side.

I-frames: per class, 8-connected regions, outer boundary traced clockwise, Douglas-Peucker
simplified with tolerance xi, first point and class label explicit, the rest as differences
uniformly quantized to Q symbols and arithmetic coded under one Laplace scale per frame.
P-frames: per instance (= class label, as in the paper's centroid equation) the centroid shift
v_m = mu^{k+1} - mu^k; the decoder shifts the decoded contours. When a class appears or vanishes
a P-frame cannot describe the map: the encoder codes an I-frame instead.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from semcomm_ros.codec import entropy as ent
from semcomm_ros.codec.contours import ONE, canvas_label
from semcomm_ros.codec.errors import BitstreamError
from semcomm_ros.codec.packet import FrameHeader
from semcomm_ros.codec.semantic import intra
from semcomm_ros.codec.semantic.state import Instance, State, step16

# the paper's operating point (Sec. V): xi = 6 px, P = 4; the slacks act in the tracked profile only
DEFAULTS = {"xi": 6.0, "period": 4, "keep_slack": 0.2, "update_slack": 0.2}
# Laplace scales (in quantization symbols) an I-frame may pick for its vertex differences.
SCALES = tuple(float(0.35 * 1.25**i) for i in range(32))
# P-frames: the centroid shift (1 px steps) is 0 or +-1 px for most classes, a few move fast:
# a two-Laplace mixture fitted (maximum likelihood) on generated clips (seeds 300-319): 3.06 bits
# a component on the benchmark clips against 3.34 for the single Laplace (scale 3 px) it replaces
V_MIX = (0.395, 0.709, 2.479)  # weight of the narrow component, its scale, the wide scale (px)


class PaperState(State):
    """Instances move with their class's accumulated centroid shift (``offsets``, px)."""

    def __init__(self, hdr: FrameHeader, canvas: int):
        super().__init__(hdr, canvas)
        self.groups: list[int] = []  # motion labels
        self.offsets: list[list[int]] = []  # accumulated shift per motion label, px

    def polygons(self) -> list[tuple[int, np.ndarray]]:
        out = []
        for inst in self.instances:
            if inst.group >= 0:
                dx, dy = self.offsets[inst.group]
                out.append((inst.label, (inst.base + np.array([dx * ONE, dy * ONE])).astype(np.int32)))
            else:
                out.append((inst.label, inst.base.astype(np.int32)))
        return out


def best_scale(symbols: np.ndarray, q: int) -> int:
    if symbols.size == 0:
        return 0
    d = np.abs(symbols.astype(np.float64) - q // 2)
    k = np.abs(np.arange(q, dtype=np.float64) - q // 2)
    best, best_bits = 0, math.inf
    for i, b in enumerate(SCALES):
        logz = math.log(np.exp(-k / b).sum())
        bits = (d.sum() / b + d.size * logz) / math.log(2)
        if bits < best_bits:
            best, best_bits = i, bits
    return best


def _diff_model(q: int, scale_index: int):
    return ent.laplace(q, float(q // 2), SCALES[scale_index])


def _v_model(s: int):
    return ent.laplace_mixture(2 * s + 1, float(s), *V_MIX)


def _groups(instances: list[Instance], canvas: int) -> list[int]:
    """Motion labels of an I-frame; canvas-class regions (holes) follow their enclosing region."""
    groups: list[int] = []
    for i, inst in enumerate(instances):
        if inst.label != canvas:
            if inst.label not in groups:
                groups.append(inst.label)
            inst.group = groups.index(inst.label)
            continue
        inst.group = -1
        p = (float(inst.base[0, 0]) / ONE, float(inst.base[0, 1]) / ONE)
        for parent in reversed(instances[:i]):
            if parent.label == canvas or len(parent.base) < 3:
                continue
            if cv2.pointPolygonTest((parent.base / ONE).astype(np.float32).reshape(-1, 1, 2), p, False) >= 0:
                inst.group = parent.group
                break
    return groups


_GRID: dict = {}


def _centroids(labels: np.ndarray) -> np.ndarray:
    """mu_m: centroid (x, y) of every class label (paper eq. for v_m), shape (256, 2)."""
    h, w = labels.shape
    if (h, w) not in _GRID:
        _GRID[(h, w)] = (np.tile(np.arange(w, dtype=np.float64), h), np.repeat(np.arange(h, dtype=np.float64), w))
    xs, ys = _GRID[(h, w)]
    flat = labels.ravel()
    n = np.bincount(flat, minlength=256).astype(np.float64)
    n[n == 0] = 1
    return np.stack([np.bincount(flat, xs, 256) / n, np.bincount(flat, ys, 256) / n], axis=1)


# -- I-frame ------------------------------------------------------------------------------------
def write_iframe(wr: ent.SymbolWriter, hdr: FrameHeader, items) -> None:
    """Contours ``items`` = [(label, pts (px), None)]: one Laplace scale for all differences; the
    class labels stay explicit and uniform, but over the label range 0..L the I-frame declares
    (L = its largest label, 8 bits) instead of all 256 classes."""
    h, w, q = hdr.height, hdr.width, hdr.q_symbols
    step = step16(q, h, w)
    syms = [intra.quantize_contour(pts, (int(pts[0, 0]) * ONE, int(pts[0, 1]) * ONE), step, q, h, w)[0]
            for _, pts, _ in items]
    flat = np.concatenate(syms).ravel() if syms else np.zeros(0, np.int32)
    s = best_scale(flat, q)
    wr.uint(s, len(SCALES))
    n_labels = 256
    if items:
        n_labels = max(label for label, _, _ in items) + 1
        wr.uint(n_labels - 1, 256)
    intra.write_heads(wr, items, h, w, lambda wr, label: wr.uint(label, n_labels))
    if flat.size:
        wr.write(flat, _diff_model(q, s))


def read_iframe(rd: ent.SymbolReader, hdr: FrameHeader, canvas: int, n: int) -> PaperState:
    h, w, q = hdr.height, hdr.width, hdr.q_symbols
    step = step16(q, h, w)
    s = rd.uint(len(SCALES))
    n_labels = rd.uint(256) + 1 if n else 256
    heads, total = intra.read_heads(rd, [None] * n, h, w, lambda rd: rd.uint(n_labels))
    flat = rd.read(_diff_model(q, s), 2 * total) if total else np.zeros(0, np.int64)
    state = PaperState(hdr, canvas)
    pos = 0
    for label, npts, x, y in heads:
        syms = flat[pos : pos + 2 * (npts - 1)].reshape(-1, 2)
        pos += 2 * (npts - 1)
        state.instances.append(Instance(label, intra.dequantize((x * ONE, y * ONE), syms, step, q, h, w)))
    state.groups = _groups(state.instances, canvas)
    state.offsets = [[0, 0] for _ in state.groups]
    return state


def iframe_reference(labels: np.ndarray, canvas: int) -> dict:
    """What the encoder's P-frames measure the centroid shifts against."""
    return {"canvas": canvas, "mu": _centroids(labels)}


# -- P-frame ------------------------------------------------------------------------------------
def extrapolate(st: PaperState, frames: int) -> PaperState:
    """A paper P-frame codes each class's shift since the I-frame, not since the frame before:
    predicted from an older frame it needs nothing carried forward."""
    return st


def write_pframe(labels: np.ndarray, st: PaperState, ref: dict, xi: float, keep_slack: float,
                 update_slack: float) -> tuple[bytes | None, dict[str, int]]:
    """(the P-frame payload for ``labels``, {}), or (None, {}) when only an I-frame describes them.
    A paper P-frame shifts whole classes: it re-sends no contour and has no per-instance modes, so it
    takes xi and the slacks (the profiles' common signature, ``profiles.py``) without using them."""
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
    if canvas_label(labels) != ref["canvas"] or set(int(c) for c in present) - {st.canvas} != set(st.groups):
        return None, {}  # a class appeared or vanished
    mu = _centroids(labels)
    s = max(st.height, st.width)
    v = []
    for g, off in zip(st.groups, st.offsets):
        target = np.rint(mu[g] - ref["mu"][g]).astype(int)
        v += [int(target[0]) - off[0] + s, int(target[1]) - off[1] + s]
    wr = ent.SymbolWriter()
    if v:
        wr.write(np.clip(v, 0, 2 * s), _v_model(s))
    return wr.finish(), {}


def read_pframe(rd: ent.SymbolReader, st: PaperState) -> PaperState:
    """Apply a P-frame to ``st`` (a copy of the previous state)."""
    s = max(st.height, st.width)
    v = rd.read(_v_model(s), 2 * len(st.groups)) - s if st.groups else np.zeros(0, np.int64)
    st.offsets = [[o[0] + int(v[2 * i]), o[1] + int(v[2 * i + 1])] for i, o in enumerate(st.offsets)]
    for dx, dy in st.offsets:
        if abs(dx) > 4 * s or abs(dy) > 4 * s:
            raise BitstreamError("corrupt P-frame: accumulated shift far outside the frame")
    return st
