"""Range checks for hyperparameters that only fire on concrete (non-traced) values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gdyn_jax.errors import UsageError

__all__ = ["check_decay", "check_learning_rate", "check_range"]


def _concrete_values(value: Any) -> np.ndarray | None:
    """The value as a float array when it is a concrete host number, else None.

    Python numbers and numpy scalars/arrays are concrete. JAX arrays (tracers or
    not), schedules (callables) and ``None`` are left alone, so no check ever
    branches on a traced value or forces a device transfer.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.number)):
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.number):
        return value.astype(np.float64)
    return None


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:g}"


def check_range(
    name: str,
    value: Any,
    low: float = 0.0,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = True,
) -> None:
    """Raise ``UsageError`` (a ValueError) when a concrete ``value`` is outside the range.

    The range is ``[low, high)`` by default; ``low_open`` / ``high_open`` choose
    open or closed ends. NaN is always out of range. Traced values and schedules
    are not checked.
    """
    values = _concrete_values(value)
    if values is None:
        return
    above = values > low if low_open else values >= low
    below = values < high if high_open else values <= high
    if bool(np.all(above & below)):
        return
    if math.isinf(high):
        expected = f"a value {'>' if low_open else '>='} {_fmt(low)}"
    else:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        expected = f"a value in {left}{_fmt(low)}, {_fmt(high)}{right}"
    shown = value.item() if isinstance(value, np.ndarray) and value.size == 1 else value
    raise UsageError(f"{name}: expected {expected}, got {shown}")


def check_learning_rate(learning_rate: Any) -> None:
    """``learning_rate`` >= 0 (schedules and traced values pass); ``None`` is refused.

    optax reads ``None`` as "no scaling", which turns a gradient into an *ascent* step
    (``optax.sgd(None)`` returns ``+g``), so every constructor of this package rejects it.
    """
    if learning_rate is None:
        raise UsageError(
            "learning_rate: expected a number >= 0 or an optax schedule, got None "
            "(optax reads None as 'no scaling', an ascent step)"
        )
    check_range("learning_rate", learning_rate, 0.0)


def check_decay(name: str, value: Any) -> None:
    """A decay / momentum coefficient in [0, 1)."""
    check_range(name, value, 0.0, 1.0)
