"""The segmenter interface, the model-class -> codec-class mapping and mask merging."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterable, Mapping

import numpy as np

from ..scenes import CLASS_NAMES


def check_rgb(rgb) -> np.ndarray:
    """An HxWx3 uint8 image, or a ValueError that says what is wrong with it."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(rgb).__name__}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 (RGB), got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {rgb.dtype}")
    if rgb.shape[0] < 8 or rgb.shape[1] < 8:
        raise ValueError(f"image must be at least 8x8, got {rgb.shape[1]}x{rgb.shape[0]}")
    return rgb


class Segmenter(ABC):
    """Camera image -> class label map over a fixed class list.

    ``seg(rgb)`` takes an HxWx3 uint8 RGB image and returns an HxW uint8 map whose values index
    ``seg.class_names`` (0 = table/background), the ids the semantic codec sends.
    """

    class_names: tuple[str, ...] = CLASS_NAMES
    backend: str = ""

    @abstractmethod
    def segment(self, rgb: np.ndarray) -> np.ndarray: ...

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self.segment(rgb)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class ClassMap:
    """Maps the classes of a model (or simulator) onto the codec's class ids.

    ``mapping`` is ``{source class name: codec class name}`` (as in ``config/segmentation.yaml``);
    ``ignore`` lists source classes whose masks are dropped (they become background). A source
    class that is neither mapped nor ignored, or a target that is not a codec class, is an error.
    """

    def __init__(self, mapping: Mapping[str, str | int], ignore: Iterable[str] = (), class_names=CLASS_NAMES):
        self.class_names = tuple(class_names)
        self.ignore = frozenset(str(n) for n in ignore)
        self.mapping: dict[str, int] = {}
        if not isinstance(mapping, Mapping):
            raise ValueError(
                f"class_map must be a mapping of model class -> codec class, got {type(mapping).__name__}")
        for src, dst in mapping.items():
            self.mapping[str(src)] = self._codec_id(str(src), dst)

    def _codec_id(self, src: str, dst) -> int:
        if isinstance(dst, str):
            if dst not in self.class_names:
                raise ValueError(
                    f"class_map maps {src!r} to unknown codec class {dst!r}; "
                    f"codec classes are {list(self.class_names)}"
                )
            return self.class_names.index(dst)
        if isinstance(dst, (int, np.integer)) and not isinstance(dst, bool) and 0 <= int(dst) < len(self.class_names):
            return int(dst)
        raise ValueError(
            f"class_map maps {src!r} to {dst!r}, which is not a codec class name or an id in "
            f"0..{len(self.class_names) - 1}"
        )

    def lut(self, source_names: Mapping[int, str] | Iterable[str]) -> np.ndarray:
        """Lookup table source index -> codec id (-1 = ignored); rejects unknown source classes."""
        items = source_names.items() if isinstance(source_names, Mapping) else enumerate(source_names)
        items = [(int(i), str(n)) for i, n in items]
        size = max((i for i, _ in items), default=-1) + 1
        table = np.full(max(size, 1), -1, np.int16)
        unknown = [n for _, n in items if n not in self.mapping and n not in self.ignore]
        if unknown:
            raise ValueError(
                f"model class(es) {unknown} are not in the class_map (and not listed under ignore); "
                f"mapped: {sorted(self.mapping)}; codec classes: {list(self.class_names)}"
            )
        for i, n in items:
            table[i] = self.mapping.get(n, -1)
        return table


def merge_masks(
    masks: np.ndarray, classes: np.ndarray, scores: np.ndarray, lut: np.ndarray, order: str = "confidence"
) -> np.ndarray:
    """Paint instance masks (N x H x W bool) into one uint8 class map.

    Overlaps are resolved by the paint order: ``"confidence"`` paints the least confident mask
    first so the most confident one wins; ``"area"`` paints the largest first so that smaller
    objects (often lying on top of larger ones seen from above) stay visible. Ties keep the
    detection order. Masks of ignored classes (lut -1) are not painted.
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be N x H x W, got shape {masks.shape}")
    out = np.zeros(masks.shape[1:], np.uint8)
    if len(masks) == 0:
        return out
    if order == "confidence":
        key = np.asarray(scores, np.float64)
    elif order == "area":
        key = -masks.reshape(len(masks), -1).sum(1).astype(np.float64)
    else:
        raise ValueError(f"merge order must be 'confidence' or 'area', got {order!r}")
    for k in np.argsort(key, kind="stable"):
        c = int(classes[k])
        if not 0 <= c < len(lut):
            raise ValueError(f"detection class {c} is outside the model's class list (size {len(lut)})")
        cid = int(lut[c])
        if cid >= 0:
            out[masks[k]] = cid
    return out
