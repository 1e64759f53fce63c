"""YCB-style tabletop videos with exact labels (the paper's YCB-Sim, Fig. 5, in 2-D).

A top-down camera looks at a table. Objects are dropped in (they grow while they fall, then land),
get pushed by random forces, slide with friction, spin, bump into each other (disc-approximated
rigid-body collisions) and overlap at their corners, so the label map has translations, rotations,
occlusions, appearing instances and holes (the bowl). The camera adds a lighting gradient, a small
per-frame gain flicker and sensor noise. Rendering is OpenCV polygon filling, so 512x512 frames
come out in a few milliseconds each.

Everything random comes from one ``numpy.random.Generator`` seeded by ``seed``: a clip is a pure
function of ``(seed, frames, width, height, options)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import cv2
import numpy as np

from .classes import CLASS_IDS, CLASS_NAMES
from .objects import collision_radius, extent, object_parts

OBJECT_CLASSES: tuple[str, ...] = CLASS_NAMES[1:]
TABLE_STYLES: tuple[str, ...] = ("wood", "cloth", "plain", "checker")

_SHIFT = 3  # fillPoly sub-pixel bits: positions move smoothly, not in whole-pixel jumps
_ONE = 1 << _SHIFT
_FALL_FRAMES = 6  # 0.6 s at 10 fps


@dataclass
class _Obj:
    cls: int
    parts: list  # [(polys_cm, rgb, in_label)]
    r_col: float  # px
    r_ext: float  # px
    spawn: int  # frame at which it starts falling
    pos: np.ndarray
    theta: float
    vel: np.ndarray = field(default_factory=lambda: np.zeros(2))
    omega: float = 0.0
    landed_at: int | None = None


def _lowfreq(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth noise in [-1, 1]: a few random values upsampled bicubically."""
    small = rng.uniform(-1.0, 1.0, (max(2, cells), max(2, cells))).astype(np.float32)
    return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), -1.0, 1.0)


def _hsv_colour(rng: np.random.Generator, h: tuple, s: tuple, v: tuple) -> np.ndarray:
    hsv = np.array([[[rng.uniform(*h), rng.uniform(*s), rng.uniform(*v)]]], np.float32)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] * 255.0


def make_table(rng: np.random.Generator, h: int, w: int, style: str | None = None) -> np.ndarray:
    """A table texture (float32 HxWx3, 0..255) from one of four families."""
    style = style or TABLE_STYLES[int(rng.integers(len(TABLE_STYLES)))]
    if style not in TABLE_STYLES:
        raise ValueError(f"unknown table style {style!r}; known: {TABLE_STYLES}")
    s = min(h, w) / 512.0
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    mottle = _lowfreq(rng, h, w, 6)
    if style == "wood":
        base = _hsv_colour(rng, (18, 38), (0.35, 0.65), (0.45, 0.85))
        a = rng.uniform(0, np.pi)
        u = x * np.cos(a) + y * np.sin(a)
        period = rng.uniform(10, 22) * s
        warp = _lowfreq(rng, h, w, 5) * rng.uniform(2.0, 5.0)
        grain = np.sin(2 * np.pi * u / period + warp) * 0.5 + 0.5
        fine = _lowfreq(rng, h, w, int(40 * s) + 2)
        k = 0.82 + 0.16 * grain**3 + 0.04 * fine + 0.05 * mottle
    elif style == "cloth":
        base = _hsv_colour(rng, (0, 360), (0.05, 0.35), (0.3, 0.8))
        p = max(2.0, rng.uniform(3.0, 6.0) * s)
        weave = np.sign(np.sin(2 * np.pi * x / p)) * np.sign(np.sin(2 * np.pi * y / p))
        k = 0.93 + 0.05 * weave + 0.06 * mottle
    elif style == "plain":
        base = _hsv_colour(rng, (0, 360), (0.0, 0.25), (0.45, 0.95))
        k = 0.97 + 0.05 * mottle
    else:  # checker
        c1 = _hsv_colour(rng, (0, 360), (0.0, 0.3), (0.55, 0.95))
        c2 = c1 * rng.uniform(0.55, 0.8)
        cell = rng.uniform(24, 80) * s
        a = rng.uniform(0, np.pi / 2)
        u = x * np.cos(a) + y * np.sin(a)
        v = -x * np.sin(a) + y * np.cos(a)
        odd = ((np.floor(u / cell) + np.floor(v / cell)) % 2)[..., None]
        k = (0.97 + 0.04 * mottle)[..., None]
        return (np.where(odd > 0, c2, c1) * k).astype(np.float32)
    return (base[None, None, :] * k[..., None]).astype(np.float32)


