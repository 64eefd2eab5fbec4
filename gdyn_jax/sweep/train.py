r"""One training run as a pure function: ``make_train(config) -> train(hparams, key)``.

The whole loop is a ``lax.scan`` (an outer scan over evaluation intervals, an inner one over
steps) with the dataset on the device, so ``jax.jit(jax.vmap(train))`` trains a whole grid of
models in one program (the PureJaxRL pattern). The optimizer is built *inside* the function
from the traced hyperparameters, ``optimizers.get(config.optimizer)(**fixed, **hparams)``, so
any numeric hyperparameter can be swept without recompiling.

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
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax.sweep.config import SweepConfig

PyTree = Any
Carry = dict[str, Any]
Metrics = dict[str, jax.Array]


# ---------------------------------------------------------------------------------------------
# Data on the device
# ---------------------------------------------------------------------------------------------


def load_arrays(config: SweepConfig) -> dict[str, np.ndarray]:
    """Loads train/test arrays on the host and checks the batch size against them."""
    from gdyn_jax import data

    x_train, y_train = data.load(config.dataset, "train", config.data_dir)
    x_test, y_test = data.load(config.dataset, "test", config.data_dir)
    if config.train_subset is not None:
        if config.train_subset > len(x_train):
            raise ValueError(
                f"train_subset: {config.train_subset} is larger than the training set "
                f"({len(x_train)} examples)"
            )
        x_train, y_train = x_train[: config.train_subset], y_train[: config.train_subset]
    n = len(x_train)
    if config.batch_size is not None and config.batch_size > n:
        raise ValueError(
            f"batch_size: {config.batch_size} is larger than the training set ({n} examples)"
        )
    return {
        "x_train": np.asarray(x_train, np.float32),
        "y_train": np.asarray(y_train, np.int32),
        "x_test": np.asarray(x_test, np.float32),
        "y_test": np.asarray(y_test, np.int32),
    }


def _chunked(x: np.ndarray, y: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Pads (x, y) to a multiple of ``size`` and reshapes to (chunks, size, ...) + weights."""
    n = len(x)
    size = min(size, n)
    k = math.ceil(n / size)
    pad = k * size - n
    w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    y = np.concatenate([y, np.zeros(pad, y.dtype)])
    return {
        "x": x.reshape((k, size) + x.shape[1:]),
        "y": y.reshape(k, size),
        "w": w.reshape(k, size),
    }


