"""The training class list (id = index, 0 = background): the tabletop classes, or the user's own.

A leaf of the training package: ``sources`` (which picks the clips) and ``recorded`` (which cuts
them from recordings) both read it.
"""

from __future__ import annotations

from pathlib import Path

from semcomm_ros.scenes import CLASS_NAMES

from .config import DataConfig


def class_names(data: DataConfig) -> tuple[str, ...]:
    """The class list (id = index, 0 = background): the YAML ``data.classes`` or the tabletop classes."""
    if not data.classes:
        return tuple(CLASS_NAMES)
    return load_class_file(data.classes)


def load_class_file(path: str | Path) -> tuple[str, ...]:
    """``classes: [background, name1, ...]`` from a YAML file (a bare list is accepted too)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class list {path} does not exist (a YAML file with `classes: [background, ...]`)")
    doc = yaml.safe_load(path.read_text())
    names = doc.get("classes") if isinstance(doc, dict) else doc
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{path}: expected `classes:` as a list of at least 2 class names (id 0 = background)")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: class names must be unique, got {names}")
    return tuple(names)
