r"""The closed loop of an update rule on a quadratic, as a flat map ``(z, clock) -> (x', clock')``.

With :math:`g = H(\theta - r) + w` and ``(u, s') = update(g, s, p)``, ``p' = p + u``, the state
leaves are split by what they do (:mod:`gdyn_jax.state_structure`): the *dynamic* leaves
join the parameters in the loop state :math:`x`; the *clock* (step counts, schedule states,
weight sums, injected hyperparameters, random keys) is carried beside it and advanced by the
rule itself, never linearised; *frozen* leaves (on request) and *held* leaves (integers that
depend on the gradient) keep their value. ``z = [x; r; w]``.

The parameters ``p`` are any pytree the rule accepts; the gradient is taken at their *view*:
``p.fast`` for ``optax.LookaheadParams``, ``p`` itself otherwise. A plain vector that the rule
rejects is retried as ``LookaheadParams.init_synced``. The output :math:`y = C x` is the view.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax.linearize.freeze import frozen_update
from gdyn_jax.state_structure import RuleStructure, analyse, entry_name, registered_mask

__all__ = [
    "ClosedLoop",
    "build_loop",
    "check_reference",
    "check_transform",
    "describe_tree",
    "freeze_mask",
]


def check_transform(opt: Any, name: str = "opt") -> None:
    """ValueError naming ``name`` unless ``opt`` has callable ``init`` and ``update``."""
    if not (callable(getattr(opt, "init", None)) and callable(getattr(opt, "update", None))):
        raise ValueError(
            f"{name}: expected an optax GradientTransformation (an object with init and "
            f"update), got {opt!r}"
        )


def check_reference(reference, n: int) -> jax.Array:
    """``reference`` as n float64 values (a scalar for n = 1), or a one-line ValueError with the
    shapes."""
    if isinstance(reference, jax.core.Tracer):
        return jnp.asarray(reference, jnp.float64)  # traced under vmap: its shape is checked
    raw = np.asarray(reference)
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"reference: expected real numbers, got dtype {raw.dtype}")
    if raw.size != n or raw.ndim > 1 and raw.shape != (n,):
        expected = "a number or shape (1,)" if n == 1 else f"shape ({n},)"
        raise ValueError(
            f"reference: expected {expected} (the Hessian is {n}x{n}), got shape {raw.shape}"
        )
    if not np.all(np.isfinite(raw)):
        raise ValueError("reference: expected finite values")
    return jnp.asarray(raw, jnp.float64)


def describe_tree(tree) -> str:
    """The leaves' shapes by path, e.g. ``"['fast'] (2,), ['slow'] (2,)"``, or one shape."""
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    if len(paths) == 1 and not paths[0][0]:
        return str(tuple(jnp.shape(paths[0][1])))
    shown = [f"{jax.tree_util.keystr(path)} {tuple(jnp.shape(leaf))}" for path, leaf in paths]
    return "{" + ", ".join(shown) + "}" if shown else "no leaves"


def _view(params):
    return params.fast if isinstance(params, optax.LookaheadParams) else params


def _as_float64(tree):
    return jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float64), tree)


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


def _like(new, old):
    """``new`` in the dtype of ``old`` (a state leaf keeps its dtype from step to step)."""
    dtype = jnp.result_type(old)
    if jnp.issubdtype(dtype, jax.dtypes.prng_key) or jnp.result_type(new) == dtype:
        return new
    return jnp.asarray(new).astype(dtype)


def _same_shapes(a, b) -> bool:
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(
        jnp.shape(x) == jnp.shape(y)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def _resolve_params(opt, n: int, params):
    """The parameter pytree (float64 leaves) the rule takes, or a ValueError."""
    if params is None or isinstance(params, jax.Array | np.ndarray | float | int):
        theta = jnp.zeros(n) if params is None else jnp.asarray(params, jnp.float64)
        if theta.size != n:
            raise ValueError(
                f"params: expected {n} values (the Hessian is {n}x{n}), got {theta.size}"
            )
        plain = jnp.reshape(theta, (n,))
        try:
            jax.eval_shape(opt.update, plain, jax.eval_shape(opt.init, plain), plain)
            return plain
        except Exception as error:  # the rule may want LookaheadParams: try them
            synced = optax.LookaheadParams.init_synced(plain)
            try:
                jax.eval_shape(opt.update, plain, jax.eval_shape(opt.init, synced), synced)
            except Exception:
                raise ValueError(
                    f"opt: update(g, state, params) fails on a ({n},) parameter vector "
                    f"({_one_line(error)})"
                ) from None
            return synced
    params = _as_float64(params)
    size = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(_view(params)))
    if size != n:
        raise ValueError(
            f"params: the gradient is taken at {size} values, but the Hessian is {n}x{n}"
        )
    return params


