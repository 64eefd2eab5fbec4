r"""One training run as small pure functions (``assembly.make_train`` joins them).

The pieces, each a pure function of its arguments (the PureJaxRL pattern):

- ``init(task, data, hparams, key) -> TrainState``: parameters, optimizer state, keys;
- ``draw_batch(task, data, state, t) -> (x, y, state)``: the mini-batch of step ``t``;
- ``train_step(task, data, hparams, state, t) -> TrainState``: one optimizer step, with
  ``freeze_diverged`` (the divergence mask) applied to its result;
- ``evaluate(task, data, state, step, hparams) -> metrics``: losses (and accuracy, gradient
  norm, sharpness, preconditioned sharpness, batch sharpness) on the evaluation sets;
- ``advance(task, data, hparams, state, start_step, num_intervals)``: a ``lax.scan`` over
  evaluation intervals, each a ``lax.scan`` over steps, then an evaluation.

``task`` (a ``Task``, built on the host by ``setup``) holds everything static: the
Flax model, the per-example loss, the optimizer factory and its fixed hyperparameters, sizes
and flags. ``data`` is the ``DeviceData`` pytree. The optimizer is built *inside* the step
from the traced hyperparameters, ``factory(**fixed, **hparams)``, so any numeric
hyperparameter can be swept without recompiling, and ``jax.jit(jax.vmap(train))`` trains a
whole grid of models in one program.

Mini-batches: at the start of every epoch each member draws a permutation of the training set
from its own key and walks through it in ``N // batch_size`` batches (the remainder is dropped
for that epoch); ``batch_size=None`` or ``N`` is full-batch gradient descent.

Divergence: after each step a member whose batch loss, new parameters or new optimizer state
is non-finite is frozen at its last finite parameters (``jnp.where`` on an ``alive`` mask, so
neither its NaNs nor anything else leak into other members), ``diverged_at`` records the
0-based index of that step (the member completed exactly ``diverged_at`` steps), and its
metrics are NaN from the next evaluation point on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gdyn_jax._deprecated import forwarder
from gdyn_jax.measurements import hessian, sharpness
from gdyn_jax.sweep.cpu_speedups import Kernels
from gdyn_jax.sweep.data import DeviceData, EvalChunks

if TYPE_CHECKING:
    import flax.linen as nn

PyTree = Any
Metrics = dict[str, jax.Array]
HParams = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    r"""The static pieces of a training run (host objects; nothing here is traced).

    Attributes:
      model: the Flax module (``apply({'params': p, **model_state}, x) -> outputs``).
      loss: per-example loss ``loss(outputs, targets) -> (batch,)``.
      optimizer: the factory, called as ``optimizer(**fixed, **hparams)``.
      fixed: fixed hyperparameters (Python floats: constants of the program).
      schedule: unit-peak learning-rate multiplier ``s(t)``, or None.
      num_train: training-set size; ``batch_size``: examples per step (``num_train`` for
        full batch).
      eval_every: steps per evaluation interval.
      accuracy: whether the targets are class labels (``test_accuracy`` is recorded).
      track_grad_norm, track_sharpness, sharpness_iters: optional metrics.
      kernels: the operations ``cpu_speedups`` provides (fast or plain).
      preconditioner: ``preconditioner(opt_state, hparams) -> P`` (a pytree like the
        parameters) when the preconditioned sharpness :math:`\lambda_{\max}(P^{-1}H)` is
        tracked, else None.
      batch_sharpness_batches: mini-batches the tracked batch sharpness averages over (0: not
        tracked; one batch, the training set, for full batch).
      sharpness_tol: the tracked (preconditioned) sharpness is warm-started from the last
        evaluation's eigenvector and stopped at this relative residual
        (``hessian.tracked_top_eigenvalue``); 0 runs ``sharpness_iters`` Lanczos steps from a
        random vector at every evaluation instead (``hessian.top_eigenvalue``).
    """

    model: nn.Module
    loss: Callable[[jax.Array, jax.Array], jax.Array]
    optimizer: Callable[..., optax.GradientTransformation]
    fixed: Mapping[str, float]
    schedule: Callable[[jax.Array], jax.Array] | None
    num_train: int
    batch_size: int
    eval_every: int
    accuracy: bool
    track_grad_norm: bool
    track_sharpness: bool
    sharpness_iters: int
    kernels: Kernels
    preconditioner: Callable[[PyTree, HParams], PyTree] | None = None
    batch_sharpness_batches: int = 0
    sharpness_tol: float = 0.0

    @property
    def full_batch(self) -> bool:
        return self.batch_size == self.num_train

    @property
    def metric_names(self) -> tuple[str, ...]:
        names = ("train_loss", "test_loss") + ("test_accuracy",) * self.accuracy
        names += ("grad_norm",) * self.track_grad_norm
        names += ("sharpness",) * self.track_sharpness
        names += ("preconditioned_sharpness",) * (self.preconditioner is not None)
        return names + ("batch_sharpness",) * (self.batch_sharpness_batches > 0)

    @property
    def tracked(self) -> tuple[str, ...]:
        """The curvatures whose eigenvectors the state carries (warm starts)."""
        if not self.sharpness_tol:
            return ()
        names = ("sharpness",) * self.track_sharpness
        return names + ("preconditioned_sharpness",) * (self.preconditioner is not None)


class TrainState(NamedTuple):
    """Everything one member carries from step to step.

    ``model_state`` holds the module's variable collections other than ``params`` (empty for
    the built-in models); ``alive`` is False from the first non-finite step on, and
    ``diverged_at`` the index of that step (-1 if none); ``data_key`` and ``sharpness_key``
    are raw key data; ``order`` is the current epoch's permutation (None for full batch);
    ``eigenvectors`` maps each warm-started curvature (``Task.tracked``) to the flat top
    eigenvector of the last evaluation (zeros before the first), else None.
    """

    params: PyTree
    model_state: PyTree
    opt_state: PyTree
    alive: jax.Array
    diverged_at: jax.Array
    data_key: jax.Array
    sharpness_key: jax.Array
    order: jax.Array | None
    eigenvectors: dict[str, jax.Array] | None = None


# ---------------------------------------------------------------------------------------------
# Model, loss, optimizer
# ---------------------------------------------------------------------------------------------


def apply(task: Task, params: PyTree, model_state: PyTree, x: jax.Array) -> jax.Array:
    """The model's outputs on inputs ``x``."""
    return task.model.apply({"params": params, **model_state}, x)


