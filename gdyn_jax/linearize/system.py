r"""The closed loop of an update rule on a quadratic, as a discrete-time state-space system.

The loss is :math:`f(\theta) = \tfrac12 (\theta - r)^\top H (\theta - r)` and the optimizer sees
the gradient :math:`g = H(\theta - r) + w`, with :math:`r` the reference (where the optimum
sits) and :math:`w` gradient noise. With :math:`s` the optimizer's *dynamic* state, one step is

.. math::

    g_k = H(\theta_k - r_k) + w_k,\quad (u_k, s_{k+1}) = \mathrm{update}(g_k, s_k, \theta_k),
    \quad \theta_{k+1} = \theta_k + u_k,

so with :math:`x = [\theta; s]` (flattened) the loop is
:math:`x_{k+1} = A x_k + B [r_k; w_k]`, :math:`y_k = C x_k = \theta_k`, :math:`D = 0`.
:math:`A` and :math:`B` are ``jax.jacfwd`` of the one-step map, in float64. Bookkeeping state
leaves (integer step counts, hyperparameters injected by ``optax.inject_hyperparams``) are held
fixed at their value in ``state``, so they never appear as false poles at :math:`z = 1`.

For update rules that are affine in :math:`(x, r, w)` (SGD, heavy ball, EMA momentum, Nesterov,
PID) the Jacobians are exact and so are the transfer functions built from them. For other rules
(Adam, RMSProp, ...) the system is the local linearisation at the given point, with the step
count frozen; ``LinearSystem.exact`` says which case holds. It is decided numerically: the map is
affine iff its Jacobians at independent random points agree and the map's values satisfy
:math:`f(z) = f(z_0) + J (z - z_0)` there.

References: Wu, Jing, Du, Chen, Sci. China Inf. Sci. 64(5):150102, 2021 (optimizers as
control systems); Lessard, Recht, Packard, SIAM J. Optim. 26(1), 2016.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax.linearize import _compile

__all__ = [
    "LinearSystem",
    "linearize",
    "state_space",
    "dynamic_mask",
    "validate_hessian",
    "hessian_modes",
    "mode_systems",
    "linearize_grid",
    "grid_matrices",
]

INPUTS = ("reference", "noise")
_BOOKKEEPING = frozenset({"count", "hyperparams", "hyperparams_states", "step", "mini_step"})
_EXACT_RTOL = 1e-9
_EXACT_POINTS = 3


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class LinearSystem:
    r"""A discrete-time (``dt = 1`` optimizer step) state-space system.

    :math:`x_{k+1} = A x_k + B u_k`, :math:`y_k = C x_k + D u_k` with
    :math:`u = [r; w]` (reference then gradient noise, ``n`` each) and :math:`y = \theta`.

    Attributes:
      A, B, C, D: float64 arrays, shapes (k, k), (k, 2n), (n, k), (n, 2n). May carry leading
        batch dimensions (grids of systems), see :func:`gdyn_jax.linearize.linearize_grid`.
      exact: True when the one-step map is affine, so the system is the exact closed loop;
        False for a local linearisation; None when not checked (batched systems).
      inputs: the names of the input blocks, ``('reference', 'noise')``.
      num_params: n, the number of parameters (outputs).
      hessian: the (n, n) Hessian the loop was closed with.

    It is a JAX pytree (A, B, C, D are its leaves), so it can cross ``jax.vmap``/``jax.jit``.
    """

    A: Any
    B: Any
    C: Any
    D: Any
    exact: bool | None = None
    inputs: tuple[str, ...] = INPUTS
    num_params: int = 1
    hessian: Any = dataclasses.field(default=None, compare=False)

    @property
    def num_states(self) -> int:
        return int(np.shape(self.A)[-1])

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.A)[:-2])

    def input_matrix(self, input: str = "reference"):  # noqa: A002 - mirrors control's naming
        """The columns of ``B`` for one input block (``'reference'`` or ``'noise'``)."""
        if input not in self.inputs:
            raise ValueError(f"input: expected one of {self.inputs}, got {input!r}")
        i = self.inputs.index(input)
        n = self.num_params
        return self.B[..., i * n : (i + 1) * n]

    def tree_flatten(self):
        aux = (self.exact, self.inputs, self.num_params, _Opaque(self.hessian))
        return (self.A, self.B, self.C, self.D), aux

    @classmethod
    def tree_unflatten(cls, aux, children):
        exact, inputs, num_params, hessian = aux
        return cls(
            *children, exact=exact, inputs=inputs, num_params=num_params, hessian=hessian.value
        )


class _Opaque:
    """Static auxiliary data compared by identity (numpy arrays are not hashable)."""

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, _Opaque) and other.value is self.value

    def __hash__(self):
        return id(self.value)


# --------------------------------------------------------------------------- input checks


def validate_hessian(hessian) -> np.ndarray:
    """``hessian`` as a float64 (n, n) symmetric positive semi-definite matrix.

    A scalar must be a finite positive curvature; a matrix must be square, finite, symmetric
    and without negative eigenvalues. Raises ValueError naming ``hessian`` otherwise.
    """
    try:
        h = np.asarray(hessian, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"hessian: expected a number or a square matrix, got {hessian!r}") from (
            error
        )
    if h.ndim == 0:
        if not np.isfinite(h) or h <= 0:
            raise ValueError(f"hessian: expected a finite curvature > 0, got {float(h)}")
        return h.reshape(1, 1)
    if h.ndim != 2 or h.shape[0] != h.shape[1] or h.shape[0] == 0:
        raise ValueError(
            f"hessian: expected a scalar or a square (n, n) matrix, got shape {h.shape}"
        )
    if not np.all(np.isfinite(h)):
        raise ValueError("hessian: expected finite entries")
    scale = max(1.0, float(np.max(np.abs(h))))
    if not np.allclose(h, h.T, rtol=0, atol=1e-12 * scale):
        raise ValueError("hessian: expected a symmetric matrix")
    h = 0.5 * (h + h.T)
    if np.min(np.linalg.eigvalsh(h)) < -1e-12 * scale:
        raise ValueError("hessian: expected a positive semi-definite matrix (an eigenvalue is < 0)")
    return h


def hessian_modes(hessian) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and orthonormal eigenvectors (columns) of ``hessian``."""
    return np.linalg.eigh(validate_hessian(hessian))