def make_lighting(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicative lighting (HxWx1: linear gradient + vignette) and the light's direction."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    d = np.array([np.cos(a), np.sin(a)], np.float32)
    u = ((x - w / 2) * d[0] + (y - h / 2) * d[1]) / (0.5 * max(h, w))
    r2 = ((x - w / 2) ** 2 + (y - h / 2) ** 2) / (0.5 * max(h, w)) ** 2
    gain = rng.uniform(0.85, 1.1)
    light = gain * (1.0 + rng.uniform(0.05, 0.2) * u - rng.uniform(0.0, 0.15) * r2)
    tint = rng.uniform(0.94, 1.06, 3).astype(np.float32)  # warm/cold light
    return (light[..., None] * tint).astype(np.float32), d


class TabletopScene:
    """One scene; ``step()`` advances the physics by one frame, ``render()`` draws it.

    Options (all keyword): ``n_objects`` (int, or None for 3..8 with mean about 5),
    ``classes`` (names or ids to draw from; default all), ``table`` (one of TABLE_STYLES or None),
    ``noise`` (sensor noise sigma in grey levels, None = random 1..4), ``push`` (scale of the
    random forces, default 1.0), ``fps`` (default 10; the physics is tuned for 10 and scales).
    """

    def __init__(
        self,
        seed: int,
        frames: int = 100,
        width: int = 512,
        height: int = 512,
        *,
        n_objects: int | None = None,
        classes=None,
        table: str | None = None,
        noise: float | None = None,
        push: float = 1.0,
        fps: float = 10.0,
    ):
        if int(width) < 16 or int(height) < 16:
            raise ValueError(f"frame size must be at least 16x16, got {width}x{height}")
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.w, self.h = int(width), int(height)
        self.rng = np.random.default_rng(seed)
        self.frame = 0
        self.dt = 10.0 / float(fps)  # physics time unit = one frame at 10 fps
        self.push = float(push)
        rng = self.rng
        self.ppc = 7.0 * min(self.w, self.h) / 512.0  # pixels per cm: the table view is ~73 cm across

        pool = [self._class_id(c) for c in (classes if classes is not None else OBJECT_CLASSES)]
        if not pool:
            raise ValueError("classes must name at least one object class")
        if n_objects is None:
            n = int(rng.choice([3, 4, 5, 6, 7, 8], p=[0.15, 0.2, 0.25, 0.2, 0.12, 0.08]))
        else:
            n = int(n_objects)
            if n < 0:
                raise ValueError(f"n_objects must be >= 0, got {n}")
        picks = rng.choice(pool, size=n, replace=n > len(pool))

        self.table = make_table(rng, self.h, self.w, table)
        self.light, self.light_dir = make_lighting(rng, self.h, self.w)
        self.table_u8 = np.clip(self.table, 0, 255).astype(np.uint8)
        self.shadow_u8 = np.clip(self.table * rng.uniform(0.55, 0.7), 0, 255).astype(np.uint8)
        self.noise = float(rng.uniform(1.0, 4.0) if noise is None else noise)

        # Half the objects are on (or dropping onto) the table at the start; the others drop in
        # during the first 60 % of the clip.
        late = max(1, int(0.6 * frames))
        self.objs: list[_Obj] = []
        for i, c in enumerate(picks):
            parts = object_parts(CLASS_NAMES[int(c)])
            jitter = rng.uniform(0.9, 1.08) * rng.uniform(0.96, 1.04, 3)
            parts = [(polys, tuple(np.clip(np.asarray(rgb) * jitter, 0, 255)), lab) for polys, rgb, lab in parts]
            r_col = collision_radius(parts) * self.ppc
            r_ext = extent(parts) * self.ppc
            if i < max(1, n // 2):
                spawn = -int(rng.integers(_FALL_FRAMES, 3 * _FALL_FRAMES)) if rng.random() < 0.7 else 0
            else:
                spawn = int(rng.integers(0, late))
            m = np.array([0.12 * self.w + 0.3 * r_ext, 0.12 * self.h + 0.3 * r_ext])
            pos = rng.uniform(m, np.array([self.w, self.h]) - m)
            self.objs.append(_Obj(int(c), parts, r_col, r_ext, spawn, pos, float(rng.uniform(0, 2 * np.pi))))
        # objects that were dropped "before" frame 0 have already settled
        for t in range(-3 * _FALL_FRAMES, 1):
            self._physics(t)

    @staticmethod
    def _class_id(c) -> int:
        if isinstance(c, str):
            if c not in CLASS_IDS or c == "table":
                raise ValueError(f"unknown object class {c!r}; known: {list(OBJECT_CLASSES)}")
            return CLASS_IDS[c]
        c = int(c)
        if not 1 <= c < len(CLASS_NAMES):
            raise ValueError(f"object class id must be in 1..{len(CLASS_NAMES) - 1}, got {c}")
        return c

    # ---------------------------------------------------------------- physics
    def _fall(self, o: _Obj, t: float) -> float | None:
        """Fall progress in [0, 1) while falling, None when landed, -1 when not yet there."""
        if t < o.spawn:
            return -1.0
        p = (t - o.spawn) / _FALL_FRAMES
        return p if p < 1.0 else None

    def _physics(self, t: int) -> None:
        rng, dt = self.rng, self.dt
        ground = []
        for o in self.objs:
            state = self._fall(o, t)
            if state is None:
                if o.landed_at is None:
                    o.landed_at = t
                    o.vel = rng.normal(0, 1.5, 2) * self.ppc / 6.0
                    o.omega = rng.normal(0, 0.05)
                ground.append(o)
        s = self.ppc / 6.0
        for o in ground:
            if rng.random() < 0.06 * dt * self.push:
                a = rng.uniform(0, 2 * np.pi)
                o.vel = o.vel + rng.uniform(3.0, 10.0) * s * np.array([np.cos(a), np.sin(a)]) * min(self.push, 3.0)
                o.omega += rng.normal(0, 0.08)
            o.pos = o.pos + o.vel * dt
            o.theta += o.omega * dt
            fr = 0.88**dt
            o.vel = o.vel * fr
            o.omega *= 0.85**dt
        # disc collisions between objects on the table
        for _ in range(2):
            for i in range(len(ground)):
                for j in range(i + 1, len(ground)):
                    a, b = ground[i], ground[j]
                    d = b.pos - a.pos
                    dist = float(np.hypot(*d))
                    lim = a.r_col + b.r_col
                    if dist >= lim:
                        continue
                    nrm = d / dist if dist > 1e-6 else np.array([1.0, 0.0])
                    corr = (lim - dist) / 2 * nrm
                    a.pos, b.pos = a.pos - corr, b.pos + corr
                    rel = b.vel - a.vel
                    vn = float(rel @ nrm)
                    if vn < 0:
                        imp = -(1 + 0.5) * vn / 2 * nrm
                        a.vel, b.vel = a.vel - imp, b.vel + imp
                        vt = float(rel[0] * -nrm[1] + rel[1] * nrm[0])
                        a.omega -= 0.02 * vt / max(s, 1e-6)
                        b.omega += 0.02 * vt / max(s, 1e-6)
        # table edges: bounce back so that objects stay (mostly) in view
        for o in ground:
            m = 0.6 * o.r_col
            for k, size in ((0, self.w), (1, self.h)):
                if o.pos[k] < m and o.vel[k] < 0 or o.pos[k] > size - m and o.vel[k] > 0:
                    o.vel[k] = -0.6 * o.vel[k]
                o.pos[k] = min(max(o.pos[k], m), size - m)

    def step(self) -> None:
        self.frame += 1
        self._physics(self.frame)

    # -------------------------------------------------------------- rendering
    def _placed(self) -> list[tuple[_Obj, float, float]]:
        """Visible objects in draw order (landed ones by landing time, falling ones on top),
        with their scale and height (0 = on the table)."""
        out = []
        for o in self.objs:
            st = self._fall(o, self.frame)
            if st is not None and st < 0:
                continue
            if st is None:
                out.append((o, 1.0, 0.0, o.landed_at))
            else:
                out.append((o, 0.35 + 0.65 * st, 1.0 - st, 10**9 + o.spawn))
        out.sort(key=lambda t: t[3])
        return [(o, sc, z) for o, sc, z, _ in out]

    def _polys(self, o: _Obj, scale: float, offset=(0.0, 0.0)) -> list[list[np.ndarray]]:
        c, s = np.cos(o.theta), np.sin(o.theta)
        rot = np.array([[c, s], [-s, c]]) * (scale * self.ppc)
        base = o.pos + np.asarray(offset)
        return [[np.round((p @ rot + base) * _ONE).astype(np.int32) for p in polys] for polys, _, _ in o.parts]

    def render(self, instances: bool = False):
        h, w = self.h, self.w
        labels = np.zeros((h, w), np.uint8)
        inst = np.zeros((h, w), np.uint8)
        shadow = np.zeros((h, w), np.uint8)
        rgb = self.table_u8.copy()
        placed = self._placed()
        drawn = []
        for o, scale, z in placed:
            polys = self._polys(o, scale)
            # the shadow falls away from the light, further while the object is still high up
            off = -self.light_dir * (3.0 + 25.0 * z) * self.ppc / 6.0
            spolys = self._polys(o, scale, off)
            for (_, _, lab), sp in zip(o.parts, spolys):
                if lab:
                    cv2.fillPoly(shadow, sp, 1, cv2.LINE_8, _SHIFT)
            drawn.append((o, polys))
        np.copyto(rgb, self.shadow_u8, where=shadow[..., None].astype(bool))
        for o, polys in drawn:
            iid = self.objs.index(o) + 1
            for (_, colour, lab), pp in zip(o.parts, polys):
                cv2.fillPoly(rgb, pp, colour, cv2.LINE_AA, _SHIFT)
                if lab:
                    cv2.fillPoly(labels, pp, int(o.cls), cv2.LINE_8, _SHIFT)
                    cv2.fillPoly(inst, pp, iid, cv2.LINE_8, _SHIFT)
        gain = 1.0 + self.rng.normal(0, 0.012)
        img = rgb.astype(np.float32)
        img *= self.light * np.float32(gain)
        img += self.rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(self.noise)
        np.clip(img, 0, 255, out=img)
        out = img.astype(np.uint8)
        return (out, labels, inst) if instances else (out, labels)


def tabletop_clip(
    seed: int, frames: int, width: int = 512, height: int = 512, *, instances: bool = False, **options
) -> Iterator[tuple[np.ndarray, ...]]:
    """Yield ``frames`` frames of one generated tabletop video at 10 fps.

    Each item is ``(rgb, labels)``: uint8 HxWx3 and uint8 HxW class map (0 = table, ids index
    ``CLASS_NAMES``). With ``instances=True`` each item is ``(rgb, labels, instance_ids)``, where
    ``instance_ids`` is uint8 HxW, 0 = table and k = the k-th object of the scene (stable over the
    clip). Deterministic per ``(seed, frames, width, height, options)``; options are those of
    ``TabletopScene``.
    """
    scene = TabletopScene(seed, frames, width, height, **options)
    for i in range(int(frames)):
        if i:
            scene.step()
        yield scene.render(instances=instances)
