r"""The closed loop of an update rule on a quadratic, as a discrete-time state-space system.

The loss is :math:`f(\theta) = \tfrac12 (\theta - r)^\top H (\theta - r)` and the optimizer sees
the gradient :math:`g = H(\theta - r) + w`, with :math:`r` the reference (where the optimum
sits) and :math:`w` gradient noise. With :math:`s` the optimizer's *dynamic* state, one step is

.. math::

    g_k = H(\theta_k - r_k) + w_k,\quad (u_k, s_{k+1}) = \mathrm{update}(g_k, s_k, \theta_k),
    \quad \theta_{k+1} = \theta_k + u_k,

so with :math:`x = [\theta; s]` (flattened) the loop is
:math:`x_{k+1} = A x_k + B [r_k; w_k]`, :math:`y_k = C x_k = \theta_k`, :math:`D = 0`.
:math:`A` and :math:`B` are ``jax.jacfwd`` of the one-step map, in float64.

Which state leaves are dynamic is read from what the step does
(:mod:`gdyn_jax.state_structure`): a leaf whose next value depends on the parameters or
gradient (directly or through other dynamic leaves) is a state; the rest is the rule's *clock*
(step counts, schedule states, weight sums, injected hyperparameters, random keys), advanced by
the rule and never linearised, so it never shows up as a false pole at :math:`z = 1`.
``LinearSystem.exact`` is True only when the map is proven affine, time-invariant and
deterministic (:mod:`.exactness`); ``reason`` says what fails.

References: Wu, Jing, Du, Chen, Sci. China Inf. Sci. 64(5):150102, 2021 (optimizers as
control systems); Lessard, Recht, Packard, SIAM J. Optim. 26(1), 2016.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax._deprecated import forwarder
from gdyn_jax.linearize.exactness import verdict
from gdyn_jax.linearize.lifting import lift, matrix_sequence
from gdyn_jax.linearize.loop import build_loop
from gdyn_jax.state_structure import dynamic_state_mask

__all__ = [
    "LinearSystem",
    "LoopOverflowError",
    "linearize",
    "state_space",
    "dynamic_mask",
    "validate_hessian",
    "hessian_modes",
    "mode_systems",
]

INPUTS = ("reference", "noise")


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class LinearSystem:
    r"""A discrete-time (``dt = 1`` optimizer step) state-space system.

    :math:`x_{k+1} = A x_k + B u_k`, :math:`y_k = C x_k + D u_k` with
    :math:`u = [r; w]` (reference then gradient noise) and :math:`y = \theta`.

    Attributes:
      A, B, C, D: float64 arrays, shapes (k, k), (k, m), (n, k), (n, m). May carry leading
        batch dimensions (grids of systems), see :func:`gdyn_jax.linearize.linearize_grid`.
      exact: True when the system is the exact closed loop (affine, time-invariant,
        deterministic); False otherwise (then see ``reason``); None when not checked.
      inputs: the names of the input blocks, ``('reference', 'noise')``: ``n`` columns of
        reference, then ``n * period`` of noise (one block per step of the period).
      num_params: n, the number of parameters (outputs).
      hessian: the (n, n) Hessian the loop was closed with.
      reason: why the system is not exact, as tags in this order: ``'nonlinear'`` (the one-step
        map is not proven affine), ``'random'`` (it draws from a random key),
        ``'time-varying'`` (it depends on an advancing clock), ``'periodic'`` (it does, with a
        period); empty when exact.
      notes: one sentence per tag of ``reason``, saying which primitive or leaf is the cause.
      period: optimizer steps per step of this system: 1, or k for the lifted system of a
        periodic rule (:func:`gdyn_jax.linearize.linearize_periodic`).
      frozen: the paths of state leaves held fixed on request (``freeze``).
      lifted: for the per-step system of a periodic rule (``'periodic'`` in ``reason``,
        ``period`` 1: the matrices of one step with the clock frozen, which are not the rule's
        loop), its exact lifted system (:func:`~gdyn_jax.linearize.linearize_periodic`); the
        per-step spectral radius and stability come from it, :math:`\rho(\Phi_k)^{1/k}`, and
        analyses with no per-step meaning (transfer function, responses, step_info, noise
        floor) refuse the per-step system. None otherwise.

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
    reason: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    period: int = 1
    frozen: tuple[str, ...] = ()
    lifted: Any = dataclasses.field(default=None, compare=False)

    @property
    def num_states(self) -> int:
        return int(np.shape(self.A)[-1])

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.A)[:-2])

    def input_slice(self, input: str = "reference") -> slice:  # noqa: A002
        """The columns of ``B`` and ``D`` that belong to one input block."""
        if input not in self.inputs:
            raise ValueError(f"input: expected one of {self.inputs}, got {input!r}")
        n = self.num_params
        widths = [n if name == "reference" else n * self.period for name in self.inputs]
        i = self.inputs.index(input)
        start = sum(widths[:i])
        return slice(start, start + widths[i])

    def input_matrix(self, input: str = "reference"):  # noqa: A002 - mirrors control's naming
        """The columns of ``B`` for one input block (``'reference'`` or ``'noise'``)."""
        return self.B[..., self.input_slice(input)]

    def tree_flatten(self):
        aux = (
            self.exact,
            self.inputs,
            self.num_params,
            _Opaque(self.hessian),
            self.reason,
            self.notes,
            self.period,
            self.frozen,
            _Opaque(self.lifted),
        )
        return (self.A, self.B, self.C, self.D), aux

    @classmethod
    def tree_unflatten(cls, aux, children):
        exact, inputs, num_params, hessian, reason, notes, period, frozen, lifted = aux
        return cls(
            *children,
            exact=exact,
            inputs=inputs,
            num_params=num_params,
            hessian=hessian.value,
            reason=reason,
            notes=notes,
            period=period,
            frozen=frozen,
            lifted=lifted.value,
        )

    @property
    def per_step_of_periodic(self) -> bool:
        """True for the per-step system (clock frozen) of a periodic rule (see ``lifted``)."""
        return self.period == 1 and "periodic" in self.reason