def device_data(config: SweepConfig, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The arrays the program reads: training set, chunked eval sets, sharpness subset."""
    out = {
        "x_train": arrays["x_train"],
        "y_train": arrays["y_train"],
        "eval_train": _chunked(arrays["x_train"], arrays["y_train"], config.eval_batch_size),
        "eval_test": _chunked(arrays["x_test"], arrays["y_test"], config.eval_batch_size),
    }
    if config.track_sharpness:
        m = min(config.sharpness_subset, len(arrays["x_train"]))
        out["x_sharp"] = arrays["x_train"][:m]
        out["y_sharp"] = arrays["y_train"][:m]
    return jax.tree.map(jnp.asarray, out)


# ---------------------------------------------------------------------------------------------
# Losses and schedules
# ---------------------------------------------------------------------------------------------


def per_example_loss(loss: str, logits: jax.Array, labels: jax.Array) -> jax.Array:
    r"""Per-example loss.

    ``'cross_entropy'``: :math:`-\log \mathrm{softmax}(z)_y`.
    ``'mse'``: :math:`\tfrac12 \sum_c (z_c - e_{y,c})^2`, the square loss on one-hot targets of
    Cohen et al. (2021) (summed over classes, averaged over examples by the caller).
    """
    if loss == "cross_entropy":
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return 0.5 * jnp.sum((logits - onehot) ** 2, axis=-1)


def unit_schedule(name: str | None, steps: int, warmup_steps: int = 0) -> Callable | None:
    r"""A learning-rate multiplier :math:`s(t)` with peak 1; the sweep uses :math:`a\,s(t)`.

    optax schedule constructors reject traced arguments (their checks are Python ``if``\ s),
    so the traced peak multiplies a unit schedule instead.
    """
    if name in (None, "constant"):
        return None
    if name == "cosine":
        return optax.cosine_decay_schedule(1.0, steps)
    if name == "linear":
        return optax.linear_schedule(1.0, 0.0, steps)
    if name == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, 1.0, max(warmup_steps, 0), steps)
    raise ValueError(f"schedule: unknown schedule {name!r}")


# ---------------------------------------------------------------------------------------------
# The program
# ---------------------------------------------------------------------------------------------


def _tree_all_finite(tree: PyTree) -> jax.Array:
    r"""Whether every inexact leaf of ``tree`` is finite, one fused reduction per leaf.

    :math:`\sum_i 0 \cdot x_i` is 0 when every :math:`x_i` is finite and NaN as soon as one is
    :math:`\pm\infty` or NaN (:math:`0 \cdot \infty = \mathrm{NaN}`), so one float sum per
    leaf replaces ``all(isfinite(x))`` (which XLA:CPU runs as several unfused passes).
    """
    sums = [
        jnp.sum(jnp.asarray(x) * jnp.zeros((), jnp.asarray(x).dtype)).real
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)
    ]
    return jnp.isfinite(sum(sums)) if sums else jnp.array(True)


def _stable_argsort_u32(bits: jax.Array) -> jax.Array:
    r"""``lax.sort_key_val(bits, arange(n))[1]`` (a stable argsort of uint32 keys), faster.

    Each key is packed with its index into one uint64, :math:`2^{32} k_i + i`, so a plain
    single-operand sort orders by key and breaks ties by index, exactly as the stable
    key-value sort does; XLA:CPU runs a single-operand sort of a primitive type several
    times faster than a key-value sort with its generic comparator. (Scoped 64-bit types.)
    """
    n = bits.shape[-1]
    with jax.enable_x64(True):
        packed = (bits.astype(jnp.uint64) << jnp.uint64(32)) | jnp.arange(n, dtype=jnp.uint64)
        order = jax.lax.sort(packed, dimension=-1) & jnp.uint64(0xFFFFFFFF)
        return order.astype(jnp.int32)


def permutation(key: jax.Array, n: int) -> jax.Array:
    r"""``jax.random.permutation(key, n).astype(int32)``, bit for bit, with faster sorts.

    The same algorithm as jax's ``_shuffle``: :math:`\lceil 3 \ln n / \ln(2^{32}-1) \rceil`
    rounds, each drawing fresh uint32 keys from a split of the key and stably sorting the
    current order by them; only the sort is done differently (``_stable_argsort_u32``).
    """
    x = jnp.arange(n, dtype=jnp.int32)
    rounds = int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))
    for _ in range(rounds):
        key, subkey = jax.random.split(key)
        bits = jax.random.bits(subkey, (n,), jnp.uint32)
        x = x[_stable_argsort_u32(bits)]
    return x


EVAL_PIECE = 500


def _piece_size(size: int, target: int) -> int:
    """The largest divisor of ``size`` that is at most ``target`` (``size`` if none > 1)."""
    best = max((d for d in range(1, min(size, target) + 1) if size % d == 0), default=size)
    return size if best == 1 else best


def _tree_where(cond: jax.Array, new: PyTree, old: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(cond, a, b), new, old)


@dataclasses.dataclass(frozen=True)
class Program:
    """The pieces of ``train`` that the sweep executor runs block by block.

    ``init(data, hparams, key) -> carry`` and
    ``advance(data, hparams, carry, start_step, num_intervals) -> (carry, first, metrics)``
    (with ``num_intervals`` static and ``start_step`` a scalar shared by all members) are pure;
    ``first`` holds the metrics at ``start_step`` when it is 0 (NaN otherwise), ``metrics``
    those at the ends of the ``num_intervals`` intervals; ``data`` is the pytree of device
    arrays from ``device_data``.
    """

    config: SweepConfig
    data: dict[str, Any]
    num_train: int
    init: Callable[..., tuple[Carry, Metrics]]
    advance: Callable[..., tuple[Carry, Metrics]]
    metric_names: tuple[str, ...]


def build_program(config: SweepConfig, arrays: Mapping[str, np.ndarray] | None = None) -> Program:
    """Builds the pure pieces of a training run (validates ``config`` and loads the data)."""
    from gdyn_jax import data as data_module
    from gdyn_jax import models, optimizers

    config.validate()
    if arrays is None:
        arrays = load_arrays(config)
    num_classes = int(data_module.info(config.dataset)["num_classes"])
    # JSON turns tuples (e.g. input_shape) into lists; flax module fields want tuples.
    model_kwargs = {
        k: tuple(v) if isinstance(v, list) else v for k, v in config.model_kwargs.items()
    }
    model = models.get(config.model, num_classes, **model_kwargs)
    factory = optimizers.get(config.optimizer)
    fixed = {k: float(v) for k, v in config.hparams.items()}
    schedule = unit_schedule(config.schedule, config.steps, config.warmup_steps)
    n = len(arrays["x_train"])
    full_batch = config.batch_size is None or config.batch_size == n
    batch = n if full_batch else int(config.batch_size)
    steps_per_epoch = n // batch
    metric_names = ("train_loss", "test_loss", "test_accuracy")
    metric_names += ("grad_norm",) * config.track_grad_norm
    metric_names += ("sharpness",) * config.track_sharpness

    def apply(params, extra, x):
        return model.apply({"params": params, **extra}, x)

    def mean_loss(params, extra, x, y):
        return jnp.mean(per_example_loss(config.loss, apply(params, extra, x), y))

    def make_tx(hparams, step):
        hp = {**fixed, **hparams}
        if schedule is not None:
            hp["learning_rate"] = hp["learning_rate"] * schedule(step)
        return factory(**hp)

    def forward_in_pieces(params, extra, x):
        # The logits of an evaluation chunk, computed EVAL_PIECE examples at a time (a
        # sequential lax.map): each example's logits are the same, but the activations of
        # many members stay small enough for the cache instead of (members, chunk, width).
        size = x.shape[0]
        piece = _piece_size(size, EVAL_PIECE)
        if piece == size:
            return apply(params, extra, x)
        pieces = x.reshape((size // piece, piece) + x.shape[1:])
        logits = jax.lax.map(lambda xb: apply(params, extra, xb), pieces)
        return logits.reshape((size,) + logits.shape[2:])

    def dataset_stats(params, extra, chunks, with_grad):
        total = jnp.sum(chunks["w"])

        def body(acc, batch):
            def f(p):
                logits = apply(p, extra, batch["x"])
                per = per_example_loss(config.loss, logits, batch["y"])
                return jnp.sum(per * batch["w"]), logits

            if with_grad:
                (loss_sum, logits), g = jax.value_and_grad(f, has_aux=True)(params)
                g_acc = jax.tree.map(jnp.add, acc[2], g)
            else:
                logits = forward_in_pieces(params, extra, batch["x"])
                per = per_example_loss(config.loss, logits, batch["y"])
                loss_sum = jnp.sum(per * batch["w"])
                g_acc = acc[2]
            correct = jnp.sum((jnp.argmax(logits, -1) == batch["y"]) * batch["w"])
            return (acc[0] + loss_sum, acc[1] + correct, g_acc), None

        g0 = jax.tree.map(jnp.zeros_like, params) if with_grad else None
        zero = jnp.zeros((), jnp.float32)
        (loss_sum, correct, g), _ = jax.lax.scan(body, (zero, zero, g0), chunks)
        gnorm = optax.tree.norm(g) / total if with_grad else None
        return loss_sum / total, correct / total, gnorm

    def evaluate(data, carry, step):
        from gdyn_jax import hessian

        params, extra = carry["params"], carry["extra"]
        train_loss, _, gnorm = dataset_stats(
            params, extra, data["eval_train"], config.track_grad_norm
        )
        test_loss, test_acc, _ = dataset_stats(params, extra, data["eval_test"], False)
        out = {"train_loss": train_loss, "test_loss": test_loss, "test_accuracy": test_acc}
        if config.track_grad_norm:
            out["grad_norm"] = gnorm
        if config.track_sharpness:
            key = jax.random.fold_in(jax.random.wrap_key_data(carry["sharp_key"]), step)
            out["sharpness"] = hessian.top_eigenvalue(
                lambda p: mean_loss(p, extra, data["x_sharp"], data["y_sharp"]),
                params,
                key,
                config.sharpness_iters,
            )
        nan = jnp.float32(jnp.nan)
        return {k: jnp.where(carry["alive"], v.astype(jnp.float32), nan) for k, v in out.items()}

    def epoch_perm(data_key, epoch):
        key = jax.random.fold_in(jax.random.wrap_key_data(data_key), epoch)
        return permutation(key, n)

    def init(data, hparams, key):
        init_key, data_key, sharp_key = jax.random.split(key, 3)
        variables = dict(model.init(init_key, data["x_train"][:1]))
        params = variables.pop("params")
        opt_state = make_tx(hparams, jnp.int32(0)).init(params)
        carry = {
            "params": params,
            "extra": variables,
            "opt_state": opt_state,
            "alive": jnp.array(True),
            "diverged_at": jnp.array(-1, jnp.int32),
            "data_key": jax.random.key_data(data_key),
            "sharp_key": jax.random.key_data(sharp_key),
        }
        if not full_batch:
            carry["perm"] = jnp.zeros((n,), jnp.int32)
        return carry

    def train_step(data, hparams, carry, t):
        if full_batch:
            x, y = data["x_train"], data["y_train"]
        else:
            i, epoch = t % steps_per_epoch, t // steps_per_epoch
            # t is shared by all members, so this cond stays a cond under vmap.
            perm = jax.lax.cond(
                i == 0, lambda: epoch_perm(carry["data_key"], epoch), lambda: carry["perm"]
            )
            idx = jax.lax.dynamic_slice(perm, (i * batch,), (batch,))
            x, y = data["x_train"][idx], data["y_train"][idx]
            carry = {**carry, "perm": perm}
        params, extra, opt_state = carry["params"], carry["extra"], carry["opt_state"]
        loss, grads = jax.value_and_grad(mean_loss)(params, extra, x, y)
        updates, new_state = make_tx(hparams, t).update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        finite = jnp.isfinite(loss) & _tree_all_finite(new_params) & _tree_all_finite(new_state)
        ok = carry["alive"] & finite
        return {
            **carry,
            "params": _tree_where(ok, new_params, params),
            "opt_state": _tree_where(ok, new_state, opt_state),
            "alive": ok,
            "diverged_at": jnp.where(carry["alive"] & ~finite, t, carry["diverged_at"]),
        }

    def advance(data, hparams, carry, start_step, num_intervals):
        start_step = jnp.asarray(start_step, jnp.int32)

        def interval(carry, j):
            s0 = start_step + j * config.eval_every

            def step(c, t):
                return train_step(data, hparams, c, t), None

            carry, _ = jax.lax.scan(step, carry, s0 + jnp.arange(config.eval_every))
            return carry, evaluate(data, carry, s0 + config.eval_every)

        # Metrics at the start of the run, computed only when the block starts at step 0
        # (start_step is shared by all members, so this cond stays a cond under vmap).
        nan = {k: jnp.full((), jnp.nan, jnp.float32) for k in metric_names}
        first = jax.lax.cond(
            start_step == 0, lambda c: evaluate(data, c, start_step), lambda c: nan, carry
        )
        carry, metrics = jax.lax.scan(interval, carry, jnp.arange(num_intervals))
        return carry, first, metrics

    return Program(config, device_data(config, arrays), n, init, advance, metric_names)


def as_hparams(hparams: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Swept hyperparameters as float32 arrays (scalars, or (members,) under a sweep)."""
    return {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}


def make_train(config: SweepConfig) -> Callable[[Mapping[str, Any], jax.Array], Metrics]:
    r"""A pure, jit-able ``train(hparams, key) -> metrics`` for ``config``.

    ``hparams`` maps optimizer hyperparameter names to scalars (they override
    ``config.hparams``); ``key`` is a PRNG key (it determines the initialisation, the order of
    the mini-batches and the sharpness start vectors). The result maps each metric name
    (``train_loss``, ``test_loss``, ``test_accuracy`` and, when tracked, ``grad_norm`` and
    ``sharpness``) to an array over the ``config.num_evals`` evaluation steps
    ``0, eval_every, ..., steps``, plus ``diverged_at`` (int32 scalar, -1 if never).

    Example::

        train = make_train(SweepConfig(optimizer="momentum", steps=200, eval_every=50))
        lrs = jnp.array([0.01, 0.1])
        keys = jax.random.split(jax.random.key(0), 2)
        out = jax.jit(jax.vmap(train))({"learning_rate": lrs}, keys)
    """
    program = build_program(config)
    data = program.data
    num_intervals = config.steps // config.eval_every
    known = set(program_hparam_names(config))

    def train(hparams: Mapping[str, Any], key: jax.Array) -> Metrics:
        unknown = sorted(set(hparams) - known)
        if unknown:
            raise ValueError(
                f"{unknown[0]}: not a numeric hyperparameter of optimizer {config.optimizer!r}"
            )
        hp = as_hparams(hparams)
        carry = program.init(data, hp, key)
        carry, first, rest = program.advance(data, hp, carry, 0, num_intervals)
        out = {k: jnp.concatenate([first[k][None], rest[k]]) for k in program.metric_names}
        out["diverged_at"] = carry["diverged_at"]
        return out

    return train


def program_hparam_names(config: SweepConfig) -> tuple[str, ...]:
    from gdyn_jax.sweep.config import optimizer_hyperparameters

    return tuple(optimizer_hyperparameters(config.optimizer))
