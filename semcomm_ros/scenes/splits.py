"""Which generated scenes are for what: every seed range in one place.

A generated clip is a pure function of its seed (``tabletop_clip``), so these ranges are the
train / tuning / evaluation splits of everything in this package. They do not overlap
(``split_of`` names a seed's split; ``test_seed_splits_are_disjoint`` checks them); seeds below
``CODEC_BENCH.start`` outside ``CODEC_FIT`` are for tests and examples.
"""

from __future__ import annotations

SPLITS: dict[str, range] = {
    # the semantic codec's entropy models (codec/semantic/paper.py, tracked.py) were fitted here
    "codec_fit": range(300, 320),
    # ``semcomm bench semantic`` / ``semcomm bench lowres`` clips (their --seed)
    "codec_bench": range(1_000, 100_000),
    # the synthesizer's training clips (training DataConfig.first_seed onwards)
    "synth_train": range(100_000, 1_000_000),
    # the segmenter's training and validation images (``semcomm seg-train``)
    "seg_train": range(1_000_000, 2_000_000),
    "seg_val": range(2_000_000, 3_000_000),
    # held out from the segmenter: ``semcomm bench seg`` and the segmentation tests
    "seg_heldout": range(9_000_000, 9_500_000),
    # ``semcomm demo --seed N`` shows clip EVAL_SEED0 + N; demo clips 5 and 6 are the tuning
    # clips the shipped model's operating point was chosen on (MODEL_CARD.md)
    "demo": range(9_500_000, 9_501_000),
    # ``semcomm eval`` (Table II): past the demo's clips
    "table": range(9_501_000, 9_600_000),
}

CODEC_FIT = SPLITS["codec_fit"]
CODEC_BENCH = SPLITS["codec_bench"]
SYNTH_TRAIN_SEED0 = SPLITS["synth_train"].start
SEG_TRAIN_SEED0 = SPLITS["seg_train"].start
SEG_VAL_SEED0 = SPLITS["seg_val"].start
SEG_HELDOUT_SEED0 = SPLITS["seg_heldout"].start
EVAL_SEED0 = SPLITS["demo"].start
TUNING_SEEDS = range(EVAL_SEED0 + 5, EVAL_SEED0 + 7)
TABLE_SEED0 = SPLITS["table"].start


def split_of(seed: int) -> str | None:
    """The split a scene seed belongs to, None for none (tests and examples)."""
    return next((name for name, seeds in SPLITS.items() if seed in seeds), None)