class _Opaque:
    """Static auxiliary data compared by identity (numpy arrays are not hashable)."""

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, _Opaque) and other.value is self.value

    def __hash__(self):
        return id(self.value)


# --------------------------------------------------------------------------- input checks


def _real_array(hessian) -> np.ndarray:
    """``hessian`` as float64, refusing what is not real numbers: a bool (``hessian=True`` is
    not the curvature 1), a complex matrix (its imaginary part would be dropped), text."""
    try:
        raw = np.asarray(hessian)
    except (TypeError, ValueError):  # ragged nested lists
        raw = np.asarray(None)
    kind = raw.dtype.kind
    if kind == "b":
        raise ValueError(f"hessian: expected real numbers, got booleans ({_short(hessian)})")
    if kind == "c":
        raise ValueError(
            "hessian: expected a real matrix, got a complex one (a Hessian is real symmetric; "
            "the imaginary part would be dropped)"
        )
    if kind not in "iuf":
        raise ValueError(f"hessian: expected a number or a square matrix, got {_short(hessian)}")
    return raw.astype(np.float64)


def _short(value) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def validate_hessian(hessian) -> np.ndarray:
    """``hessian`` as a float64 (n, n) symmetric positive semi-definite matrix.

    One curvature (a scalar or a 1 x 1 matrix, treated alike) must be finite and > 0; a larger
    matrix must be square, finite, symmetric and without negative eigenvalues (a flat
    direction is allowed there); booleans and complex entries are refused, not converted.
    Raises ValueError naming ``hessian`` otherwise, in one line.
    """
    h = _real_array(hessian)
    if h.ndim == 0 or h.shape == (1, 1):  # one curvature, however it is written
        value = float(h.reshape(()))
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"hessian: expected a finite curvature > 0, got {value}")
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