def mean_loss(task: Task, params: PyTree, model_state: PyTree, x: jax.Array, y: jax.Array):
    """The loss averaged over a batch."""
    return jnp.mean(task.loss(apply(task, params, model_state, x), y))


def optimizer_at(task: Task, hparams: HParams, step: jax.Array) -> optax.GradientTransformation:
    """The optimizer with the swept ``hparams`` (and the scheduled learning rate at ``step``)."""
    hp = {**task.fixed, **hparams}
    if task.schedule is not None:
        hp["learning_rate"] = hp["learning_rate"] * task.schedule(step)
    return task.optimizer(**hp)


# ---------------------------------------------------------------------------------------------
# The pieces of a run
# ---------------------------------------------------------------------------------------------


def init(task: Task, data: DeviceData, hparams: HParams, key: jax.Array) -> TrainState:
    """A member's initial state: ``key`` splits into the init, data-order and sharpness keys."""
    init_key, data_key, sharpness_key = jax.random.split(key, 3)
    variables = dict(task.model.init(init_key, data.x_train[:1]))
    params = variables.pop("params")
    opt_state = optimizer_at(task, hparams, jnp.int32(0)).init(params)
    return TrainState(
        params=params,
        model_state=variables,
        opt_state=opt_state,
        alive=jnp.array(True),
        diverged_at=jnp.array(-1, jnp.int32),
        data_key=jax.random.key_data(data_key),
        sharpness_key=jax.random.key_data(sharpness_key),
        order=None if task.full_batch else jnp.zeros((task.num_train,), jnp.int32),
        eigenvectors=_no_eigenvectors(task, params),
    )


def _no_eigenvectors(task: Task, params: PyTree) -> dict[str, jax.Array] | None:
    """Zero vectors (no previous evaluation) for the warm-started curvatures, or None."""
    if not task.tracked:
        return None
    n = sum(x.size for x in jax.tree.leaves(params))
    return {name: jnp.zeros((n,), jnp.float32) for name in task.tracked}


def epoch_order(task: Task, data_key: jax.Array, epoch: jax.Array) -> jax.Array:
    """The permutation of the training set for ``epoch``, from the member's data key."""
    key = jax.random.fold_in(jax.random.wrap_key_data(data_key), epoch)
    return task.kernels.permutation(key, task.num_train)


def draw_batch(task: Task, data: DeviceData, state: TrainState, t: jax.Array):
    """(x, y, state) for step ``t``: the next ``batch_size`` examples of the epoch's order."""
    if task.full_batch:
        return data.x_train, data.y_train, state
    steps_per_epoch = task.num_train // task.batch_size
    i, epoch = t % steps_per_epoch, t // steps_per_epoch
    # t is shared by all members, so this cond stays a cond under vmap.
    order = jax.lax.cond(
        i == 0, lambda: epoch_order(task, state.data_key, epoch), lambda: state.order
    )
    idx = jax.lax.dynamic_slice(order, (i * task.batch_size,), (task.batch_size,))
    return data.x_train[idx], data.y_train[idx], state._replace(order=order)


