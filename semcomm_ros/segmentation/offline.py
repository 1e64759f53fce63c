"""Keep ultralytics off the network.

By default ultralytics downloads fonts (plots), checkpoints (AMP check, ``YOLO("yolo11n-seg.pt")``),
checks PyPI for updates and sends telemetry. Here there is no network and nothing may reach it, so
every entry point into ultralytics goes through :func:`import_ultralytics`, which first sets
``YOLO_OFFLINE=1`` and a settings directory inside the repository (or the user cache when the
package is installed read-only), turns telemetry and AutoUpdate (pip-installing a requirement it
finds missing, e.g. onnxslim when exporting) off, and replaces ``check_font`` (called by every
dataset check, plots or not, and which probes github.com for Arial.ttf) by a local look-up that
falls back to matplotlib's bundled DejaVu Sans. Training also passes ``amp=False``
and ``plots=False`` (see ``train.py``).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def config_dir() -> Path:
    if os.environ.get("YOLO_CONFIG_DIR"):
        return Path(os.environ["YOLO_CONFIG_DIR"])
    for cand in (_REPO / ".cache" / "ultralytics", Path.home() / ".cache" / "semcomm_ros" / "ultralytics"):
        try:
            cand.mkdir(parents=True, exist_ok=True)
            if os.access(cand, os.W_OK):
                return cand
        except OSError:
            continue
    raise RuntimeError("no writable directory for the ultralytics settings (set YOLO_CONFIG_DIR)")


def import_ultralytics():
    """Import ultralytics configured for offline use and return the module."""
    os.environ["YOLO_OFFLINE"] = "1"
    # a requirement it finds missing (onnxslim, onnxruntime-gpu, ...) it would otherwise pip-install
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir()))
    Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_VERBOSE", "False")
    import ultralytics
    from ultralytics.utils import SETTINGS

    if SETTINGS.get("sync", False):
        SETTINGS.update({"sync": False})
    checks = importlib.import_module("ultralytics.utils.checks")
    checks.AUTOINSTALL = False  # the variable is read once, at import: ultralytics may have been imported already
    _patch_check_font()
    return ultralytics


def local_font(font: str = "Arial.ttf"):
    """``check_font`` without the download: the named font if it is on disk, else DejaVu Sans."""
    from matplotlib import font_manager
    from ultralytics.utils import USER_CONFIG_DIR

    name = Path(font).name
    if (USER_CONFIG_DIR / name).exists():
        return USER_CONFIG_DIR / name
    matches = [f.fname for f in font_manager.fontManager.ttflist if name in f.fname and os.path.exists(f.fname)]
    if matches:
        return matches[0]
    return font_manager.findfont("DejaVu Sans", fallback_to_default=True)


def _patch_check_font() -> None:
    for mod in ("ultralytics.utils.checks", "ultralytics.data.utils", "ultralytics.utils.plotting"):
        m = importlib.import_module(mod)
        if getattr(m, "check_font", None) is not local_font:
            m.check_font = local_font
