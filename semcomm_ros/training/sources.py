"""Where training clips come from: the procedural tabletop scenes, or the user's own recordings.

``load_clips`` is what every stage calls; it returns a ``ClipSet`` either way, so recorded clips
are cut, cached and sampled exactly like the procedural ones.
"""

from __future__ import annotations

from .classes import class_names  # noqa: F401 -- its home before classes.py; callers still import it from here
from .config import DataConfig
from .data import ClipSet, build_clipset
from .recorded import build_recorded_clipset


def load_clips(data: DataConfig, degradation: str = "codec", progress: bool = True) -> ClipSet:
    if not data.source:
        return build_clipset(data, degradation=degradation, progress=progress)
    return build_recorded_clipset(data, degradation=degradation, progress=progress)
