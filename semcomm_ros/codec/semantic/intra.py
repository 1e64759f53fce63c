"""Intra coding shared by both profiles: closed-loop quantization of a contour's vertex
differences, an I-frame's canvas and region count, and each contour's head (label, point count,
first point). How the labels and the differences are entropy coded is the profile's."""

from __future__ import annotations

import numpy as np

from semcomm_ros.codec import entropy as ent
from semcomm_ros.codec.contours import ONE
from semcomm_ros.codec.errors import BitstreamError

MAX_REGIONS = 1 << 14
# bit-length models of the counts (entropy.SymbolWriter.count), fitted on generated tabletop
# clips: contours have 4..15 points at xi 4..12, a scene 3..14 regions
NPTS_PROBS = ent.nbits_probs(0.01, 0.03, 0.5, 0.45, 0.02, 0.005)
NREG_PROBS = ent.nbits_probs(0.02, 0.15, 0.5, 0.3, 0.03, 0.005)
CANVAS_PROBS = (0.98, 0.02)  # canvas is class 0 (the table) / explicit
FIRST_SCALE = 3.0  # px, first point of an intra refresh relative to the predicted instance


def quantize_contour(pts: np.ndarray, first16: tuple[int, int], step: int, q: int, h: int, w: int):
    """Closed-loop quantization of the vertex differences; returns (symbols (n-1, 2), recon (n, 2))."""
    half = q // 2
    xmax, ymax = (w - 1) * ONE, (h - 1) * ONE
    rx, ry = first16
    n = len(pts)
    syms = np.empty((max(n - 1, 0), 2), dtype=np.int32)
    rec = np.empty((n, 2), dtype=np.int64)
    rec[0] = (rx, ry)
    p16 = pts.astype(np.int64) * ONE
    for i in range(1, n):
        dx = int(p16[i, 0]) - rx
        dy = int(p16[i, 1]) - ry
        sx = min(q - 1, max(0, (dx + step // 2) // step + half))
        sy = min(q - 1, max(0, (dy + step // 2) // step + half))
        rx = min(xmax, max(0, rx + (sx - half) * step))
        ry = min(ymax, max(0, ry + (sy - half) * step))
        syms[i - 1] = (sx, sy)
        rec[i] = (rx, ry)
    return syms, rec


def dequantize(first16, syms: np.ndarray, step: int, q: int, h: int, w: int) -> np.ndarray:
    half = q // 2
    xmax, ymax = (w - 1) * ONE, (h - 1) * ONE
    n = len(syms) + 1
    rec = np.empty((n, 2), dtype=np.int64)
    rx, ry = first16
    rec[0] = (rx, ry)
    for i in range(1, n):
        sx, sy = int(syms[i - 1, 0]), int(syms[i - 1, 1])
        rx = min(xmax, max(0, rx + (sx - half) * step))
        ry = min(ymax, max(0, ry + (sy - half) * step))
        rec[i] = (rx, ry)
    return rec


def top_vertex(v: np.ndarray) -> tuple[int, int]:
    """Topmost-then-leftmost vertex: where findContours starts tracing, hence a predictor of p_m0."""
    i = np.lexsort((v[:, 0], v[:, 1]))[0]
    return int(v[i, 0]), int(v[i, 1])


def write_frame_head(wr: ent.SymbolWriter, canvas: int, regions: int) -> None:
    if canvas == 0:
        wr.write(0, ent.categorical(CANVAS_PROBS))
    else:
        wr.write(1, ent.categorical(CANVAS_PROBS))
        wr.uint(canvas, 256)
    wr.count(regions, NREG_PROBS)


def read_frame_head(rd: ent.SymbolReader) -> tuple[int, int]:
    """(canvas class, number of regions) of an I-frame."""
    canvas = 0 if rd.read(ent.categorical(CANVAS_PROBS)) == 0 else rd.uint(256)
    return canvas, rd.count(MAX_REGIONS, "number of regions", NREG_PROBS)


def write_heads(wr: ent.SymbolWriter, items, h: int, w: int, write_label) -> None:
    """Per contour of ``items`` = [(label, pts (px), predicted first point (1/16 px) or None)]:
    its label (``write_label(wr, label)``), point count and first point."""
    for label, pts, pred in items:
        write_label(wr, label)
        wr.count(len(pts) - 1, NPTS_PROBS)
        if pred is None:
            wr.uint(int(pts[0, 0]), w)
            wr.uint(int(pts[0, 1]), h)
        else:
            px, py = (pred[0] + ONE // 2) // ONE, (pred[1] + ONE // 2) // ONE
            wr.write(int(pts[0, 0]) - px + w, ent.laplace(2 * w + 1, float(w), FIRST_SCALE))
            wr.write(int(pts[0, 1]) - py + h, ent.laplace(2 * h + 1, float(h), FIRST_SCALE))


def read_heads(rd: ent.SymbolReader, preds: list, h: int, w: int, read_label):
    """Inverse of ``write_heads``: [(label, points, x, y)] and the number of differences."""
    heads = []
    total = 0
    for pred in preds:
        label = read_label(rd)
        npts = rd.count(4 * (h + w), "points in a contour", NPTS_PROBS) + 1
        total += npts - 1
        if total > 8 * h * w:
            raise BitstreamError("corrupt payload: more contour points than the frame has pixels")
        if pred is None:
            x, y = rd.uint(w), rd.uint(h)
        else:
            px, py = (pred[0] + ONE // 2) // ONE, (pred[1] + ONE // 2) // ONE
            x = rd.read(ent.laplace(2 * w + 1, float(w), FIRST_SCALE)) - w + px
            y = rd.read(ent.laplace(2 * h + 1, float(h), FIRST_SCALE)) - h + py
            if not (0 <= x < w and 0 <= y < h):
                raise BitstreamError(f"corrupt payload: first point ({x}, {y}) outside the {w}x{h} frame")
        heads.append((label, npts, x, y))
    return heads, total
