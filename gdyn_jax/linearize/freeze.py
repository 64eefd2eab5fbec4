r"""Freezing state leaves: the update rule with chosen leaves held at their current value.

Holding a leaf's *stored* next value is not enough to freeze what it stands for: Adam's step
divides by :math:`\sqrt{\hat\nu_{t+1}}` with :math:`\nu_{t+1} = \beta_2\nu_t + (1-\beta_2)g^2`,
the *new* second moment, so the gradient would still reach the preconditioner. A frozen leaf
is therefore frozen inside the step too: the one-step program is traced to a jaxpr, calls are
inlined, and every read of the leaf's new value (the value the step stores as its next state,
followed back through copies and same-dtype casts) is replaced by a read of its current value.
The result is the update rule "with that leaf held fixed", as a function with the signature of
``update``. Adam with ``nu`` and ``count`` frozen then steps by
:math:`-\eta\,\hat m / (\sqrt{\nu/(1-\beta_2^c)} + \epsilon)`, :math:`\hat m = m/(1-\beta_1^c)`,
with :math:`c` the frozen count: linear in :math:`(\theta, m, g)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
from jax.extend import core

from gdyn_jax.state_structure.interpret import call_jaxpr
from gdyn_jax.state_structure.roles import trace_update

__all__ = ["frozen_update", "inline"]

_COPY_LIKE = frozenset({"copy", "copy_p", "reduce_precision", "optimization_barrier"})


def inline(closed: core.ClosedJaxpr) -> core.ClosedJaxpr:
    """The same program with every call (``jit``, ``custom_jvp_call``, ...) inlined.

    Control flow (``cond``, ``scan``, ``while``) stays as it is. Variables of called jaxprs get
    fresh names, since one jaxpr object may be called from several places.
    """
    constvars = list(closed.jaxpr.constvars)
    consts = list(closed.consts)
    eqns: list = []

    def fresh(var):
        return var if isinstance(var, core.DropVar) else core.Var(var.aval)

    def go(jaxpr, env: dict) -> list:
        def read(atom):
            return atom if isinstance(atom, core.Literal) else env[atom]

        for eqn in jaxpr.eqns:
            ins = [read(a) for a in eqn.invars]
            sub = call_jaxpr(eqn)
            if sub is None:
                outs = [fresh(v) for v in eqn.outvars]
                eqns.append(
                    core.new_jaxpr_eqn(
                        ins, outs, eqn.primitive, eqn.params, eqn.effects, eqn.source_info
                    )
                )
            else:
                inner = sub.jaxpr if isinstance(sub, core.ClosedJaxpr) else sub
                sub_env = dict(zip(inner.invars, ins, strict=True))
                if isinstance(sub, core.ClosedJaxpr):
                    for var, value in zip(inner.constvars, sub.consts, strict=True):
                        new = core.Var(var.aval)
                        constvars.append(new)
                        consts.append(value)
                        sub_env[var] = new
                outs = go(inner, sub_env)
            for var, new in zip(eqn.outvars, outs, strict=True):
                if not isinstance(var, core.DropVar):
                    env[var] = new
        return [read(a) for a in jaxpr.outvars]

    top = closed.jaxpr
    env = {v: v for v in [*top.constvars, *top.invars]}
    outvars = go(top, env)
    effects = frozenset().union(*(e.effects for e in eqns)) if eqns else frozenset()
    jaxpr = core.Jaxpr(
        constvars, list(top.invars), outvars, eqns, effects, debug_info=top.debug_info
    )
    return core.ClosedJaxpr(jaxpr, consts)


def _sources(var, producers: dict) -> list:
    """``var`` and the variables it copies (through copies and float-to-float casts)."""
    found: list = []
    while isinstance(var, core.Var) and var not in found:
        found.append(var)
        eqn = producers.get(var)
        if eqn is None or len(eqn.invars) != 1 or isinstance(eqn.invars[0], core.Literal):
            break
        name = eqn.primitive.name
        float_cast = name == "convert_element_type" and all(
            jax.numpy.issubdtype(v.aval.dtype, jax.numpy.floating)
            for v in (eqn.invars[0], eqn.outvars[0])
        )
        if name not in _COPY_LIKE and not float_cast:
            break
        var = eqn.invars[0]
    return found


def _cast_eqn(source, aval):
    """An equation casting ``source`` to ``aval``'s dtype, and its output variable."""
    example = jax.ShapeDtypeStruct(source.aval.shape, source.aval.dtype)
    (eqn,) = jax.make_jaxpr(lambda x: x.astype(aval.dtype))(example).jaxpr.eqns
    out = core.Var(aval)
    return core.new_jaxpr_eqn([source], [out], eqn.primitive, eqn.params, eqn.effects), out


def _substitute(closed: core.ClosedJaxpr, replace: dict, outvars: list) -> core.ClosedJaxpr:
    """Replace reads of the variables in ``replace``, set the outputs to ``outvars`` and drop
    equations nobody reads."""

    def sub(atom):
        return replace.get(atom, atom) if isinstance(atom, core.Var) else atom

    jaxpr = closed.jaxpr
    outvars = [sub(a) for a in outvars]
    needed = {a for a in outvars if isinstance(a, core.Var)}
    kept = []
    for eqn in reversed(jaxpr.eqns):
        live = any(not isinstance(v, core.DropVar) and v in needed for v in eqn.outvars)
        if not live and not eqn.effects:
            continue
        invars = [sub(a) for a in eqn.invars]
        needed.update(a for a in invars if isinstance(a, core.Var))
        kept.append(eqn.replace(invars=invars))
    kept.reverse()
    new = core.Jaxpr(
        jaxpr.constvars, jaxpr.invars, outvars, kept, jaxpr.effects, debug_info=jaxpr.debug_info
    )
    return core.ClosedJaxpr(new, closed.consts)


def frozen_update(
    update: Callable, grads, state, params, frozen: Sequence[bool]
) -> Callable | None:
    """``update`` with the state leaves marked in ``frozen`` held at their current value.

    The example ``grads``, ``state`` and ``params`` fix the shapes (the returned function only
    accepts these). Returns None when nothing is frozen.
    """
    if not any(frozen):
        return None
    closed, (ng, ns, _), out_tree, _ = trace_update(update, grads, state, params)
    closed = inline(closed)
    jaxpr = closed.jaxpr
    producers = {v: e for e in jaxpr.eqns for v in e.outvars if isinstance(v, core.Var)}
    n_updates = len(jaxpr.outvars) - ns
    replace, outvars, casts = {}, list(jaxpr.outvars), []
    for i in range(ns):
        if not frozen[i]:
            continue
        current = jaxpr.invars[ng + i]
        for var in _sources(outvars[n_updates + i], producers):
            if var.aval.shape != current.aval.shape:
                break
            if var.aval.dtype == current.aval.dtype:
                replace[var] = current
            else:  # the step reads it in another float dtype: read the frozen value cast so
                eqn, replace[var] = _cast_eqn(current, var.aval)
                casts.append(eqn)
        outvars[n_updates + i] = current  # its next value is its current value
    if casts:
        jaxpr = jaxpr.replace(eqns=[*casts, *jaxpr.eqns])
        closed = core.ClosedJaxpr(jaxpr, closed.consts)
    closed = _substitute(closed, replace, outvars)
    evaluate = core.jaxpr_as_fun(closed)

    def held(g, s, p):
        flat = jax.tree.leaves((g, s, p))
        return jax.tree.unflatten(out_tree, evaluate(*flat))

    return held
