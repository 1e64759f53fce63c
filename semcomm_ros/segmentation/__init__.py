"""Segmentation on the robot: camera image -> the class label map the semantic codec sends.

``load_segmenter()`` returns the shipped default (the tabletop YOLO11n-seg model, ``ultralytics``
backend); ``load_segmenter(backend="labels", source=...)`` or ``load_segmenter(backend=..., **options)``
another. Every segmenter is called as ``seg(rgb) -> labels`` (uint8 HxWx3 RGB -> uint8 HxW, values
index ``seg.class_names``: the config's top-level ``classes:`` list when it has one -- a robot's own
class list, the same file ``semcomm train --classes`` reads -- else ``semcomm_ros.scenes.CLASS_NAMES``).
Backend settings and the model-class -> codec-class map live in ``config/segmentation.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from .base import ClassMap, Segmenter, check_rgb, merge_masks
from .labels_backend import LabelsSegmenter
from .ultralytics_backend import UltralyticsSegmenter

PACKAGE_DIR = Path(__file__).resolve().parent


def _default_config() -> Path:
    """config/segmentation.yaml of the source tree, or of an installed ROS package's share/.

    Under colcon the Python sources and config/ are installed apart (site-packages vs
    share/semcomm_ros/config), so fall back to the ament prefixes.
    """
    import os

    candidates = [PACKAGE_DIR.parents[1] / "config" / "segmentation.yaml"]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / "semcomm_ros" / "config" / "segmentation.yaml")
    return next((c for c in candidates if c.is_file()), candidates[0])


DEFAULT_CONFIG = _default_config()
DEFAULT_WEIGHTS = PACKAGE_DIR / "weights" / "tabletop-yolo11n-seg.pt"
BACKENDS = ("ultralytics", "labels")


def load_config(path: str | Path | None = None) -> dict:
    """The segmentation YAML as a dict (``config/segmentation.yaml`` unless told otherwise)."""
    import yaml

    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise ValueError(f"segmentation config not found: {path}")
    cfg = yaml.safe_load(path.read_text()) or {}
    if not isinstance(cfg, dict) or not isinstance(cfg.get("backends", {}), dict):
        raise ValueError(f"{path}: expected a mapping with a 'backends' mapping")
    return cfg


def _path(key: str, settings: dict, options: dict) -> Path | None:
    """Paths from the config file are relative to the package; paths passed in, to the cwd."""
    value = settings.get(key)
    if value is None:
        return None
    p = Path(value)
    return p if key in options or p.is_absolute() else PACKAGE_DIR / p


def load_segmenter(backend: str | None = None, *, config: str | Path | dict | None = None, **options) -> Segmenter:
    """Build a segmenter from the config, with ``options`` overriding the backend's settings.

    ``backend``: "ultralytics" (YOLO-seg weights from a local path) or "labels" (ground-truth label
    images); None = the config's ``default_backend``. The ultralytics backend's ``runtime`` option is
    "onnx" (ONNX Runtime, the config's default) or "torch"; ``seg.runtime`` says which is in force.
    """
    cfg = config if isinstance(config, dict) else load_config(config)
    backend = backend or cfg.get("default_backend", "ultralytics")
    if backend not in BACKENDS:
        raise ValueError(f"unknown segmentation backend {backend!r}; known: {list(BACKENDS)}")
    settings = dict((cfg.get("backends") or {}).get(backend) or {})
    settings.update(options)
    names = cfg.get("classes")
    if names is not None:  # the robot's own classes (id = index, 0 = background)
        if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) and n for n in names):
            raise ValueError("segmentation config: `classes` must list at least 2 class names (id 0 = background)")
        if backend == "ultralytics" and "class_map" in settings and not isinstance(settings["class_map"], ClassMap):
            settings["class_map"] = ClassMap(settings["class_map"], settings.pop("ignore", ()), class_names=names)
        elif backend == "labels":
            settings.setdefault("class_names", tuple(names))
    if backend == "ultralytics":
        if "class_map" not in settings:
            raise ValueError("ultralytics backend needs a class_map (model class -> codec class)")
        weights = _path("weights", settings, options) or DEFAULT_WEIGHTS
        settings.pop("weights", None)
        return UltralyticsSegmenter(weights, **settings)
    source = _path("source", settings, options)
    settings.pop("source", None)
    return LabelsSegmenter(source, **settings)


__all__ = ["BACKENDS", "ClassMap", "Segmenter", "check_rgb", "load_config", "load_segmenter", "merge_masks"]
