"""The user's cache folder for things semcomm_ros derives from a model (exported graphs).

``$SEMCOMM_CACHE_DIR``, else ``$XDG_CACHE_HOME/semcomm_ros``, else ``~/.cache/semcomm_ros``: outside
the package, so that a read-only install (a colcon ``install/``, a system package) still works.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The cache folder, or a subfolder of it (``cache_dir("yolo")``); nothing is created."""
    env = os.environ.get("SEMCOMM_CACHE_DIR")
    if env:
        base = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "semcomm_ros"
    return base.joinpath(*parts)
