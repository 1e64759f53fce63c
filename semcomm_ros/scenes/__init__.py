"""Generated YCB-style tabletop videos with exact class labels and instance ids.

``from semcomm_ros.scenes import tabletop_clip, CLASS_NAMES``:
``tabletop_clip(seed, frames, width=512, height=512)`` yields ``(rgb, labels)`` per frame
(uint8 HxWx3, uint8 HxW, 0 = table); ``tabletop_clip(..., instances=True)`` yields
``(rgb, labels, instance_ids)``. ``CLASS_NAMES`` is the one class list (index 0 = "table").
Which seeds are for training, tuning and evaluation: ``semcomm_ros.scenes.splits``.
"""

from .classes import CLASS_IDS, CLASS_NAMES, NUM_CLASSES, PALETTE, colorize
from .generator import OBJECT_CLASSES, TABLE_STYLES, TabletopScene, tabletop_clip

__all__ = [
    "CLASS_IDS",
    "CLASS_NAMES",
    "NUM_CLASSES",
    "OBJECT_CLASSES",
    "PALETTE",
    "TABLE_STYLES",
    "TabletopScene",
    "colorize",
    "tabletop_clip",
]