# --------------------------------------------------------------------------- state split


def dynamic_mask(state) -> list[bool]:
    """Flat list (in ``jax.tree.leaves`` order) of which state leaves are dynamics.

    Uses ``gdyn_jax.optimizers.dynamic_state_mask`` when available; otherwise the same generic
    rule: a leaf is bookkeeping if its dtype is not inexact or a path entry is a bookkeeping
    name (``count``, ``hyperparams``, ``hyperparams_states``, ...). Non-inexact leaves are always
    held fixed (``jax.jacfwd`` cannot differentiate them).
    """
    leaves = jax.tree.leaves(state)
    try:
        from gdyn_jax.optimizers import dynamic_state_mask
    except ImportError:
        dynamic_state_mask = None
    if dynamic_state_mask is not None:
        mask = [bool(m) for m in jax.tree.leaves(dynamic_state_mask(state))]
    else:
        mask = []
        for path, _ in jax.tree_util.tree_flatten_with_path(state)[0]:
            names = {getattr(e, "name", getattr(e, "key", None)) for e in path}
            mask.append(not (names & _BOOKKEEPING))
    inexact = [jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) for leaf in leaves]
    return [bool(m and i) for m, i in zip(mask, inexact, strict=True)]


# --------------------------------------------------------------------------- the loop


def _one_step_map(opt: optax.GradientTransformation, hessian, params, state):
    """The one-step map ``z = [x; r; w] -> x'`` as a flat function, and its point ``x0``."""
    n = hessian.shape[-1]
    leaves, treedef = jax.tree.flatten(state)
    mask = dynamic_mask(state)
    dyn_shapes = [jnp.shape(leaf) for leaf, m in zip(leaves, mask, strict=True) if m]
    dyn_dtypes = [jnp.result_type(leaf) for leaf, m in zip(leaves, mask, strict=True) if m]
    sizes = [int(np.prod(s)) for s in dyn_shapes]

    def pack(theta, state_leaves):
        parts = [jnp.reshape(theta, (n,))]
        parts += [jnp.ravel(leaf) for leaf, m in zip(state_leaves, mask, strict=True) if m]
        return jnp.concatenate([p.astype(jnp.float64) for p in parts])

    def unpack(x):
        theta = x[:n]
        offset, dyn = n, []
        for shape, dtype, size in zip(dyn_shapes, dyn_dtypes, sizes, strict=True):
            dyn.append(jnp.reshape(x[offset : offset + size], shape).astype(dtype))
            offset += size
        it = iter(dyn)
        full = [next(it) if m else leaf for leaf, m in zip(leaves, mask, strict=True)]
        return theta, jax.tree.unflatten(treedef, full)

    def step(z):
        k = z.shape[0] - 2 * n
        x, r, w = z[:k], z[k : k + n], z[k + n :]
        theta, s = unpack(x)
        g = hessian @ (theta - r) + w
        u, s_next = opt.update(g, s, theta)
        return pack(theta + u, jax.tree.leaves(s_next))

    return step, pack(params, leaves)


