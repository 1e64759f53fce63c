"""The three adapters of the synthesizer, one row each (paper IV-B): the one place that says which
paper symbol is which training stage, which part of a model directory and which ``SynthModel``
attribute. Everything that maps one of these names to another reads this table.

The training-facing API (``SynthModel.trainable_parameters``, ``freeze_all_but``, ``save_module``,
...) names an adapter by its paper symbol.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Adapter:
    symbol: str  # the paper's symbol: what the training-facing API takes
    title: str  # the paper's name of the module
    weights: str  # what it trains
    stage: str  # the ``semcomm train`` stage that trains it (lcm and dmd go on training phi)
    part: str  # its key in ``SynthConfig.parts`` (synthesizer.json)
    attribute: str  # the ``SynthModel`` attribute that holds it (None in a model without this part)

    @property
    def count_key(self) -> str:
        """Its key in ``SynthModel.parameter_counts()``: stored in training records, so kept as it was."""
        return f"{self.symbol}_{self.attribute}"


PSI = Adapter("psi", "Semantic Control", "ControlNet", "control", "controlnet", "controlnet")
OMEGA = Adapter("omega", "Restoration Adapter", "W'K, W'V, W'O", "restoration", "restoration_adapter", "restoration")
PHI = Adapter("phi", "Temporal Adapter", "MotionAdapter", "teacher", "temporal_adapter", "temporal")
ADAPTERS = (PSI, OMEGA, PHI)
SYMBOLS = tuple(a.symbol for a in ADAPTERS)


def adapter(symbol: str) -> Adapter:
    """The adapter with the paper symbol ``symbol`` ("psi", "omega" or "phi")."""
    for a in ADAPTERS:
        if a.symbol == symbol:
            return a
    raise ValueError(f"adapter must be one of {SYMBOLS}, got {symbol!r}")


def trained_in(stage: str) -> Adapter:
    """The adapter that the training stage ``stage`` ("control", "restoration", "teacher") trains."""
    for a in ADAPTERS:
        if a.stage == stage:
            return a
    raise ValueError(f"stage must be one of {tuple(a.stage for a in ADAPTERS)}, got {stage!r}")
