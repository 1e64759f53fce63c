"""Label map <-> ordered filled contours (paper IV-A: M^k, C_m^k, line simplification, R(C)).

A label map is decomposed into *regions*: the 8-connected components of each class, each one
represented by its outer boundary only. One class is the *canvas* (the table, 0, normally): the
decoder starts from a map filled with it, so its components that touch the image border are not
sent. Holes need no contours of their own: whatever fills a hole (the table seen through a bowl,
an object lying in it) is itself a region, and it lies inside its parent's outer boundary, so its
filled area is strictly smaller. Drawing regions by decreasing filled area therefore paints every
parent before what lies inside it, which brings holes, nested regions and occlusion order back.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SUBPIXEL_SHIFT = 4  # rasterized vertices are in 1/16 px
ONE = 1 << SUBPIXEL_SHIFT


@dataclass
class Region:
    label: int
    contour: np.ndarray  # (N, 2) int32 boundary pixel centres (x, y), clockwise on screen
    area: float  # filled area of the outer boundary, pixels


def signed_area(pts: np.ndarray) -> float:
    """Shoelace area; > 0 when the points run clockwise on screen (y pointing down)."""
    return float(cv2.contourArea(np.ascontiguousarray(pts, dtype=np.int32).reshape(-1, 1, 2), oriented=True))


def canvas_label(labels: np.ndarray) -> int:
    """The class the decoder's canvas is filled with: the most frequent label on the border."""
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    counts = np.bincount(border, minlength=256)
    return int(np.argmax(counts))


def extract_regions(labels: np.ndarray, canvas: int | None = None) -> tuple[int, list[Region]]:
    """All regions of ``labels`` except canvas-class ones touching the border, largest first."""
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"label map must be a 2-D uint8 array, got {labels.dtype} {labels.shape}")
    h, w = labels.shape
    if canvas is None:
        canvas = canvas_label(labels)
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
    regions: list[Region] = []
    for c in present:
        mask = cv2.compare(labels, int(c), cv2.CMP_EQ)
        # CCOMP puts every component's outer boundary at the top level, also components lying
        # in a hole of another component of the same class; the second level (holes) is dropped.
        contours, hier = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        for cnt, hh in zip(contours, hier[0] if hier is not None else ()):
            if hh[3] != -1:
                continue
            pts = cnt.reshape(-1, 2)
            if c == canvas:
                x0, y0 = pts.min(axis=0)
                x1, y1 = pts.max(axis=0)
                if x0 == 0 or y0 == 0 or x1 == w - 1 or y1 == h - 1:
                    continue
            a = signed_area(pts)
            if a < 0:
                pts = pts[::-1]
            # filled area incl. the boundary pixels themselves (a 1-px line still has area)
            regions.append(Region(int(c), np.ascontiguousarray(pts, dtype=np.int32), abs(a) + 0.5 * len(pts) + 1))
    regions.sort(key=lambda r: -r.area)  # stable: ties keep class order
    return canvas, regions


def simplify(contour: np.ndarray, xi: float) -> np.ndarray:
    """Douglas-Peucker line simplification of a closed contour with tolerance ``xi`` pixels."""
    if xi <= 0 or len(contour) <= 2:
        return contour
    out = cv2.approxPolyDP(contour.reshape(-1, 1, 2), float(xi), True).reshape(-1, 2)
    return out


def rasterize(
    shape: tuple[int, int], canvas: int, polygons: list[tuple[int, np.ndarray]], out: np.ndarray | None = None
) -> np.ndarray:
    """R(C): paint ``(label, vertices in 1/16 px, int32 (N, 2))`` in order onto a canvas-filled map."""
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    out.fill(canvas)
    for label, pts in polygons:
        if len(pts) == 0:
            continue
        # one call per polygon: the draw order is the occlusion order
        cv2.fillPoly(out, [pts.reshape(-1, 1, 2)], int(label), lineType=cv2.LINE_8, shift=SUBPIXEL_SHIFT)
    return out