def state_space(
    opt: optax.GradientTransformation, hessian, params=None, state=None, reference=None
):
    r"""``(A, B)`` of the closed loop: traceable (use under ``jax.vmap``/``jax.jit``).

    No input validation and no float64 scope: call it inside ``with jax.enable_x64(True):``.
    ``hessian`` is an (n, n) array; the Jacobians are taken at :math:`\theta` = ``params``
    (default 0), the optimizer ``state`` (default ``opt.init(params)``), :math:`r` =
    ``reference`` (default 1, the start of the step response) and :math:`w = 0`.
    """
    hessian = jnp.asarray(hessian, jnp.float64)
    n = hessian.shape[-1]
    params = jnp.zeros(n, jnp.float64) if params is None else jnp.asarray(params, jnp.float64)
    params = jnp.reshape(params, (n,))
    state = opt.init(params) if state is None else state
    reference = jnp.ones(n, jnp.float64) if reference is None else reference
    step, x0 = _one_step_map(opt, hessian, params, state)
    k = x0.shape[0]
    z0 = jnp.concatenate(
        [x0, jnp.reshape(jnp.asarray(reference, jnp.float64), (n,)), jnp.zeros(n, jnp.float64)]
    )
    jac = jax.jacfwd(step)(z0)
    return jac[:, :k], jac[:, k:]


def _jacobians_at(step: Callable, z0: jax.Array, num_points: int = _EXACT_POINTS):
    """Values and Jacobians of ``step`` at ``z0`` and at ``num_points`` random points."""
    rng = np.random.default_rng(0)
    zs = jnp.concatenate(
        [z0[None], z0 + jnp.asarray(rng.normal(size=(num_points,) + z0.shape) * 2.0)]
    )

    def both(z):
        return step(z), jax.jacfwd(step)(z)

    values, jacs = jax.vmap(both)(zs)  # eager: cheaper than compiling for one small system
    return zs, np.asarray(values), np.asarray(jacs)


def _is_affine(zs: np.ndarray, values: np.ndarray, jacs: np.ndarray) -> bool:
    """True iff equal Jacobians and exact first-order values at the points ``zs[1:]``."""
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(jacs))):
        return False
    zs = np.asarray(zs)
    f0, j0 = values[0], jacs[0]
    scale = 1.0 + float(np.max(np.abs(j0)))
    for z, f, j in zip(zs[1:], values[1:], jacs[1:], strict=True):
        dz = z - zs[0]
        tol = _EXACT_RTOL * scale * (1.0 + float(np.max(np.abs(dz))))
        if float(np.max(np.abs(j - j0))) > tol:
            return False
        if float(np.max(np.abs(f - f0 - j0 @ dz))) > tol * (1.0 + float(np.max(np.abs(f0)))):
            return False
    return True


def linearize(
    opt: optax.GradientTransformation, hessian, *, params=None, state=None, reference=None
) -> LinearSystem:
    r"""The closed loop of ``opt`` on :math:`\tfrac12(\theta-r)^\top H(\theta-r)` as a LinearSystem.

    Args:
      opt: any ``optax.GradientTransformation`` (gdyn_jax's optimizers or optax's own).
      hessian: a positive curvature (one parameter) or a symmetric PSD (n, n) matrix.
      params: the parameters :math:`\theta` at the linearisation point, shape (n,) (default 0).
      state: the optimizer state there (default ``opt.init(params)``). Bookkeeping leaves
        (counts, injected hyperparameters) are held at these values.
      reference: :math:`r` at the linearisation point (default 1: the start of the step
        response, where a non-affine rule such as Adam sees a non-zero gradient).

    Returns:
      A :class:`LinearSystem` with numpy float64 ``A, B, C, D`` and ``exact`` (the map is
      affine, so this is the exact closed loop) decided numerically.

    Example: heavy ball with a = 0.1, β = 0.9 on h = 2 has the characteristic polynomial
    :math:`\det(zI - A) = z^2 - 1.7 z + 0.9`.
    """
    h = validate_hessian(hessian)
    return _linearize(opt, h, params=params, state=state, reference=reference)


def _linearize(opt, h: np.ndarray, *, params=None, state=None, reference=None) -> LinearSystem:
    n = h.shape[0]
    with jax.enable_x64(True):
        hj = jnp.asarray(h)
        p = jnp.zeros(n) if params is None else jnp.reshape(jnp.asarray(params, jnp.float64), (n,))
        s = opt.init(p) if state is None else state
        ref = jnp.ones(n) if reference is None else reference
        step, x0 = _one_step_map(opt, hj, p, s)
        k = x0.shape[0]
        z0 = jnp.concatenate([x0, jnp.reshape(jnp.asarray(ref, jnp.float64), (n,)), jnp.zeros(n)])
        zs, values, jacs = _jacobians_at(step, z0)
        exact = _is_affine(zs, values, jacs)
        A = np.array(jacs[0][:, :k], np.float64)
        B = np.array(jacs[0][:, k:], np.float64)
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(B))):
        raise ValueError(
            "state: the update rule has no finite Jacobian at this point (e.g. Adam where the "
            "gradient and second moment are 0); pass params/state/reference with a non-zero "
            "gradient"
        )
    C = np.zeros((n, k))
    C[:, :n] = np.eye(n)
    D = np.zeros((n, 2 * n))
    return LinearSystem(A, B, C, D, exact=exact, inputs=INPUTS, num_params=n, hessian=h)


