r"""What one step of an update rule does, read from its jaxpr: dependencies and affinity.

An update rule is a program; :func:`analyse` traces one call of it with ``jax.make_jaxpr`` and
runs an abstract interpretation over the jaxpr that assigns every value

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

__all__ = [
    "CONST",
    "AFFINE",
    "NONAFFINE",
    "Abstract",
    "Interpretation",
    "RuleStructure",
    "analyse",
    "trace_update",
]

CONST, AFFINE, NONAFFINE = 0, 1, 2

# Primitives that are affine in all their operands jointly (they commute with affine maps).
_LINEAR = frozenset(
    {
        "add",
        "add_any",
        "sub",
        "neg",
        "reduce_sum",
        "cumsum",
        "transpose",
        "reshape",
        "broadcast_in_dim",
        "squeeze",
        "expand_dims",
        "concatenate",
        "pad",
        "slice",
        "rev",
        "copy",
        "copy_p",
        "reduce_precision",
        "real",
        "imag",
        "conj",
        "complex",
        "stop_gradient",
        "optimization_barrier",
        "device_put",
        "sharding_constraint",
        "mesh_cast",
        "split",
        "tie_in",
        "reduce_window_sum",
    }
)
# Primitives whose output is a copy of their (single) operand's value.
_COPIES = frozenset({"copy", "copy_p", "device_put", "optimization_barrier", "reduce_precision"})
# Primitives whose first operand is data and the others are indices that must be constant.
_INDEXED = frozenset({"dynamic_slice", "gather"})
_UPDATED = {"dynamic_update_slice": (0, 1), "scatter": (0, 2), "scatter-add": (0, 2)}
# Primitives that are not affine (or are discrete) in any operand that varies.
_NONLINEAR = frozenset(
    {
        "exp",
        "exp2",
        "log",
        "log1p",
        "expm1",
        "sqrt",
        "rsqrt",
        "cbrt",
        "abs",
        "sign",
        "max",
        "min",
        "clamp",
        "pow",
        "square",
        "tanh",
        "logistic",
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "atan2",
        "sinh",
        "cosh",
        "asinh",
        "acosh",
        "atanh",
        "erf",
        "erfc",
        "erf_inv",
        "lgamma",
        "digamma",
        "floor",
        "ceil",
        "round",
        "rem",
        "nextafter",
        "reduce_max",
        "reduce_min",
        "reduce_prod",
        "reduce_and",
        "reduce_or",
        "reduce_xor",
        "argmax",
        "argmin",
        "cumprod",
        "cummax",
        "cummin",
        "cumlogsumexp",
        "sort",
        "and",
        "or",
        "not",
        "xor",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "shift_left",
        "shift_right_logical",
        "shift_right_arithmetic",
        "population_count",
        "clz",
        "bitcast_convert_type",
        "iota",
        "scatter-mul",
        "scatter-min",
        "scatter-max",
        "select_and_scatter_add",
        "top_k",
    }
)
_COMPARISONS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})
_RANDOM = frozenset(
    {
        "random_seed",
        "random_bits",
        "random_split",
        "random_fold_in",
        "random_wrap",
        "random_unwrap",
        "random_clone",
        "threefry2x32",
        "rng_bit_generator",
        "rng_uniform",
    }
)
_CALL_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")
_MAX_FIXED_POINT = 64


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
        sub = _call_jaxpr(eqn)
        if sub is not None:
            return self.run(sub, ins)
        if name == "cond":
            return self._cond(eqn, ins)
        if name == "scan":
            return self._scan(eqn, ins)
        if name == "while":
            return self._while(eqn, ins)
        if name in _RANDOM:
            return [self._random(name, ins)] * n_out
        rule = _RULES.get(name)
        if rule is not None:
            out = rule(self, eqn, ins, atoms)
        elif name in _LINEAR:
            out = join(ins, keep_copy=name in _COPIES)
        elif name in _NONLINEAR:
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
        for _ in range(_MAX_FIXED_POINT):
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
        for _ in range(_MAX_FIXED_POINT):
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


def _call_jaxpr(eqn):
    """The jaxpr a call-like primitive runs on its operands, or None."""
    if eqn.primitive.name in ("cond", "scan", "while"):
        return None
    for key in _CALL_PARAMS:
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
    data = _UPDATED[eqn.primitive.name]
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
    **{name: _indexed for name in _INDEXED},
    **{name: _updated for name in _UPDATED},
    **{name: _compare for name in _COMPARISONS},
}


def trace_update(update: Callable, grads, state, params):
    """``(closed_jaxpr, n_grads, n_state, n_params, out_treedef)`` of ``update(g, s, p)``.

    Inputs are numbered in the order of the flattened ``(grads, state, params)``; the outputs
    are the flattened ``(updates, new_state)``. Works on arrays, tracers and
    ``jax.ShapeDtypeStruct`` leaves.
    """
    closed, out_shape = jax.make_jaxpr(update, return_shape=True)(grads, state, params)
    counts = tuple(len(jax.tree.leaves(t)) for t in (grads, state, params))
    return closed, counts, jax.tree.structure(out_shape), out_shape


# --------------------------------------------------------------------------- one update step


@dataclasses.dataclass(frozen=True)
class RuleStructure:
    """What one ``update(g, state, params)`` does to each state leaf, and whether it is affine.

    State leaves are numbered ``0 .. len(roles)-1`` in ``jax.tree.leaves(state)`` order.

    Attributes:
      roles: per leaf, ``'dynamic'`` (its next value depends on the parameters, the gradient or
        a dynamic leaf: a state of the loop), ``'clock'`` (evolves on its own), ``'frozen'``
        (held fixed on request) or ``'held'`` (a non-float leaf whose next value depends on the
        parameters or gradient: it cannot be linearised and is held at its value).
      next_deps: per leaf, the state leaves its next value reads.
      copies: per leaf, whether its next value is the leaf itself, unchanged.
      output_deps / output_tdeps: state leaves the loop's outputs (the updates and the next
        dynamic leaves) read, in all / not only through the key of a random draw.
      affine: the outputs are proven affine in (parameters, gradient, dynamic leaves).
      random: the outputs carry a random draw from a key in the state.
      notes: why affinity was not proven (primitive names, held leaves), for messages.
    """

    roles: tuple[str, ...]
    next_deps: tuple[frozenset[int], ...]
    copies: tuple[bool, ...]
    output_deps: frozenset[int]
    output_tdeps: frozenset[int]
    affine: bool
    random: bool
    notes: tuple[str, ...]

    def indices(self, role: str) -> list[int]:
        return [i for i, r in enumerate(self.roles) if r == role]


def _is_inexact(leaf) -> bool:
    return bool(jax.numpy.issubdtype(leaf.dtype, jax.numpy.inexact))


def analyse(
    update: Callable, grads, state, params, frozen: Sequence[bool], names: Sequence[str] = ()
) -> RuleStructure:
    """The :class:`RuleStructure` of one call ``update(grads, state, params)``.

    ``frozen`` marks state leaves held fixed by request (their next value is ignored).
    ``names`` are the leaves' paths, for notes. A leaf is dynamic when its next value depends
    on the parameters, the gradient or a dynamic leaf: the set is grown to a fixed point, each
    round re-running the interpretation with the new leaves as variables.
    """
    closed, (ng, ns, npar), _, out_shape = trace_update(update, grads, state, params)
    leaves = jax.tree.leaves(state)
    n_updates = len(jax.tree.leaves(out_shape[0]))
    total = ng + ns + npar
    base = frozenset(range(ng)) | frozenset(range(ng + ns, total))
    dynamic: set[int] = set()
    for _ in range(ns + 1):
        variables = base | {ng + i for i in dynamic}
        interp = Interpretation(variables)
        outs = interp.run(closed, interp.inputs(total))
        nxt = outs[n_updates:]
        grown = {
            i
            for i in range(ns)
            if not frozen[i] and _is_inexact(leaves[i]) and nxt[i].deps & variables
        }
        if grown <= dynamic:
            break
        dynamic |= grown
    held = {
        i
        for i in range(ns)
        if not frozen[i] and not _is_inexact(leaves[i]) and nxt[i].deps & variables
    }
    roles = tuple(
        "frozen" if frozen[i] else "dynamic" if i in dynamic else "held" if i in held else "clock"
        for i in range(ns)
    )
    analysed = outs[:n_updates] + [nxt[i] for i in sorted(dynamic)]
    local = {ng + i: i for i in range(ns)}

    def to_state(indices) -> frozenset[int]:
        return frozenset(local[j] for j in indices if j in local)

    out = join(analysed)
    output_deps = to_state(out.deps)
    notes = [f"{name} applied to the state or gradient" for name in interp.nonaffine]
    notes += [f"primitive {name!r} is unknown to the affinity proof" for name in interp.unknown]
    reads_held = sorted(output_deps & held)
    notes += [
        f"integer leaf {names[i] if names else i} depends on the gradient or parameters"
        for i in reads_held
    ]
    return RuleStructure(
        roles=roles,
        next_deps=tuple(to_state(v.deps) for v in nxt),
        copies=tuple(v.copy_of == ng + i for i, v in enumerate(nxt)),
        output_deps=output_deps,
        output_tdeps=to_state(out.tdeps),
        affine=out.kind != NONAFFINE and not reads_held,
        random=out.random,
        notes=tuple(notes),
    )