def freeze_mask(state, freeze) -> list[bool]:
    """Which leaves of ``state`` to freeze: ``freeze`` is None, names of path entries (a leaf is
    frozen when any entry of its path has one of these names, e.g. ``('nu', 'count')``) or a
    pytree of bools with the structure of ``state``."""
    paths = jax.tree_util.tree_flatten_with_path(state)[0]
    if freeze is None:
        return [False] * len(paths)
    if isinstance(freeze, str):
        freeze = (freeze,)
    try:
        bools = jax.tree.leaves(freeze)
        structured = jax.tree.structure(freeze) == jax.tree.structure(state) and all(
            isinstance(b, bool | np.bool_) for b in bools
        )
    except Exception:  # not a pytree at all
        structured = False
    if structured and paths:
        return [bool(b) for b in bools]
    if not isinstance(freeze, Iterable) or not all(isinstance(f, str) for f in freeze):
        raise ValueError(
            "freeze: expected names of state fields (e.g. ('nu', 'count')) or a pytree of "
            f"bools shaped like the state, got {freeze!r}"
        )
    names = set(freeze)
    mask = [any(entry_name(e) in names for e in path) for path, _ in paths]
    found = {entry_name(e) for path, _ in paths for e in path}
    unknown = sorted(names - found)
    if unknown:
        raise ValueError(f"freeze: {unknown} name no field of the optimizer state")
    return mask


@dataclasses.dataclass(frozen=True, eq=False)
class ClosedLoop:
    """A rule closed around a quadratic with ``n`` parameters, flattened (see module doc)."""

    update: Callable
    params: Any
    state: Any
    structure: RuleStructure
    names: tuple[str, ...]
    n: int

    # ------------------------------------------------------------------ layout

    @property
    def dynamic(self) -> list[int]:
        return self.structure.indices("dynamic")

    @property
    def clock_indices(self) -> list[int]:
        return [i for i, r in enumerate(self.structure.roles) if r != "dynamic"]

    @property
    def frozen_names(self) -> tuple[str, ...]:
        return tuple(self.names[i] for i in self.structure.indices("frozen"))

    @property
    def clock0(self) -> tuple:
        leaves = jax.tree.leaves(self.state)
        return tuple(leaves[i] for i in self.clock_indices)

    @property
    def num_states(self) -> int:
        leaves = jax.tree.leaves(self.state)
        dyn = sum(int(np.size(leaves[i])) for i in self.dynamic)
        return sum(int(np.size(p)) for p in jax.tree.leaves(self.params)) + dyn

    def output_matrix(self) -> np.ndarray:
        """C: the rows of x that hold the view (where the gradient is taken)."""
        marked = jax.tree.map(lambda _: True, self.params)
        if isinstance(self.params, optax.LookaheadParams):
            marked = optax.LookaheadParams(
                fast=jax.tree.map(lambda _: True, self.params.fast),
                slow=jax.tree.map(lambda _: False, self.params.slow),
            )
        rows = np.concatenate(
            [
                np.full(int(np.size(p)), bool(m))
                for p, m in zip(jax.tree.leaves(self.params), jax.tree.leaves(marked), strict=True)
            ]
        )
        C = np.zeros((self.n, self.num_states))
        C[np.arange(self.n), np.nonzero(rows)[0]] = 1.0
        return C

    def x0(self) -> jax.Array:
        leaves = jax.tree.leaves(self.state)
        return self._pack(self.params, [leaves[i] for i in self.dynamic])

    # ------------------------------------------------------------------ the map

    def _pack(self, params, dynamic_leaves) -> jax.Array:
        parts = [jnp.ravel(p) for p in jax.tree.leaves(params)]
        parts += [jnp.ravel(leaf) for leaf in dynamic_leaves]
        return jnp.concatenate([p.astype(jnp.float64) for p in parts])

    def _unpack(self, x):
        leaves = jax.tree.leaves(self.state)
        p_leaves, treedef = jax.tree.flatten(self.params)
        offset, out = 0, []
        for ref in [*p_leaves, *(leaves[i] for i in self.dynamic)]:
            size = int(np.size(ref))
            out.append(jnp.reshape(x[offset : offset + size], jnp.shape(ref)).astype(ref.dtype))
            offset += size
        return jax.tree.unflatten(treedef, out[: len(p_leaves)]), out[len(p_leaves) :]

    def _state(self, dynamic_leaves, clock):
        leaves = list(jax.tree.leaves(self.state))
        for i, leaf in zip(self.dynamic, dynamic_leaves, strict=True):
            leaves[i] = leaf
        for i, leaf in zip(self.clock_indices, clock, strict=True):
            leaves[i] = leaf
        return jax.tree.unflatten(jax.tree.structure(self.state), leaves)

    def step(self, hessian, z, clock):
        """``(x', clock')`` from ``z = [x; r; w]`` and the clock leaves."""
        k, n = self.num_states, self.n
        x, r, w = z[:k], z[k : k + n], z[k + n :]
        params, dyn = self._unpack(x)
        view = _view(params)
        v_leaves, v_def = jax.tree.flatten(view)
        theta = jnp.concatenate([jnp.ravel(v) for v in v_leaves])
        g_flat = hessian @ (theta - r) + w
        offset, g_leaves = 0, []
        for v in v_leaves:
            size = int(np.size(v))
            g_leaves.append(jnp.reshape(g_flat[offset : offset + size], jnp.shape(v)))
            offset += size
        grads = jax.tree.unflatten(v_def, g_leaves)
        updates, new_state = self.update(grads, self._state(dyn, clock), params)
        params_next = jax.tree.map(lambda p, u: p + u, params, updates)
        new_leaves = jax.tree.leaves(new_state)
        roles = self.structure.roles
        clock_next = tuple(
            _like(new_leaves[i], old) if roles[i] == "clock" else old
            for i, old in zip(self.clock_indices, clock, strict=True)
        )
        return self._pack(params_next, [new_leaves[i] for i in self.dynamic]), clock_next

    def z0(self, reference=None) -> jax.Array:
        r = jnp.ones(self.n) if reference is None else check_reference(reference, self.n)
        return jnp.concatenate([self.x0(), jnp.reshape(r, (self.n,)), jnp.zeros(self.n)])

    def matrices(self, hessian, z, clock):
        """``(A, B)``: the Jacobians of the map at ``z`` with the clock at ``clock``."""
        jac = jax.jacfwd(lambda zz: self.step(hessian, zz, clock)[0])(z)
        k = self.num_states
        return jac[:, :k], jac[:, k:]

    def advance(self, clock, hessian, z):
        """The clock one step on (it does not depend on ``z``)."""
        return self.step(hessian, z, clock)[1]