def dynamic_mask(state, opt=None, *, params=None, freeze=None) -> list[bool]:
    """Flat list (in ``jax.tree.leaves`` order) of which state leaves are loop states.

    .. deprecated:: 0.1.0
       Use :func:`gdyn_jax.state_structure.dynamic_state_mask` (re-exported as
       ``gdyn_jax.optimizers.dynamic_state_mask``), the one mask: a pytree of bools whose
       ``jax.tree.leaves`` are this list. ``dynamic_mask`` goes in the next release.

    With the rule ``opt`` and the ``params`` the state is for: the leaves whose next value
    depends on the parameters, the gradient or another dynamic leaf, read from one update
    step's jaxpr, in the loop :func:`linearize` builds (``freeze`` holds leaves fixed there).
    Without the rule: the name-based fallback.
    """
    warnings.warn(
        "gdyn_jax.linearize.dynamic_mask is deprecated: use gdyn_jax.optimizers."
        "dynamic_state_mask (a pytree; jax.tree.leaves of it is this list); it goes in the "
        "next release",
        DeprecationWarning,
        stacklevel=2,
    )
    if opt is None:
        return [bool(m) for m in jax.tree.leaves(dynamic_state_mask(state))]
    if params is None:
        raise ValueError("params: the structural mask needs the parameters the state is for")
    with jax.enable_x64(True):
        n = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(getattr(params, "fast", params)))
        loop = build_loop(opt, n, params=params, state=state, freeze=freeze)
    return [role == "dynamic" for role in loop.structure.roles]


# --------------------------------------------------------------------------- the loop


def state_space(
    opt: optax.GradientTransformation,
    hessian,
    params=None,
    state=None,
    reference=None,
    *,
    freeze=None,
):
    r"""``(A, B)`` of the closed loop: traceable (use under ``jax.vmap``/``jax.jit``).

    No float64 scope: call it inside ``with jax.enable_x64(True):``. ``hessian`` is an (n, n)
    array; the Jacobians are taken at the parameters ``params`` (default 0), the optimizer
    ``state`` (default ``opt.init(params)``), :math:`r` = ``reference`` (default 1, the start of
    the step response) and :math:`w = 0`, with the clock where ``state`` has it. The loop is
    built from the rule's structure (:func:`linearize` documents the rest), which depends only
    on the traced program, not on the values of traced hyperparameters.
    """
    hessian = jnp.asarray(hessian, jnp.float64)
    loop = build_loop(opt, hessian.shape[-1], params=params, state=state, freeze=freeze)
    return loop.matrices(hessian, loop.z0(reference), loop.clock0)


def linearize(
    opt: optax.GradientTransformation,
    hessian,
    *,
    params=None,
    state=None,
    reference=None,
    freeze=None,
) -> LinearSystem:
    r"""The closed loop of ``opt`` on :math:`\tfrac12(\theta-r)^\top H(\theta-r)` as a LinearSystem.

    Args:
      opt: any ``optax.GradientTransformation`` (or object with ``init``/``update``, such as
        ``optax.MultiSteps``): gdyn_jax's optimizers, optax's own, wrappers, schedules.
      hessian: a positive curvature (one parameter) or a symmetric PSD (n, n) matrix.
      params: the parameters at the linearisation point (default 0): a vector of n values or
        any pytree the rule takes (``optax.LookaheadParams``: the gradient is taken at
        ``.fast``, which is the output).
      state: the optimizer state there (default ``opt.init(params)``). The clock (step counts,
        schedule states, ...) is read at its value in ``state``.
      reference: :math:`r` at the linearisation point (default 1: the start of the step
        response, where a non-affine rule such as Adam sees a non-zero gradient).
      freeze: state leaves to hold fixed, by field name (``('nu', 'count')``) or as a pytree of
        bools shaped like ``state``: the step then reads their value in ``state`` wherever it
        would read their new value (see :mod:`gdyn_jax.linearize.freeze`). The system is the
        exact loop *of the rule with those leaves frozen*: Adam with ``('nu', 'count')``
        frozen is a linear loop in (θ, m) with the fixed preconditioner
        :math:`P = \sqrt{\nu/(1-\beta_2^c)} + \epsilon` (Cohen et al. 2022's model), which the
        real Adam follows only while ν moves slowly. ``system.frozen`` lists them.

    Returns:
      A :class:`LinearSystem` with numpy float64 ``A, B, C, D`` at the clock in ``state``.
      ``exact`` is True only when the one-step map is proven affine, time-invariant and
      deterministic (:mod:`gdyn_jax.linearize.exactness`); otherwise ``reason`` holds the tags
      (``'nonlinear'``, ``'random'``, ``'time-varying'``, ``'periodic'``) and ``notes`` say why,
      and the system is the loop with the clock frozen at ``state``'s (a local linearisation
      for nonlinear rules). Time-varying and periodic rules have exact analyses of their own:
      :func:`~gdyn_jax.linearize.linearize_time_varying`,
      :func:`~gdyn_jax.linearize.linearize_periodic`.

    Example: heavy ball with a = 0.1, β = 0.9 on h = 2 has the characteristic polynomial
    :math:`\det(zI - A) = z^2 - 1.7 z + 0.9`.
    """
    h = validate_hessian(hessian)
    return _linearize(opt, h, params=params, state=state, reference=reference, freeze=freeze)


