r"""Does a loss have third derivatives? A structural check of its jaxpr.

A central flow moves along :math:`\nabla\langle\Sigma, \nabla^2 L\rangle`, a third derivative
of the loss (Cohen et al., ICLR 2025). With ReLU-like activations the Hessian jumps where a unit
switches, the third derivative that automatic differentiation returns misses the jumps, and the
flow would be averaged wrongly without any numerical sign of it. So the loss is traced once
(``jax.make_jaxpr``) and every operation that is not three times differentiable and lies on a
differentiable path from the parameters to the loss (a path not cut by ``stop_gradient``) is
named: ``max``/``min`` (ReLU, hinge), ``abs``, ``sign``, rounding, ``clamp``, and a
``select_n`` whose predicate depends on the parameters (ELU, leaky ReLU, ``jnp.where`` on a
parameter). Functions known smooth whose implementations use such operations internally
(softplus, logsumexp, log-softmax, ...) are trusted by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

__all__ = ["nonsmooth_operations"]

_NONSMOOTH = {"max", "min", "abs", "sign", "floor", "ceil", "round", "clamp"}
_POSITIVE_KEEPING = {"reduce_sum", "add", "mul", "div", "broadcast_in_dim", "reshape"}
_SMOOTH_CALLS = {
    "logaddexp",
    "softplus",
    "logsumexp",
    "log_softmax",
    "softmax",
    "silu",
    "swish",
    "gelu",
    "sigmoid",
    "log_sigmoid",
}


def _sub_jaxpr(eqn) -> Any:
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        if sub is not None:
            return getattr(sub, "jaxpr", sub)
    return None


def _is_var(v) -> bool:
    return not isinstance(v, jax.extend.core.Literal)


def _scan(jaxpr, live_in: list[bool], need_out: list[bool], found: set[str]) -> None:
    live = {v for v, flag in zip(jaxpr.invars, live_in, strict=True) if flag}
    positive: set = set()  # values known > 0 (an exp, sums and products of them)
    for eqn in jaxpr.eqns:  # forward: what depends on the parameters differentiably
        name = eqn.primitive.name
        if name == "exp" or (
            name in _POSITIVE_KEEPING and all(_is_var(v) and v in positive for v in eqn.invars)
        ):
            positive.update(eqn.outvars)
        if name != "stop_gradient" and any(_is_var(v) and v in live for v in eqn.invars):
            live.update(eqn.outvars)
    needed = {v for v, flag in zip(jaxpr.outvars, need_out, strict=True) if flag and _is_var(v)}
    for eqn in reversed(jaxpr.eqns):  # backward: what reaches the loss differentiably
        if eqn.primitive.name == "stop_gradient" or not any(v in needed for v in eqn.outvars):
            continue
        needed.update(v for v in eqn.invars if _is_var(v))
        ins = [_is_var(v) and v in live for v in eqn.invars]
        if not any(ins) or (eqn.primitive.name in ("abs", "sign") and eqn.invars[0] in positive):
            continue  # |z| of a sum of exponentials (logsumexp) is smooth
        _flag(eqn, ins, [v in needed for v in eqn.outvars], found)


def _flag(eqn, ins: list[bool], outs: list[bool], found: set[str]) -> None:
    name = eqn.primitive.name
    if name in _NONSMOOTH or (name == "select_n" and ins[0]):
        found.add(name)
        return
    sub = _sub_jaxpr(eqn)
    if sub is None or eqn.params.get("name") in _SMOOTH_CALLS:
        return
    if len(sub.invars) == len(ins) and len(sub.outvars) == len(outs):
        _scan(sub, ins, outs, found)
    else:  # a call whose operands do not map one to one: look inside it coarsely
        _scan(sub, [True] * len(sub.invars), [True] * len(sub.outvars), found)


def nonsmooth_operations(loss_fn: Callable[[Any], Any], params: Any) -> tuple[str, ...]:
    """The operations on a differentiable path from ``params`` to ``loss_fn(params)`` that
    have no third derivative (sorted; empty for a smooth loss such as a tanh network with the
    square or cross-entropy loss)."""
    closed = jax.make_jaxpr(loss_fn)(params)
    jaxpr = closed.jaxpr
    found: set[str] = set()
    _scan(jaxpr, [True] * len(jaxpr.invars), [True] * len(jaxpr.outvars), found)
    return tuple(sorted(found))
