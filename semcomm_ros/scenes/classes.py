"""The one class list of the tabletop world (codec ids, segmentation ids, generator ids).

Index 0 is the table (background). The objects are modelled on YCB objects as the paper's YCB-Sim
uses them (Fig. 5), each with a distinct footprint and base colour so that a small segmenter and a
small diffusion model can tell them apart even from a blurry 64x64 view.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "table",  # 0: background
    "cracker_box",  # 1
    "sugar_box",  # 2
    "tomato_soup_can",  # 3
    "mustard_bottle",  # 4
    "banana",  # 5
    "mug",  # 6
    "bowl",  # 7
    "tuna_can",  # 8
    "pudding_box",  # 9
    "gelatin_box",  # 10
    "apple",  # 11
    "potted_meat_can",  # 12
)

NUM_CLASSES: int = len(CLASS_NAMES)
CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

# Display palette for label maps (visualisation only; not the rendered object colours).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (230, 90, 30),
    (240, 230, 200),
    (180, 20, 40),
    (250, 210, 0),
    (200, 220, 90),
    (150, 60, 200),
    (40, 170, 150),
    (160, 165, 175),
    (120, 70, 35),
    (230, 80, 170),
    (110, 200, 40),
    (30, 60, 170),
)


def colorize(labels):
    """RGB visualisation of a label map (uint8 HxW -> uint8 HxWx3)."""
    import numpy as np

    pal = np.zeros((256, 3), np.uint8)
    pal[: len(PALETTE)] = np.asarray(PALETTE, np.uint8)
    return pal[np.asarray(labels, np.uint8)]