def _linearize(
    opt, h: np.ndarray, *, params=None, state=None, reference=None, freeze=None
) -> LinearSystem:
    n = h.shape[0]
    with jax.enable_x64(True):
        loop = build_loop(opt, n, params=params, state=state, freeze=freeze)
        z0 = loop.z0(reference)
        proof, jac = verdict(loop, h, z0)
        k = loop.num_states
        A = np.array(jac[:, :k], np.float64)
        B = np.array(jac[:, k:], np.float64)
        lifted = None
        if "periodic" in proof.reason and proof.period:
            Phi, B_lift = lift(*matrix_sequence(loop, h, z0, proof.period), n)
            lifted = (Phi, B_lift, proof.period)
    _check_finite(A, B)
    C = loop.output_matrix()
    kept = [i for i, tag in enumerate(proof.reason) if tag in ("nonlinear", "random")]
    if lifted is not None:
        Phi, B_lift, period = lifted
        lifted = LinearSystem(
            Phi,
            B_lift,
            C,
            np.zeros((n, n * (1 + period))),
            exact=not kept,
            num_params=n,
            hessian=h,
            reason=tuple(proof.reason[i] for i in kept),
            notes=tuple(proof.notes[i] for i in kept),
            period=period,
            frozen=loop.frozen_names,
        )
    return LinearSystem(
        A,
        B,
        C,
        np.zeros((n, 2 * n)),
        exact=proof.exact,
        inputs=INPUTS,
        num_params=n,
        hessian=h,
        reason=proof.reason,
        notes=proof.notes,
        frozen=loop.frozen_names,
        lifted=lifted,
    )


class LoopOverflowError(ValueError):
    """The closed loop does not fit in float64: a Jacobian entry is infinite (the step size
    times the curvature, or a hyperparameter, beyond 1.8e308)."""


def _check_finite(A: np.ndarray, B: np.ndarray) -> None:
    """Infinite entries are an overflow of the loop's numbers; NaN ones a rule without a finite
    derivative at this point (Adam where the gradient and the second moment are 0)."""
    values = np.concatenate([A.ravel(), B.ravel()])
    if np.all(np.isfinite(values)):
        return
    if not np.any(np.isnan(values)):
        raise LoopOverflowError(
            "hessian: the closed loop overflows float64 (a Jacobian entry is infinite: the "
            "step size times the curvature, or a hyperparameter, exceeds 1.8e308); expected "
            "smaller values"
        )
    raise ValueError(
        "state: the update rule has no finite Jacobian at this point (e.g. Adam where the "
        "gradient and second moment are 0); pass params/state/reference with a non-zero "
        "gradient"
    )


def require_per_step(system, what: str) -> None:
    """ValueError naming ``system`` when it is the per-step system of a periodic rule, whose
    one-step matrices (clock frozen) are not the rule's loop, so ``what`` has no meaning."""
    if isinstance(system, LinearSystem) and system.per_step_of_periodic:
        lifted = system.lifted
        period = f" (period {lifted.period})" if lifted is not None else ""
        raise ValueError(
            f"system: {what} of a periodic rule{period} has no per-step meaning (the one-step "
            "matrices, with the clock frozen, are not the rule's loop); use "
            "linearize_periodic(opt, hessian), one step per period"
        )


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


# linearize_grid, grid_matrices and grid_proof moved to gdyn_jax.linearize.grid
__getattr__ = forwarder("gdyn_jax.linearize.system", "gdyn_jax.linearize.grid")
