"""The role of each optimizer-state leaf in one update step: dynamic, clock, frozen or held.

:func:`analyse` reads one call ``update(grads, state, params)`` through the abstract
interpretation of :mod:`gdyn_jax.state_structure.interpret`: a leaf is *dynamic* when its next
value depends on the parameters, the gradient or another dynamic leaf (the set is grown to a
fixed point); the other leaves are the rule's *clock*. :func:`dynamic_state_mask` is the same
answer as a pytree of bools, for users.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax

from gdyn_jax.state_structure.bookkeeping import by_name_mask, is_inexact, registered_mask
from gdyn_jax.state_structure.interpret import NONAFFINE, Abstract, Interpretation, join

__all__ = ["RuleStructure", "analyse", "dynamic_state_mask", "trace_update"]


def trace_update(update: Callable, grads, state, params):
    """``(closed_jaxpr, n_grads, n_state, n_params, out_treedef)`` of ``update(g, s, p)``.

    Inputs are numbered in the order of the flattened ``(grads, state, params)``; the outputs
    are the flattened ``(updates, new_state)``. Works on arrays, tracers and
    ``jax.ShapeDtypeStruct`` leaves.
    """
    closed, out_shape = jax.make_jaxpr(update, return_shape=True)(grads, state, params)
    counts = tuple(len(jax.tree.leaves(t)) for t in (grads, state, params))
    return closed, counts, jax.tree.structure(out_shape), out_shape


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


def _grow(closed, counts, n_updates: int, leaves, frozen: Sequence[bool]):
    """Grow the dynamic leaves to a fixed point, each round re-running the interpretation with
    the new leaves as variables: ``(dynamic, variables, interpretation, outputs)`` of the last
    round (inputs are numbered as in :func:`trace_update`)."""
    ng, ns, npar = counts
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
            if not frozen[i] and is_inexact(leaves[i]) and nxt[i].deps & variables
        }
        if grown <= dynamic:
            break
        dynamic |= grown
    return dynamic, variables, interp, outs


def _notes(interp: Interpretation, reads_held: list[int], names: Sequence[str]) -> list[str]:
    notes = [f"{name} applied to the state or gradient" for name in interp.nonaffine]
    notes += [f"primitive {name!r} is unknown to the affinity proof" for name in interp.unknown]
    notes += [
        f"integer leaf {names[i] if names else i} depends on the gradient or parameters"
        for i in reads_held
    ]
    return notes


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
    dynamic, variables, interp, outs = _grow(closed, (ng, ns, npar), n_updates, leaves, frozen)
    nxt: list[Abstract] = outs[n_updates:]
    held = {
        i
        for i in range(ns)
        if not frozen[i] and not is_inexact(leaves[i]) and nxt[i].deps & variables
    }
    roles = tuple(
        "frozen" if frozen[i] else "dynamic" if i in dynamic else "held" if i in held else "clock"
        for i in range(ns)
    )
    local = {ng + i: i for i in range(ns)}

    def to_state(indices) -> frozenset[int]:
        return frozenset(local[j] for j in indices if j in local)

    out = join(outs[:n_updates] + [nxt[i] for i in sorted(dynamic)])
    output_deps = to_state(out.deps)
    reads_held = sorted(output_deps & held)
    return RuleStructure(
        roles=roles,
        next_deps=tuple(to_state(v.deps) for v in nxt),
        copies=tuple(v.copy_of == ng + i for i, v in enumerate(nxt)),
        output_deps=output_deps,
        output_tdeps=to_state(out.tdeps),
        affine=out.kind != NONAFFINE and not reads_held,
        random=out.random,
        notes=tuple(_notes(interp, reads_held, names)),
    )


def dynamic_state_mask(state: Any, opt: Any = None, *, params: Any = None) -> Any:
    """A pytree of bools with ``state``'s structure: True for dynamic leaves.

    With the rule (``opt`` and the ``params`` its state was made for), a leaf is dynamic when
    one update step makes its next value depend on the parameters, the gradient or another
    dynamic leaf, read from the step's jaxpr (:func:`~gdyn_jax.state_structure.analyse`):
    optax's own states, ``inject_hyperparams``, ``MultiSteps``, schedule-free, lookahead and
    user-written rules alike, whatever their field names. Without the rule, the name-based
    fallback: a non-float leaf or one under a
    :data:`~gdyn_jax.state_structure.BOOKKEEPING_FIELDS` entry is False. In both cases fields
    declared with :func:`~gdyn_jax.state_structure.register_bookkeeping` are False. Works on
    arrays and on ``jax.ShapeDtypeStruct`` leaves (e.g. from ``jax.eval_shape(opt.init,
    params)``).

    Raises:
      ValueError: naming ``params`` when ``opt`` is given without them.
    """
    if opt is None:
        return by_name_mask(state)
    if params is None:
        raise ValueError("params: the structural mask needs the parameters the state is for")
    registered = registered_mask(state)
    grads = getattr(params, "fast", params)  # optax.LookaheadParams: the gradient is at .fast
    structure = analyse(opt.update, grads, state, params, registered)
    flags = iter(role == "dynamic" for role in structure.roles)
    return jax.tree.map(lambda _: next(flags), state)
