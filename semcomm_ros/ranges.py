"""What each field of a config accepts, written once for the dataclass and for the ROS node.

Every config a node exposes (``SenderConfig``, ``ReceiverConfig``, ``SynthConfig``,
``LinkParams``) carries a ``RANGES`` table, field name -> :class:`Range`. The dataclass validates
itself against it (:func:`check_ranges`, from ``__post_init__``, so ``replace`` returns a
validated config), and the node declares a parameter of the same name from the same entry
(``nodes.common.declare``: the description, the range or the choices and read-only go into the
descriptor, so rclpy refuses an out-of-range value with the reason). Rules that tie fields
together (a size that must divide another, ...) stay in the config's own ``validate``.

Plain Python: the configs import this without ROS.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """What one field accepts: numbers within ``lo``..``hi`` (either end may be open-ended:
    None), or one of ``choices``; no bounds and no choices: any value of the field's type."""

    description: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple = ()
    #: ``lo`` itself excluded. A ROS descriptor cannot say so: the node's range includes ``lo`` and
    #: the config refuses it (with the reason) when the node validates the new config.
    lo_open: bool = False
    step: float | None = None  # values lo + k * step only (a ROS range's step)
    #: fixed once running: the node declares it read-only, a live reconfiguration refuses it
    read_only: bool = False

    @property
    def numeric(self) -> bool:
        return self.lo is not None or self.hi is not None

    @property
    def integer(self) -> bool:
        """Integer bounds make an integer field: a float is refused, the ROS parameter is an integer."""
        ends = [e for e in (self.lo, self.hi) if e is not None]
        return bool(ends) and all(isinstance(e, int) and not isinstance(e, bool) for e in ends)

    def text(self) -> str:
        if self.choices:
            return f"one of {self.choices}"
        if self.lo is not None and self.hi is not None:
            return f"within {'(' if self.lo_open else '['}{self.lo}, {self.hi}]"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo}"
        return f"<= {self.hi}" if self.hi is not None else "any value"

    def error(self, name: str, value) -> str | None:
        """Why ``value`` does not fit, or None."""
        if self.choices:
            return None if value in self.choices else f"{name} must be {self.text()}, got {value!r}"
        if not self.numeric:
            return None
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            return f"{name} must be {'an integer' if self.integer else 'a number'} {self.text()}, got {value!r}"
        low_ok = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        if not (low_ok and (self.hi is None or value <= self.hi)):
            return f"{name} must be {self.text()}, got {value!r}"
        if self.step and (value - (self.lo or 0)) % self.step:
            return f"{name} must be {self.lo or 0} + a multiple of {self.step}, got {value!r}"
        return None


def check_ranges(config) -> None:
    """ValueError naming the first field of ``config`` outside its entry in ``type(config).RANGES``."""
    for name, spec in type(config).RANGES.items():
        why = spec.error(name, getattr(config, name))
        if why:
            raise ValueError(f"{type(config).__name__}: {why}")
