"""Argument checks shared by the modules of :mod:`sksurvfusion.nn`."""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real

__all__ = ["check_choice", "check_fraction", "check_positive_int", "check_positive_real"]


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` as an int, or raise a ValueError naming ``name``."""
    # bool is an Integral, but d_model=True is always a mistake
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_positive_real(name: str, value: object) -> float:
    """Return ``value`` as a float, or raise a ValueError naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


def check_fraction(name: str, value: object, *, allow_one: bool = False) -> float:
    """Return ``value`` as a float in [0, 1) (or [0, 1]), else raise a ValueError."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and 0 <= value
    ok = ok and (value <= 1 if allow_one else value < 1)
    if not ok:
        interval = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}.")
    return float(value)


def check_choice(name: str, value: object, choices: Collection[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError."""
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}; got {value!r}.")
    return value