def _where(cond: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(cond, a, b), new, old)


def freeze_diverged(
    task: Task,
    state: TrainState,
    loss: jax.Array,
    params: PyTree,
    opt_state: PyTree,
    t: jax.Array,
) -> TrainState:
    """The divergence mask: take the step's ``params``/``opt_state`` only if all is finite.

    A member whose ``loss``, new parameters or new optimizer state is non-finite keeps its
    last finite ones, is marked dead, and ``diverged_at`` records ``t`` (once).
    """
    finite = (
        jnp.isfinite(loss) & task.kernels.all_finite(params) & task.kernels.all_finite(opt_state)
    )
    ok = state.alive & finite
    return state._replace(
        params=_where(ok, params, state.params),
        opt_state=_where(ok, opt_state, state.opt_state),
        alive=ok,
        diverged_at=jnp.where(state.alive & ~finite, t, state.diverged_at),
    )


def train_step(
    task: Task, data: DeviceData, hparams: HParams, state: TrainState, t: jax.Array
) -> TrainState:
    """Step ``t``: a batch, the loss and its gradient, the optimizer update, the mask."""
    return train_step_with_loss(task, data, hparams, state, t)[0]


def train_step_with_loss(
    task: Task, data: DeviceData, hparams: HParams, state: TrainState, t: jax.Array
) -> tuple[TrainState, jax.Array]:
    """``train_step`` and the batch loss at the parameters it started from."""
    x, y, state = draw_batch(task, data, state, t)
    loss, grads = jax.value_and_grad(mean_loss, argnums=1)(
        task, state.params, state.model_state, x, y
    )
    updates, opt_state = optimizer_at(task, hparams, t).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return freeze_diverged(task, state, loss, params, opt_state, t), loss


