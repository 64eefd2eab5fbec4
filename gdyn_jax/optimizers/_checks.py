"""Hyperparameter checks at construction: the type always, the range when the value is concrete.

A hyperparameter is a real number: a Python ``int``/``float``, a numpy scalar or array, or a
JAX array, of a real numeric dtype (not ``bool``, not complex). Its *type* is checked whatever
it is, tracers included (a tracer's dtype is static, so no check branches on a traced value).
Its *range* is checked when the value is concrete: Python and numpy numbers and JAX arrays
that are not tracers. A traced value (a hyperparameter under ``jax.jit`` or ``jax.vmap``, as a
sweep passes them) is the caller's business: it cannot be looked at without a device transfer
inside the trace, so an out-of-range tracer builds a rule that runs with that value.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from gdyn_jax.errors import UsageError

__all__ = ["check_decay", "check_learning_rate", "check_number", "check_range"]


def _real_dtype(dtype) -> bool:
    dtype = np.dtype(dtype)
    return np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)


def _shown(value: Any) -> str:
    """A short one-line description of a rejected value."""
    if isinstance(value, jax.core.Tracer):
        return f"a traced value of dtype {value.dtype}"
    if isinstance(value, np.ndarray | jax.Array):
        kind = "a numpy" if isinstance(value, np.ndarray) else "a JAX"
        return f"{kind} array of dtype {value.dtype} and shape {tuple(value.shape)}"
    if callable(value):
        return f"the callable {getattr(value, '__qualname__', type(value).__name__)}"
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{type(value).__name__} {text}"


def check_number(name: str, value: Any, *, schedule: bool = False) -> None:
    """``UsageError`` (a ValueError) unless ``value`` is a real number or array (or, with
    ``schedule``, an optax schedule: any callable). Tracers are checked by dtype only."""
    if isinstance(value, jax.core.Tracer | np.ndarray | jax.Array | np.generic):
        ok = not isinstance(value, np.bool_) and _real_dtype(value.dtype)
    elif schedule and callable(value):
        ok = True
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        what = "a real number (int, float or a real-valued array)"
        what += " or an optax schedule" if schedule else ""
        raise UsageError(f"{name}: expected {what}, got {_shown(value)}")


def _concrete_values(value: Any) -> np.ndarray | None:
    """The value as a float64 array when it is a concrete number, else None.

    Python numbers, numpy scalars and arrays, and JAX arrays that are not tracers are concrete.
    Tracers, schedules (callables) and ``None`` are left alone, so no check ever branches on
    a traced value. Call :func:`check_number` first: other types give None here too.
    """
    if isinstance(value, jax.core.Tracer) or isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | float | np.number):
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, np.ndarray | jax.Array) and _real_dtype(value.dtype):
        return np.asarray(value, dtype=np.float64)
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
    schedule: bool = False,
) -> None:
    """Raise ``UsageError`` (a ValueError) when ``value`` is not a real number (see
    :func:`check_number`; ``schedule`` also accepts an optax schedule) or, being concrete, is
    outside the range.

    The range is ``[low, high)`` by default; ``low_open`` / ``high_open`` choose open or closed
    ends. NaN is always out of range. Traced values and schedules are not range-checked.
    """
    check_number(name, value, schedule=schedule)
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
    if isinstance(value, int | float):
        shown = str(value)
    else:  # numpy and JAX values (float32 0.1 is not 0.1 in float64)
        shown = f"{values.item():.8g}" if values.size == 1 else _shown(value)
    raise UsageError(f"{name}: expected {expected}, got {shown}")


def check_learning_rate(learning_rate: Any) -> None:
    """``learning_rate`` >= 0, a number or an optax schedule (traced values pass the range);
    ``None`` is refused.

    optax reads ``None`` as "no scaling", which turns a gradient into an *ascent* step
    (``optax.sgd(None)`` returns ``+g``), so every constructor of this package rejects it.
    """
    if learning_rate is None:
        raise UsageError(
            "learning_rate: expected a number >= 0 or an optax schedule, got None "
            "(optax reads None as 'no scaling', an ascent step)"
        )
    check_range("learning_rate", learning_rate, 0.0, schedule=True)


def check_decay(name: str, value: Any) -> None:
    """A decay / momentum coefficient in [0, 1)."""
    check_range(name, value, 0.0, 1.0)
