r"""What one step of an update rule does, read from its jaxpr: dependencies and affinity.

An update rule is a program; :func:`~gdyn_jax.state_structure.analyse` traces one call of it
with ``jax.make_jaxpr``, and :class:`Interpretation` runs an abstract interpretation over the
jaxpr that assigns every value

- ``deps``: the inputs it depends on (structurally: which inputs its computation reads);
- ``kind``: ``CONST`` (independent of the *variables*, a chosen subset of the inputs),
  ``AFFINE`` (an affine function of the variables whose coefficients depend only on the other
  inputs) or ``NONAFFINE`` (not proven affine);
- ``tdeps``: the dependencies that do not pass only through the key of a random draw;
- ``random``: whether it carries a draw from a random key read from the inputs.

Affinity is propagated through the primitives: ``add``, ``sub``, ``neg``, ``reduce_sum``,
reshapes, slices, concatenation, ``dot_general``/``mul`` with one constant operand, ``div`` by a
constant, ``select_n`` with a constant predicate, indexing with constant indices and float to
float conversion keep it; ``max``, ``min``, ``clamp``, ``abs``, ``sqrt``, ``exp``, a product of
two affine operands, division by an affine operand or a select whose predicate depends on the
variables do not. Calls (``jit``, ``custom_jvp_call``, ``custom_vjp_call``, ``remat``) are
entered; ``cond`` is affine when its branch index is constant and every branch is; ``scan`` and
``while`` are iterated to a fixed point (``while`` also needs a constant loop condition). A
primitive not in these tables is *not proven* affine when it reads a variable. On finite reals
``is_finite(x)`` of an affine ``x`` is constant (True), as are ``x != x`` and comparisons with
an infinite literal; this keeps ``apply_if_finite`` and ``zero_nans`` wrappers affine.

The analysis is sound for values and is a proof only in that direction: ``AFFINE`` means the
map is affine on finite inputs; ``NONAFFINE`` means no proof was found (``x * x - x * x`` is
affine and reported non-affine). The numerical cross-check lives in
:mod:`gdyn_jax.linearize.exactness`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.extend import core

from gdyn_jax.state_structure.primitives import (
    CALL_PARAMS,
    COMPARISONS,
    COPIES,
    INDEXED,
    LINEAR,
    MAX_FIXED_POINT,
    NONLINEAR,
    RANDOM,
    UPDATED,
)

__all__ = ["AFFINE", "CONST", "NONAFFINE", "Abstract", "Interpretation", "call_jaxpr", "join"]

CONST, AFFINE, NONAFFINE = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Abstract:
    """The abstract value of one jaxpr variable (see the module docstring)."""

    kind: int
    deps: frozenset[int] = frozenset()
    tdeps: frozenset[int] = frozenset()
    random: bool = False
    copy_of: int | None = None  # the input whose value this is, unchanged


_CONSTANT = Abstract(CONST)


def join(values: Sequence[Abstract], *, keep_copy: bool = False) -> Abstract:
    """The least upper bound: the worst kind, all dependencies, any randomness."""
    if not values:
        return _CONSTANT
    copies = {v.copy_of for v in values}
    return Abstract(
        kind=max(v.kind for v in values),
        deps=frozenset().union(*(v.deps for v in values)),
        tdeps=frozenset().union(*(v.tdeps for v in values)),
        random=any(v.random for v in values),
        copy_of=copies.pop() if keep_copy and len(copies) == 1 else None,
    )


def _with(value: Abstract, **changes) -> Abstract:
    return dataclasses.replace(value, **changes)


def _nonaffine(values: Sequence[Abstract]) -> Abstract:
    return _with(join(values), kind=NONAFFINE)


class Interpretation:
    """One abstract interpretation of a jaxpr with a chosen set of variable inputs.

    Attributes after :meth:`run`: ``nonaffine`` (primitive names that broke affinity on a
    varying value), ``unknown`` (primitives the tables do not know, read on a varying value),
    ``key_deps`` (inputs that feed the key of a random draw).
    """

    def __init__(self, variables: frozenset[int]):
        self.variables = variables
        self.nonaffine: list[str] = []
        self.unknown: list[str] = []
        self.key_deps: set[int] = set()

    # ------------------------------------------------------------------ driver

    def inputs(self, count: int) -> list[Abstract]:
        """The abstract values of inputs ``0 .. count-1``."""
        return [
            Abstract(
                AFFINE if i in self.variables else CONST,
                frozenset({i}),
                frozenset({i}),
                copy_of=i,
            )
            for i in range(count)
        ]

    def run(self, jaxpr, args: Sequence[Abstract]) -> list[Abstract]:
        """Abstract values of the outputs of ``jaxpr`` (a Jaxpr or ClosedJaxpr)."""
        if isinstance(jaxpr, core.ClosedJaxpr):
            jaxpr = jaxpr.jaxpr
        env: dict[Any, Abstract] = {}
        for var in jaxpr.constvars:
            env[var] = _CONSTANT
        for var, value in zip(jaxpr.invars, args, strict=True):
            env[var] = value

        def read(atom) -> Abstract:
            if isinstance(atom, core.Literal):
                return _CONSTANT
            return env[atom]

        for eqn in jaxpr.eqns:
            ins = [read(a) for a in eqn.invars]
            outs = self.equation(eqn, ins, eqn.invars)
            for var, value in zip(eqn.outvars, outs, strict=True):
                if not isinstance(var, core.DropVar):
                    env[var] = value
        return [read(a) for a in jaxpr.outvars]

    def _record(self, names: list[str], name: str) -> None:
        if name not in names:
            names.append(name)

    # ------------------------------------------------------------------ rules

    def equation(self, eqn, ins: list[Abstract], atoms) -> list[Abstract]:
        name = eqn.primitive.name
        n_out = len(eqn.outvars)
        varying = [v.kind != CONST for v in ins]
        sub = call_jaxpr(eqn)
        if sub is not None:
            return self.run(sub, ins)
        if name == "cond":
            return self._cond(eqn, ins)
        if name == "scan":
            return self._scan(eqn, ins)
        if name == "while":
            return self._while(eqn, ins)
        if name in RANDOM:
            return [self._random(name, ins)] * n_out
        rule = _RULES.get(name)
        if rule is not None:
            out = rule(self, eqn, ins, atoms)
        elif name in LINEAR:
            out = join(ins, keep_copy=name in COPIES)
        elif name in NONLINEAR:
            out = join(ins)
            if any(varying):
                self._record(self.nonaffine, name)
                out = _with(out, kind=NONAFFINE)
        else:
            out = join(ins)
            if any(varying):
                self._record(self.unknown, name)
                out = _with(out, kind=NONAFFINE)
        return [out] * n_out

    def _random(self, name: str, ins: list[Abstract]) -> Abstract:
        out = join(ins)
        if any(v.kind != CONST for v in ins):
            self._record(self.nonaffine, name)
            return _with(out, kind=NONAFFINE)
        self.key_deps.update(out.deps)
        return _with(out, tdeps=frozenset(), random=out.random or bool(out.deps))

    def _cond(self, eqn, ins):
        index, args = ins[0], ins[1:]
        branches = [self.run(b, args) for b in eqn.params["branches"]]
        outs = [join([index, *vals]) for vals in zip(*branches, strict=True)]
        if index.kind != CONST:
            self._record(self.nonaffine, "cond")
            outs = [_with(v, kind=NONAFFINE) for v in outs]
        return outs

    def _scan(self, eqn, ins):
        p = eqn.params
        n_consts, n_carry = p["num_consts"], p["num_carry"]
        consts, carry, xs = (
            ins[:n_consts],
            ins[n_consts : n_consts + n_carry],
            ins[n_consts + n_carry :],
        )
        for _ in range(MAX_FIXED_POINT):
            outs = self.run(p["jaxpr"], [*consts, *carry, *xs])
            new = [join([c, o]) for c, o in zip(carry, outs[:n_carry], strict=True)]
            if new == carry:
                break
            carry = new
        else:  # pragma: no cover - the lattice is finite
            raise RuntimeError("scan: no fixed point")
        return [*carry, *outs[n_carry:]]

    def _while(self, eqn, ins):
        p = eqn.params
        nc, nb = p["cond_nconsts"], p["body_nconsts"]
        cond_consts, body_consts, carry = ins[:nc], ins[nc : nc + nb], ins[nc + nb :]
        for _ in range(MAX_FIXED_POINT):
            outs = self.run(p["body_jaxpr"], [*body_consts, *carry])
            new = [join([c, o]) for c, o in zip(carry, outs, strict=True)]
            if new == carry:
                break
            carry = new
        (test,) = self.run(p["cond_jaxpr"], [*cond_consts, *carry])
        outs = [join([test, c]) for c in carry]
        if test.kind != CONST:
            self._record(self.nonaffine, "while")
            outs = [_with(v, kind=NONAFFINE) for v in outs]
        return outs


def call_jaxpr(eqn):
    """The jaxpr a call-like primitive runs on its operands, or None."""
    if eqn.primitive.name in ("cond", "scan", "while"):
        return None
    for key in CALL_PARAMS:
        sub = eqn.params.get(key)
        if isinstance(sub, core.ClosedJaxpr | core.Jaxpr):
            n_in = len(sub.jaxpr.invars if isinstance(sub, core.ClosedJaxpr) else sub.invars)
            if n_in == len(eqn.invars):
                return sub
    return None


def _affine_unless(interp: Interpretation, broken: bool, name: str, ins) -> Abstract:
    """The join of ``ins``, or NONAFFINE (recording ``name``) when ``broken``."""
    if broken:
        interp._record(interp.nonaffine, name)
        return _nonaffine(ins)
    return join(ins)


def _varies(values) -> bool:
    return any(v.kind != CONST for v in values)


def _product(interp: Interpretation, eqn, ins, atoms) -> Abstract:
    """``mul`` / ``dot_general`` / convolution: affine when at most one operand varies."""
    broken = sum(v.kind != CONST for v in ins) > 1
    return _affine_unless(interp, broken, eqn.primitive.name, ins)


def _div(interp: Interpretation, eqn, ins, atoms) -> Abstract:
    return _affine_unless(interp, ins[1].kind != CONST, "div", ins)


def _integer_pow(interp: Interpretation, eqn, ins, atoms) -> Abstract:
    y = eqn.params["y"]
    if y == 0:
        return _with(join(ins), kind=CONST)
    return _affine_unless(interp, y != 1 and _varies(ins), "integer_pow", ins)


def _convert(interp: Interpretation, eqn, ins, atoms) -> Abstract:
    (x,) = ins
    inexact = jax.numpy.issubdtype(eqn.params["new_dtype"], jax.numpy.inexact)
    if x.kind != CONST and not inexact:
        interp._record(interp.nonaffine, "convert_element_type (to an integer)")
        return _with(x, kind=NONAFFINE, copy_of=None)
    same = eqn.invars[0].aval.dtype == eqn.params["new_dtype"]
    return _with(x, copy_of=x.copy_of if same else None)


def _select(interp: Interpretation, eqn, ins, atoms) -> Abstract:
    return _affine_unless(interp, _varies(ins[:1]), "select_n (on a varying predicate)", ins)


def _indexed(interp: Interpretation, eqn, ins, atoms) -> Abstract:
    name = f"{eqn.primitive.name} (at varying indices)"
    return _affine_unless(interp, _varies(ins[1:]), name, ins)


def _updated(interp: Interpretation, eqn, ins, atoms) -> Abstract:
    data = UPDATED[eqn.primitive.name]
    indices = [v for i, v in enumerate(ins) if i not in data]
    name = f"{eqn.primitive.name} (at varying indices)"
    return _affine_unless(interp, _varies(indices), name, ins)


def _is_finite(interp: Interpretation, eqn, ins, atoms) -> Abstract:
    """On finite reals an affine value is finite: the test is constant (True)."""
    (x,) = ins
    if x.kind == NONAFFINE:
        interp._record(interp.nonaffine, "is_finite")
        return _with(x, copy_of=None)
    fixed = x.deps - interp.variables
    return Abstract(CONST, fixed, x.tdeps - interp.variables, x.random)


def _infinite_literal(atom) -> bool:
    if not isinstance(atom, core.Literal):
        return False
    value = np.asarray(atom.val)
    return bool(value.dtype.kind == "f" and np.all(np.isinf(value)))


def _compare(interp: Interpretation, eqn, ins, atoms) -> Abstract:
    """Comparisons are discrete, except ``x != x`` / ``x == x`` and ``x == inf`` on an affine
    ``x``: constant on finite reals."""
    name = eqn.primitive.name
    if all(v.kind == CONST for v in ins):
        return join(ins)
    affine = all(v.kind != NONAFFINE for v in ins)
    same = name in ("eq", "ne") and atoms[0] is atoms[1] and not isinstance(atoms[0], core.Literal)
    if affine and (same or any(_infinite_literal(a) for a in atoms)):
        fixed = [
            _with(v, deps=v.deps - interp.variables, tdeps=v.tdeps - interp.variables) for v in ins
        ]
        return _with(join(fixed), kind=CONST)
    interp._record(interp.nonaffine, name)
    return _nonaffine(ins)


_RULES: dict[str, Callable[..., Abstract]] = {
    "mul": _product,
    "dot_general": _product,
    "conv_general_dilated": _product,
    "div": _div,
    "integer_pow": _integer_pow,
    "convert_element_type": _convert,
    "select_n": _select,
    "is_finite": _is_finite,
    **{name: _indexed for name in INDEXED},
    **{name: _updated for name in UPDATED},
    **{name: _compare for name in COMPARISONS},
}