def build_loop(opt, n: int, *, params=None, state=None, freeze=None) -> ClosedLoop:
    """Check the inputs and build the :class:`ClosedLoop` of ``opt`` with ``n`` parameters.

    Must run with float64 enabled. Raises ValueError naming ``opt``, ``params``, ``state`` or
    ``freeze`` for inputs that cannot make a loop.
    """
    check_transform(opt)
    params = _resolve_params(opt, n, params)
    if state is None:
        state = opt.init(params)
    else:
        expected = jax.eval_shape(opt.init, params)
        if not _same_shapes(state, expected):
            raise ValueError(
                f"state: expected the tree structure and shapes of opt.init(params), "
                f"{describe_tree(expected)}, got {describe_tree(state)}"
            )
    grads = jax.tree.map(jnp.zeros_like, _view(params))
    try:
        updates, new_state = jax.eval_shape(opt.update, grads, state, params)
    except Exception as error:
        raise ValueError(f"opt: update(g, state, params) fails ({_one_line(error)})") from None
    if not _same_shapes(updates, params):
        raise ValueError(
            "opt: the update's tree structure or shapes differ from the parameters' "
            f"(updates {describe_tree(updates)}, parameters {describe_tree(params)})"
        )
    if not _same_shapes(new_state, state):
        raise ValueError(
            "opt: the state changes structure or shape between steps "
            f"({describe_tree(state)} -> {describe_tree(new_state)})"
        )
    names = tuple(
        jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(state)[0]
    )
    frozen = [
        f or r for f, r in zip(freeze_mask(state, freeze), registered_mask(state), strict=True)
    ]
    update = frozen_update(opt.update, grads, state, params, frozen) or opt.update
    structure = analyse(update, grads, state, params, frozen, names)
    return ClosedLoop(update, params, state, structure, names, n)
