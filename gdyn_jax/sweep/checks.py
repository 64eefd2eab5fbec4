"""Checks of single settings shared by the config, the grid and the command line.

Each raises a one-line ``ValueError`` that starts with the name of the setting it checks.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["INT32_MAX", "check_int", "to_float"]

#: The largest int32, the type of steps and indices in the compiled program.
INT32_MAX = 2**31 - 1


def to_float(what: str, value: Any) -> float:
    """``float(value)`` for finite real numbers (and numeric strings); a named ValueError else."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{what}: expected a finite number, got {value!r}")
    return out


def check_int(name: str, value: Any, minimum: int, maximum: int = INT32_MAX) -> None:
    """A one-line ``ValueError`` naming ``name`` unless ``value`` is an int in
    [``minimum``, ``maximum``] (default: the largest int32, the type of steps and indices in
    the compiled program)."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"{name}: expected an integer in [{minimum}, {maximum}], got {value!r}")
