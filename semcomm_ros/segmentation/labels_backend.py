"""``labels`` backend: ground-truth label images, as a simulator (YCB-Sim) publishes them.

The labels come from a file, a directory of label images (played in name order, one per call),
or are pushed in by a topic subscriber with ``feed()``. ``id_map`` translates the simulator's
ids to codec ids when they differ; ids the map does not know are an error, never passed through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

from ..scenes import CLASS_NAMES
from .base import Segmenter, check_rgb

_IMAGE_EXT = (".png", ".pgm", ".tif", ".tiff", ".bmp", ".npy")


def _read_labels(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    else:
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ValueError(f"could not read label image {path}")
    return arr


class LabelsSegmenter(Segmenter):
    """Returns the current ground-truth label map instead of running a model.

    ``source``: None (labels come from ``feed()``, e.g. a simulator topic callback), a label image
    file (always that map), or a directory (its label images in name order, one per call;
    ``loop=True`` starts over at the end). ``id_map``: ``{simulator id: codec class name or id}``;
    identity when None.
    """

    backend = "labels"

    def __init__(self, source: str | Path | None = None, *, id_map: Mapping[int, str | int] | None = None,
                 loop: bool = False, class_names=CLASS_NAMES):
        self.class_names = tuple(class_names)
        self._files: list[Path] = []
        self._index = 0
        self.loop = bool(loop)
        self._current: np.ndarray | None = None
        self._lut = self._build_lut(id_map)
        if source is not None:
            src = Path(source)
            if src.is_dir():
                self._files = sorted(p for p in src.iterdir() if p.suffix.lower() in _IMAGE_EXT)
                if not self._files:
                    raise ValueError(f"no label images ({', '.join(_IMAGE_EXT)}) in {src}")
            elif src.is_file():
                self._current = self._convert(_read_labels(src), str(src))
            else:
                raise ValueError(f"label source not found: {src}")

    def _build_lut(self, id_map) -> np.ndarray | None:
        if id_map is None:
            return None
        lut = np.full(256, -1, np.int16)
        for sim_id, dst in id_map.items():
            sid = int(sim_id)
            if not 0 <= sid < 256:
                raise ValueError(f"id_map: simulator id {sim_id} is outside 0..255")
            if isinstance(dst, str):
                if dst not in self.class_names:
                    raise ValueError(f"id_map maps {sim_id} to unknown codec class {dst!r}; "
                                     f"codec classes are {list(self.class_names)}")
                lut[sid] = self.class_names.index(dst)
            elif 0 <= int(dst) < len(self.class_names):
                lut[sid] = int(dst)
            else:
                raise ValueError(
                    f"id_map maps {sim_id} to {dst!r}, not a codec class id in 0..{len(self.class_names) - 1}")
        return lut

    def _convert(self, labels, where: str = "labels") -> np.ndarray:
        arr = np.asarray(labels)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[..., 0]
        if arr.ndim != 2:
            raise ValueError(f"{where}: a label map must be HxW, got shape {arr.shape}")
        if arr.dtype.kind not in "ui" or arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
            raise ValueError(f"{where}: label ids must be integers in 0..255, got dtype {arr.dtype}")
        arr = arr.astype(np.uint8)
        if self._lut is not None:
            mapped = self._lut[arr]
            bad = np.unique(arr[mapped < 0])
            if bad.size:
                raise ValueError(f"{where}: simulator ids {bad.tolist()} are not in id_map")
            return mapped.astype(np.uint8)
        if arr.max(initial=0) >= len(self.class_names):
            bad = np.unique(arr[arr >= len(self.class_names)]).tolist()
            raise ValueError(f"{where}: label ids {bad} are not codec classes (0..{len(self.class_names) - 1})")
        return arr

    def feed(self, labels) -> None:
        """Set the current ground-truth map (a simulator label topic's callback calls this)."""
        self._current = self._convert(labels)

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        rgb = check_rgb(rgb)
        if self._files:
            if self._index >= len(self._files):
                if not self.loop:
                    raise ValueError(f"label source exhausted after {len(self._files)} images")
                self._index = 0
            path = self._files[self._index]
            self._index += 1
            self._current = self._convert(_read_labels(path), str(path))
        if self._current is None:
            raise ValueError("no ground-truth labels yet: feed() a label map or give a source")
        if self._current.shape != rgb.shape[:2]:
            raise ValueError(f"label map is {self._current.shape[1]}x{self._current.shape[0]} but the image is "
                             f"{rgb.shape[1]}x{rgb.shape[0]}")
        return self._current.copy()