def mode_systems(opt: optax.GradientTransformation, hessian) -> list[tuple[float, LinearSystem]]:
    r"""The per-eigenmode view: one scalar loop per eigenvalue :math:`\lambda_i` of ``hessian``.

    Along the eigenvector :math:`q_i`, the coordinate :math:`q_i^\top\theta` of a rotation-
    equivariant linear rule (SGD, heavy ball, Nesterov, EMA momentum, PID) evolves as the scalar
    loop with curvature :math:`\lambda_i`, and the poles of the full system are the union of
    the modes' poles. For coordinate-wise non-linear rules (Adam) the modes are only a view.
    Zero eigenvalues give the open-loop (marginal) mode.
    """
    eigenvalues, _ = hessian_modes(hessian)
    return [
        (float(lam), _linearize(opt, np.array([[max(float(lam), 0.0)]]))) for lam in eigenvalues
    ]


def linearize_grid(
    factory: Callable[..., optax.GradientTransformation], grid: dict, hessian, **fixed
) -> LinearSystem:
    r"""Closed loops for every point of a cartesian grid of hyperparameters, vectorised.

    ``grid`` maps hyperparameter names to 1-D arrays; the result is a batched
    :class:`LinearSystem` whose ``A`` has shape ``grid_shape + (k, k)``, computed with one
    ``jax.jit(jax.vmap(jax.jacfwd(...)))``. ``fixed`` are further constant hyperparameters.
    ``exact`` is None (not checked per point).
    """
    h = validate_hessian(hessian)
    A, B = grid_matrices(factory, grid, h, **fixed)
    n = h.shape[0]
    k = A.shape[-1]
    batch = A.shape[:-2]
    C = np.zeros((n, k))
    C[:, :n] = np.eye(n)
    C = np.broadcast_to(C, batch + C.shape).copy()
    D = np.zeros(batch + (n, 2 * n))
    return LinearSystem(A, B, C, D, exact=None, inputs=INPUTS, num_params=n, hessian=h)


def _grid_points(grid: dict) -> tuple[list[str], tuple[int, ...], list[np.ndarray]]:
    if not isinstance(grid, dict) or not grid:
        raise ValueError("grid: expected a non-empty dict name -> 1-D array of values")
    names = list(grid)
    axes = []
    for name in names:
        values = np.asarray(grid[name], dtype=np.float64)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(f"grid: {name!r} must be a non-empty 1-D array of values")
        axes.append(values)
    mesh = np.meshgrid(*axes, indexing="ij")
    shape = mesh[0].shape
    return names, shape, [m.ravel() for m in mesh]


_GRID_CACHE: dict = {}


def _grid_fn(factory, names: tuple[str, ...], fixed: dict):
    """``jit(vmap(state_space))`` over grid points, cached per (factory, names, fixed)."""
    try:
        key = (factory, names, tuple(sorted((k, float(v)) for k, v in fixed.items())))
        hash(key)
    except (TypeError, ValueError):
        key = None
    if key is not None and key in _GRID_CACHE:
        return _GRID_CACHE[key]

    def one(values, hessian):
        hp = dict(fixed)
        hp.update(zip(names, values, strict=True))
        return state_space(factory(**hp), hessian)

    fn = _compile.jit(jax.vmap(one, in_axes=(0, None)))
    if key is not None:
        if len(_GRID_CACHE) > 32:
            _GRID_CACHE.clear()
        _GRID_CACHE[key] = fn
    return fn


def grid_matrices(factory, grid: dict, hessian: np.ndarray, **fixed):
    """(A, B) as float64 numpy arrays of shape ``grid_shape + (k, k)`` / ``(k, 2n)``."""
    names, shape, flat = _grid_points(grid)
    with jax.enable_x64(True):
        fn = _grid_fn(factory, tuple(names), fixed)
        A, B = fn(np.stack(flat, axis=1), np.asarray(hessian, np.float64))  # numpy: no eager ops
        A, B = np.asarray(A), np.asarray(B)
    return A.reshape(shape + A.shape[1:]), B.reshape(shape + B.shape[1:])
