"""``ultralytics`` backend: YOLO instance segmentation from a local weights file, merged to classes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from .base import ClassMap, Segmenter, check_rgb, merge_masks
from .offline import import_ultralytics
from .onnx_runtime import RUNTIMES, RuntimeUnavailable, load_graph

log = logging.getLogger(__name__)


class UltralyticsSegmenter(Segmenter):
    """YOLO-seg weights (``.pt``, local path only) -> class label map.

    ``conf`` is the detection confidence threshold, ``iou`` the NMS threshold, ``imgsz`` the
    inference size (the image is letterboxed to it; masks come back at the input size),
    ``merge`` the paint order of overlapping masks (see ``merge_masks``), ``class_map`` maps the
    model's class names to codec classes (every model class must be mapped or ignored).

    ``runtime``: "onnx" runs the weights exported to ONNX in ONNX Runtime with ``threads`` intra-op
    threads (``onnx_runtime.py``: exported once per weights file into the user's cache), "torch" the
    ``.pt`` in PyTorch. "onnx" falls back to "torch", with one warning that says why, where
    onnxruntime is not importable, has no provider for ``device`` or the export fails;
    ``self.runtime`` is the one in force.
    """

    backend = "ultralytics"

    def __init__(
        self,
        weights: str | Path,
        class_map: Mapping[str, str] | ClassMap,
        *,
        ignore=(),
        conf: float = 0.25,
        iou: float = 0.7,
        imgsz: int = 320,
        merge: str = "confidence",
        max_det: int = 50,
        threads: int | None = 2,
        device: str = "cpu",
        runtime: str = "onnx",
    ):
        if not 0.0 <= float(conf) <= 1.0:
            raise ValueError(f"conf must be in [0, 1], got {conf}")
        if not 0.0 < float(iou) <= 1.0:
            raise ValueError(f"iou must be in (0, 1], got {iou}")
        if int(imgsz) < 32 or int(imgsz) % 32:
            raise ValueError(f"imgsz must be a multiple of 32 and >= 32, got {imgsz}")
        if merge not in ("confidence", "area"):
            raise ValueError(f"merge must be 'confidence' or 'area', got {merge!r}")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
        path = Path(weights)
        if not path.is_file():
            # a bare name like "yolo11n-seg.pt" would make ultralytics download it: never do that
            raise ValueError(f"segmentation weights not found: {path} (a local .pt file is required)")
        import_ultralytics()
        self.weights, self.model, self.graph, self.runtime = path, None, None, "torch"
        if runtime == "onnx":
            try:
                self.graph, self.runtime = load_graph(path, threads, str(device)), "onnx"
            except RuntimeUnavailable as exc:
                log.warning("segmentation runtime: torch instead of onnx: %s", exc)
        if self.graph is None:
            import torch  # deferred: heavy
            from ultralytics import YOLO  # deferred: import_ultralytics() configures ultralytics offline first

            if threads:
                torch.set_num_threads(int(threads))
            self.model = YOLO(str(path), task="segment")
        self.class_map = class_map if isinstance(class_map, ClassMap) else ClassMap(class_map, ignore)
        self.class_names = self.class_map.class_names
        self.model_names = dict(self.graph.names if self.graph is not None else self.model.names)
        self.lut = self.class_map.lut(self.model_names)  # raises on unmapped model classes
        self.conf, self.iou, self.imgsz = float(conf), float(iou), int(imgsz)
        self.merge, self.max_det, self.device = merge, int(max_det), device

    def detect(self, rgb: np.ndarray):
        """``(masks N x H x W bool, model classes N, scores N)`` at the input image size."""
        rgb = check_rgb(rgb)
        if self.graph is not None:
            return self.graph.predict(rgb, self.imgsz, self.conf, self.iou, self.max_det)
        res = self.model.predict(
            np.ascontiguousarray(rgb[..., ::-1]),  # ultralytics takes numpy images as BGR
            imgsz=self.imgsz,
            conf=self.conf,
            iou=self.iou,
            max_det=self.max_det,
            retina_masks=True,  # masks at the input resolution, not the 1/4-size prototype grid
            device=self.device,
            verbose=False,
        )[0]
        h, w = rgb.shape[:2]
        if res.masks is None or res.boxes is None or len(res.boxes) == 0:
            return np.zeros((0, h, w), bool), np.zeros(0, np.int64), np.zeros(0, np.float32)
        masks = res.masks.data.cpu().numpy() > 0.5
        if masks.shape[1:] != (h, w):
            import cv2

            masks = np.stack([cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
                              for m in masks])
        return masks, res.boxes.cls.cpu().numpy().astype(np.int64), res.boxes.conf.cpu().numpy().astype(np.float32)

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        masks, classes, scores = self.detect(rgb)
        return merge_masks(masks, classes, scores, self.lut, self.merge)
