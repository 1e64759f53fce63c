"""Top-down footprints and printed appearance of the YCB-like objects.

Every object is a list of parts ``(polygons, rgb, in_label)`` in its own frame (centimetres, x
along its long axis). A part's polygons are filled together with OpenCV's even-odd rule, which is
how the bowl gets the hole in its label region (outer and inner circle in one part). The label
region of an object is the union of its ``in_label`` parts; the other parts are print (logos,
bands, rims) that always lies inside it. Parts are painted in order, later ones on top.
"""

from __future__ import annotations

import numpy as np

from .classes import CLASS_IDS

Part = tuple[list[np.ndarray], tuple[float, float, float], bool]


def _rect(w: float, h: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    return np.array(
        [[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]],
        np.float64,
    )


def _ellipse(rx: float, ry: float, cx: float = 0.0, cy: float = 0.0, n: int = 36) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _circle(r: float, cx: float = 0.0, cy: float = 0.0, n: int = 36) -> np.ndarray:
    return _ellipse(r, r, cx, cy, n)


def _rounded_rect(w: float, h: float, r: float, cx: float = 0.0, cy: float = 0.0, n: int = 6) -> np.ndarray:
    pts = []
    corners = [(w / 2 - r, h / 2 - r, 0.0), (-w / 2 + r, h / 2 - r, 0.5), (-w / 2 + r, -h / 2 + r, 1.0),
               (w / 2 - r, -h / 2 + r, 1.5)]
    for x, y, a0 in corners:
        t = np.linspace(a0 * np.pi, (a0 + 0.5) * np.pi, n)
        pts.append(np.stack([cx + x + r * np.cos(t), cy + y + r * np.sin(t)], 1))
    return np.concatenate(pts, 0)


def _crescent(length: float, width: float, bend: float = 0.9, n: int = 24) -> np.ndarray:
    """A banana: a bent band that tapers towards both ends."""
    radius = length / (2 * bend)
    t = np.linspace(-1.0, 1.0, n)
    ang = t * bend
    centre = np.stack([radius * np.sin(ang), radius * (1 - np.cos(ang)) - radius * (1 - np.cos(bend)) / 2], 1)
    normal = np.stack([-np.sin(ang), np.cos(ang)], 1)
    half = width / 2 * (np.sqrt(np.clip(1 - t**2, 0, 1)) * 0.85 + 0.15)
    return np.concatenate([centre + normal * half[:, None], (centre - normal * half[:, None])[::-1]], 0)


def _shade(rgb, k: float):
    return tuple(float(min(255.0, c * k)) for c in rgb)


def _box(w, h, base, prints) -> list[Part]:
    """A box seen from above: darker bevel, face, then its print."""
    inset = min(w, h) * 0.07
    parts: list[Part] = [([_rect(w, h)], _shade(base, 0.72), True),
                         ([_rect(w - 2 * inset, h - 2 * inset)], base, False)]
    return parts + [(p, c, False) for p, c in prints]


def _can(r, rim, lid, extra=()) -> list[Part]:
    parts: list[Part] = [([_circle(r)], _shade(rim, 0.8), True), ([_circle(r * 0.9)], rim, False),
                         ([_circle(r * 0.75)], lid, False)]
    return parts + [(p, c, False) for p, c in extra]


def object_parts(name: str) -> list[Part]:
    """The parts of one object class, in centimetres."""
    if name == "cracker_box":
        base = (214, 62, 28)
        return _box(19.0, 14.0, base, [
            ([_rect(12.0, 4.0, -1.0, -3.2)], (246, 236, 212)),
            ([_ellipse(2.4, 1.6, 5.2, 3.0)], (250, 205, 40)),
            ([_rect(9.0, 1.0, -2.0, 2.6)], (120, 20, 10)),
        ])
    if name == "sugar_box":
        base = (240, 230, 196)
        return _box(17.0, 9.0, base, [
            ([_rect(17.0 * 0.86, 2.6, 0.0, 0.4)], (40, 92, 190)),
            ([_circle(1.4, 5.0, -2.4)], (240, 190, 30)),
        ])
    if name == "tomato_soup_can":
        return _can(3.4, (226, 226, 222), (188, 22, 36), [([_ellipse(1.2, 0.7, -0.8, -0.9)], (232, 120, 120))])
    if name == "mustard_bottle":
        yellow = (246, 206, 12)
        return [
            ([_rounded_rect(13.0, 6.4, 2.2, -1.5, 0.0)], _shade(yellow, 0.8), True),
            ([_rect(2.4, 3.0, 5.8, 0.0)], _shade(yellow, 0.85), True),
            ([_circle(1.7, 7.6, 0.0, n=20)], (205, 32, 30), True),
            ([_rounded_rect(12.0, 5.4, 1.8, -1.5, 0.0)], yellow, False),
            ([_rect(4.5, 5.4, -2.0, 0.0)], (200, 40, 30), False),
        ]
    if name == "banana":
        yellow = (236, 214, 84)
        body = _crescent(19.0, 4.0)
        half = len(body) // 2
        return [
            ([body], _shade(yellow, 0.85), True),
            ([_crescent(17.0, 2.6)], yellow, False),
            ([_circle(0.7, *((body[0] + body[-1]) / 2), n=12)], (96, 72, 28), False),
            ([_circle(0.7, *((body[half - 1] + body[half]) / 2), n=12)], (96, 72, 28), False),
        ]
    if name == "mug":
        purple = (150, 60, 196)
        return [
            ([_rect(3.4, 1.8, 5.0, 0.0)], _shade(purple, 0.8), True),
            ([_circle(4.2)], purple, True),
            ([_circle(3.5)], (70, 28, 96), False),
            ([_ellipse(1.4, 0.8, -1.2, -1.3)], (110, 50, 140), False),
        ]
    if name == "bowl":
        teal = (38, 166, 146)
        return [
            ([_circle(8.0, n=48), _circle(5.2, n=48)], teal, True),
            ([_circle(6.2, n=48), _circle(5.2, n=48)], _shade(teal, 1.25), False),
            ([_circle(8.0, n=48), _circle(7.4, n=48)], _shade(teal, 0.75), False),
        ]
    if name == "tuna_can":
        silver = (176, 182, 192)
        return _can(4.3, silver, (198, 204, 214), [
            ([_circle(2.6), _circle(2.2)], (140, 146, 158)),
            ([_rect(1.6, 0.8, 2.0, 0.0)], (120, 126, 136)),
        ])
    if name == "pudding_box":
        base = (126, 72, 36)
        return _box(11.0, 9.0, base, [
            ([_rect(11.0 * 0.86, 2.4, 0.0, 1.6)], (236, 230, 220)),
            ([_circle(1.2, -2.5, -2.0)], (205, 40, 40)),
        ])
    if name == "gelatin_box":
        base = (226, 84, 166)
        return _box(9.0, 7.4, base, [
            ([_rect(5.0, 2.0, 0.0, -1.2)], (250, 248, 250)),
            ([_rect(6.0, 0.8, 0.0, 1.6)], (120, 30, 90)),
        ])
    if name == "apple":
        green = (118, 196, 40)
        return [
            ([_circle(3.9, n=32)], _shade(green, 0.8), True),
            ([_circle(3.4, n=32)], green, False),
            ([_ellipse(1.6, 1.1, -1.1, -1.0, n=16)], (178, 220, 80), False),
            ([_rect(0.9, 0.4, 0.4, 0.0)], (90, 60, 20), False),
        ]
    if name == "potted_meat_can":
        navy = (36, 60, 168)
        return [
            ([_rounded_rect(10.0, 5.6, 1.4)], _shade(navy, 0.75), True),
            ([_rounded_rect(9.2, 4.8, 1.1)], navy, False),
            ([_rect(5.6, 2.6)], (232, 200, 60), False),
        ]
    raise ValueError(f"unknown object class {name!r}; known: {sorted(k for k in CLASS_IDS if k != 'table')}")


def collision_radius(parts: list[Part]) -> float:
    """Radius (cm) of the disc the physics uses: area-equivalent of the label region, shrunk a
    little so that neighbours can overlap at their corners, which gives partial occlusions."""
    import cv2

    area = 0.0
    for polys, _, in_label in parts:
        if in_label:
            a = abs(cv2.contourArea(polys[0].astype(np.float32)))
            for hole in polys[1:]:
                a -= abs(cv2.contourArea(hole.astype(np.float32)))
            area += a
    return 0.85 * float(np.sqrt(area / np.pi))


def extent(parts: list[Part]) -> float:
    """Largest distance (cm) of any point of the object from its origin."""
    return float(max(np.hypot(p[:, 0], p[:, 1]).max() for polys, _, _ in parts for p in polys))