def dataset_stats(
    task: Task, params: PyTree, model_state: PyTree, chunks: EvalChunks, with_grad: bool
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """(mean loss, accuracy or None, gradient norm or None) over a chunked evaluation set."""
    # Products with 1 / total, not divisions by total: XLA rewrites a division of every
    # member's value by one shared scalar into this form in some programs and not in others,
    # which would make a member's metrics depend on the program around it (see groups.py).
    inverse = 1.0 / jnp.sum(chunks.w)

    def body(acc, batch):
        x, y, w = batch
        if with_grad:

            def weighted(p):
                out = apply(task, p, model_state, x)
                return jnp.sum(task.loss(out, y) * w), out

            (loss_sum, out), g = jax.value_and_grad(weighted, has_aux=True)(params)
            g_acc = jax.tree.map(jnp.add, acc[2], g)
        else:
            out = task.kernels.forward(lambda xb: apply(task, params, model_state, xb), x)
            loss_sum = jnp.sum(task.loss(out, y) * w)
            g_acc = acc[2]
        correct = acc[1]
        if task.accuracy:
            correct = correct + jnp.sum((jnp.argmax(out, -1) == y) * w)
        return (acc[0] + loss_sum, correct, g_acc), None

    g0 = jax.tree.map(jnp.zeros_like, params) if with_grad else None
    zero = jnp.zeros((), jnp.float32)
    (loss_sum, correct, g), _ = jax.lax.scan(body, (zero, zero, g0), chunks)
    gnorm = optax.tree.norm(g) * inverse if with_grad else None
    return loss_sum * inverse, (correct * inverse if task.accuracy else None), gnorm


def batch_sharpness(task: Task, data: DeviceData, state: TrainState, key: jax.Array):
    r"""The batch sharpness :math:`\mathbb{E}_B[g_B^\top H_B g_B/\|g_B\|^2]` of ``state``
    (``measurements.batch_sharpness``; Andreyev & Beneventano 2024) over
    ``task.batch_sharpness_batches`` mini-batches of ``task.batch_size`` examples, each a
    uniformly random subset of the training set drawn from ``key``; for full batch the one
    batch is the training set (the curvature of the training loss along its gradient)."""
    if task.full_batch:
        batches = (data.x_train[None], data.y_train[None])
    else:
        keys = jax.random.split(key, task.batch_sharpness_batches)
        draw = jax.vmap(lambda k: task.kernels.permutation(k, task.num_train)[: task.batch_size])
        idx = draw(keys)
        batches = (data.x_train[idx], data.y_train[idx])

    def loss(p, batch):
        return mean_loss(task, p, state.model_state, *batch)

    return sharpness.batch_sharpness(loss, state.params, batches)


def evaluate(
    task: Task, data: DeviceData, state: TrainState, step: jax.Array, hparams: HParams | None = None
) -> Metrics:
    """The metrics of ``state`` (NaN for a diverged member) at ``step``; ``hparams`` (the
    swept ones) are read by the preconditioned sharpness only."""
    return evaluate_tracked(task, data, state, step, hparams)[0]


def evaluate_tracked(
    task: Task, data: DeviceData, state: TrainState, step: jax.Array, hparams: HParams | None = None
) -> tuple[Metrics, TrainState]:
    """``evaluate``, and the state with the eigenvectors of the warm-started curvatures."""
    params, model_state = state.params, state.model_state
    train_loss, _, gnorm = dataset_stats(
        task, params, model_state, data.eval_train, task.track_grad_norm
    )
    test_loss, test_acc, _ = dataset_stats(task, params, model_state, data.eval_test, False)
    out = {"train_loss": train_loss, "test_loss": test_loss}
    if task.accuracy:
        out["test_accuracy"] = test_acc
    if task.track_grad_norm:
        out["grad_norm"] = gnorm
    key = jax.random.fold_in(jax.random.wrap_key_data(state.sharpness_key), step)
    curvatures, state = _curvatures(task, data, state, key, hparams)
    out.update(curvatures)
    if task.batch_sharpness_batches:
        out["batch_sharpness"] = batch_sharpness(task, data, state, jax.random.fold_in(key, 1))
    nan = jnp.float32(jnp.nan)
    return {k: jnp.where(state.alive, v.astype(jnp.float32), nan) for k, v in out.items()}, state


def _curvatures(task: Task, data: DeviceData, state: TrainState, key, hparams):
    """The sharpness and preconditioned sharpness (where tracked) and the state with their
    new eigenvectors (warm starts, ``Task.sharpness_tol``)."""
    params, model_state = state.params, state.model_state

    def sharpness_loss(p):
        return mean_loss(task, p, model_state, data.x_sharp, data.y_sharp)

    wanted = {"sharpness": None} if task.track_sharpness else {}
    if task.preconditioner is not None:
        p = task.preconditioner(state.opt_state, {} if hparams is None else hparams)
        wanted["preconditioned_sharpness"] = p
    out, vectors = {}, dict(state.eigenvectors or {})
    for name, p in wanted.items():
        if name in task.tracked:
            found = hessian.tracked_top_eigenvalue(
                sharpness_loss,
                params,
                vectors[name],
                key,
                task.sharpness_iters,
                task.sharpness_tol,
                preconditioner=p,
            )
            # a non-finite pair (Adam's P before any second moment) leaves no warm start
            finite = jnp.isfinite(found.value) & jnp.all(jnp.isfinite(found.vector))
            out[name] = found.value
            vectors[name] = jnp.where(finite, found.vector, 0.0)
        else:
            out[name] = hessian.top_eigenvalue(
                sharpness_loss, params, key, task.sharpness_iters, preconditioner=p
            )
    return out, state._replace(eigenvectors=vectors or None)


def advance(
    task: Task,
    data: DeviceData,
    hparams: HParams,
    state: TrainState,
    start_step: jax.Array,
    num_intervals: int,
) -> tuple[TrainState, Metrics, Metrics]:
    """``num_intervals`` evaluation intervals from ``start_step`` (shared by all members).

    Returns (state, first, metrics): ``first`` holds the metrics at ``start_step`` when it is
    0 (NaN otherwise), ``metrics`` those at the end of each interval (leading axis).
    """
    start_step = jnp.asarray(start_step, jnp.int32)

    def interval(state, j):
        s0 = start_step + j * task.eval_every

        def step(s, t):
            return train_step(task, data, hparams, s, t), None

        state, _ = jax.lax.scan(step, state, s0 + jnp.arange(task.eval_every))
        metrics, state = evaluate_tracked(task, data, state, s0 + task.eval_every, hparams)
        return state, metrics

    # Metrics at the start of the run, computed only when the block starts at step 0
    # (start_step is shared by all members, so this cond stays a cond under vmap).
    nan = {k: jnp.full((), jnp.nan, jnp.float32) for k in task.metric_names}
    first, state = jax.lax.cond(
        start_step == 0,
        lambda s: evaluate_tracked(task, data, s, start_step, hparams),
        lambda s: (nan, s),
        state,
    )
    state, metrics = jax.lax.scan(interval, state, jnp.arange(num_intervals))
    return state, first, metrics


def as_hparams(hparams: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Swept hyperparameters as float32 arrays (scalars, or (members,) under a sweep)."""
    return {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}


# make_train moved to gdyn_jax.sweep.assembly (one release; gdyn_jax.sweep.make_train stays).
__getattr__ = forwarder("gdyn_jax.sweep.train", "gdyn_jax.sweep.assembly")
