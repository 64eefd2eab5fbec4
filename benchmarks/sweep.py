"""Sweep engine throughput: model-steps per second of many MNIST-1D MLPs in one program.

For each member count (a momentum learning-rate grid, β = 0.9) of the MNIST-1D MLP
(``gdyn_jax.models.get('mlp')``, 15,210 parameters) trained with batch size 100, it times
one compiled block of the sweep (``steps`` optimizer steps per member, one evaluation on the
4,000 + 1,000 examples at its end, included in the time) after a warm-up block, and compares
it with, in the same process:

(a) ``plain``: the per-step loop of the flax/optax examples, a ``jax.jit``-ed train step
    (``value_and_grad`` + optimizer update) called once per batch from Python, batches sliced
    on the host from a per-epoch permutation, one model at a time;
(b) ``torch``: PyTorch eager training of the same model, one model at a time
    (``torch.optim.SGD`` with the same heavy-ball momentum);
(c) ``torch.func`` and ``torch.compile``: all members at once with ``torch.func``
    (``stack_module_state`` + ``functional_call``, per-member gradients by ``grad`` under
    ``torch.vmap``), eager and under ``torch.compile``, each member drawing its own batches
    from its own per-epoch permutation, with the same end-of-block evaluation
    (``benchmarks/torch_baselines.py``);

and with the float32 matmul rate of this machine measured in the same process (a jitted
``jnp.dot`` of two 2048 × 2048 matrices): the sweep's model FLOP rate (6 × batch × weights
per step: forward, and backward for inputs and weights) as a fraction of it.

By default the CPU is split as the library splits it (one XLA device per core,
``gdyn_jax.sweep.cores``); ``--cpu-devices N`` splits it into N XLA devices instead
(``jax_num_cpu_devices``, set before JAX starts). The sweep shards its members over all of
them (``sweep``), and is also timed on one device (``sweep1``). XLA:CPU runs one device's
program on one core at these sizes, so N devices are how the sweep uses N cores (PyTorch
uses its threads).

The one-model baselines train as many model-steps as the sweep block (capped at 20,000 for
the plain loop and 4,000 for PyTorch eager). All runs of one row are interleaved in one
process (the order rotated every repeat), so that all see the same load of a shared
machine; each figure is the *median* of ``--repeats`` runs and each ratio the ratio of the
medians (with the min-max range of the per-repeat ratios). PyTorch runs are timed with one
thread and with its default thread count; the faster (by median) is reported. The 1-minute
load average is printed before and after each row: figures taken at a load above the core
count are not trustworthy. Data: MNIST-1D (``--data mnist1d``), or arrays of its shapes
drawn at random (``--data synthetic``: no tensorflow-datasets needed; same speed).

    python benchmarks/sweep.py [--members 1 8 64 256] [--steps 400] [--repeats 5]
        [--cpu-devices 2] [--baselines plain torch torch.func torch.compile]
        [--torch-threads 1|default|both] [--json F]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

BATCH = 100
LR, BETA = 0.05, 0.9
BASELINES = ("plain", "torch", "torch.func", "torch.compile")


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _best(fn, repeats: int) -> float:
    return min(_time(fn) for _ in range(repeats))


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, as ``uptime`` prints them."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def matmul_flops(repeats: int, n: int = 2048) -> float:
    """Measured float32 matmul rate (FLOP/s) of ``jnp.dot`` on n × n matrices."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    return 2 * n**3 / _best(lambda: dot(a, b).block_until_ready(), max(repeats, 5))


def model_flops_per_step() -> float:
    """6 × batch × weight count: forward (2) and backward for inputs and weights (4)."""
    weights = 40 * 100 + 100 * 100 + 100 * 10
    return 6.0 * BATCH * weights


def synthetic_mnist1d(seed: int = 0):
    """Arrays of MNIST-1D's shapes and kind: 4,000 + 1,000 examples of 40 features, 10
    classes, each class a random template plus unit Gaussian noise (learnable, not MNIST-1D)."""
    from gdyn_jax.sweep import Arrays

    rng = np.random.default_rng(seed)
    templates = rng.normal(size=(10, 40)).astype(np.float32)
    y = rng.integers(0, 10, 5000).astype(np.int32)
    x = (templates[y] + rng.normal(size=(5000, 40))).astype(np.float32)
    return Arrays(x[:4000], y[:4000], x[4000:], y[4000:], name="synthetic-mnist1d")


def load_arrays(source: str):
    """The benchmark's data: MNIST-1D through ``gdyn_jax.data``, or ``synthetic_mnist1d``."""
    from gdyn_jax.sweep import data as data_lib

    return synthetic_mnist1d() if source == "synthetic" else data_lib.load_named("mnist1d", None)


def sweep_runner(arrays, members: int, steps: int, num_devices: int, width: int | None = None):
    """(run, model-steps per run, program) for one block of a ``members``-wide sweep, its
    members sharded over the first ``num_devices`` devices in member groups of ``width``
    (default: the engine's; the padding members are not counted), compiled and warmed up."""
    import jax

    from gdyn_jax.sweep import SweepConfig, assemble, cache, groups
    from gdyn_jax.sweep import grid as grid_lib
    from gdyn_jax.sweep.mesh import put, sweep_mesh

    config = SweepConfig(
        dataset=arrays,
        model="mlp",
        optimizer="momentum",
        steps=steps,
        batch_size=BATCH,
        eval_every=steps,
        hparams={"beta": BETA},
    )
    devices = tuple(jax.devices()[:num_devices])
    width = groups.default_width(devices) if width is None else width
    programs = cache.compiled(assemble(config), 1, devices, width)
    chunk, _ = groups.chunk_layout(members, None, num_devices, width)
    mesh = sweep_mesh(num_devices)
    member = jax.sharding.NamedSharding(mesh, jax.P("sweep"))
    replicated = jax.sharding.NamedSharding(mesh, jax.P())
    data = jax.tree.map(lambda x: put(x, replicated), programs.data)
    lrs = grid_lib.pad(np.geomspace(1e-3, 1e-1, members).astype(np.float32), chunk)
    hp = {"learning_rate": put(lrs, member)}
    keys = put(grid_lib.pad(grid_lib.seed_keys(np.arange(members)), chunk), member)
    state = {"train": programs.init(data, hp, keys)}
    compiled = programs.advance.lower(data, hp, state["train"], np.int32(0)).compile()

    def block():
        train_state, _, metrics = compiled(data, hp, state["train"], np.int32(0))
        jax.block_until_ready(metrics)
        state["train"] = train_state

    block()  # warm up
    return block, members * steps, compiled


def plain_loop_runner(arrays, steps: int):
    """(run, steps per run) of the per-step jitted flax/optax loop for one model."""
    import jax
    import jax.numpy as jnp
    import optax

    from gdyn_jax import models, optimizers

    x, y = arrays.x_train, arrays.y_train
    model = models.get("mlp")
    tx = optimizers.get("momentum")(LR, BETA)
    params = model.init(jax.random.key(0), jnp.asarray(x[:1]))
    opt_state = tx.init(params)

    @jax.jit
    def train_step(params, opt_state, xb, yb):
        def loss_fn(p):
            logits = model.apply(p, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(0)
    per_epoch = len(x) // BATCH
    state = {"params": params, "opt": opt_state}

    def run():
        p, s = state["params"], state["opt"]
        perm = rng.permutation(len(x))
        for i in range(steps):
            if i % per_epoch == 0:
                perm = rng.permutation(len(x))
            idx = perm[(i % per_epoch) * BATCH : (i % per_epoch + 1) * BATCH]
            p, s, loss = train_step(p, s, x[idx], y[idx])
        loss.block_until_ready()
        state["params"], state["opt"] = p, s

    train_step(params, opt_state, x[:BATCH], y[:BATCH])  # compile
    run()
    return run, steps


def machine() -> str:
    import jax

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        name = platform.processor()
    devices = jax.devices()
    return f"{name}, {os.cpu_count()} CPUs, {len(devices)} {devices[0].platform} device(s)"


def time_row(runners: dict, repeats: int) -> dict[str, list[float]]:
    """Per-repeat wall times of each runner, interleaved (the order rotates every repeat)."""
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(_time(runners[name][0]))
    return times


def ratio(times: dict[str, list[float]], work: dict[str, int], base: str) -> tuple[float, str]:
    """Sweep rate / ``base`` rate: the ratio of the medians, and it with the per-repeat range."""
    per_repeat = [
        (work["sweep"] / ts) / (work[base] / tb)
        for ts, tb in zip(times["sweep"], times[base], strict=True)
    ]
    median = (work["sweep"] / np.median(times["sweep"])) / (work[base] / np.median(times[base]))
    return float(median), f"{median:.2f} ({min(per_repeat):.2f}–{max(per_repeat):.2f})"


def baseline_runners(arrays, members: int, steps: int, wanted, threads_wanted="both") -> dict:
    """The baselines of one row (each PyTorch one at 1 thread and/or its default threads)."""
    import torch_baselines as tb

    train, test = (arrays.x_train, arrays.y_train), (arrays.x_test, arrays.y_test)
    lrs = np.geomspace(1e-3, 1e-1, members).astype(np.float32)
    runners = {}
    if "plain" in wanted:
        runners["plain"] = plain_loop_runner(arrays, min(members * steps, 20_000))
    settings = {"1": (1,), "default": (None,), "both": (1, None)}[threads_wanted]
    for threads in settings:
        suffix = "@1" if threads == 1 else "@default"
        if "torch" in wanted:
            runner = tb.eager_runner(train, min(members * steps, 4_000), LR, threads)
            if runner is not None:
                runners["torch" + suffix] = runner
        for name, compiled in (("torch.func", False), ("torch.compile", True)):
            if name in wanted:
                runner = tb.func_runner(train, test, lrs, steps, compiled, threads)
                if runner is not None:
                    runners[name + suffix] = runner
    return runners


def memory_per_member(compiled, members: int) -> float | None:
    """Bytes per member of the compiled block (arguments + outputs + temporaries), if known."""
    try:
        m = compiled.memory_analysis()
        total = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
    except Exception:  # not every backend reports it
        return None
    return total / members


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--cpu-devices", type=int, default=None, help="jax_num_cpu_devices (default: per core)"
    )
    parser.add_argument("--data", choices=("mnist1d", "synthetic"), default="mnist1d")
    parser.add_argument("--baselines", nargs="*", choices=BASELINES, default=list(BASELINES))
    parser.add_argument(
        "--torch-threads",
        choices=("1", "default", "both"),
        default="both",
        help="PyTorch thread settings timed (the faster is reported)",
    )
    parser.add_argument(
        "--member-groups",
        type=int,
        nargs="*",
        default=[],
        help="also time the sweep in member groups of these widths (default: the engine's only)",
    )
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)

    import jax

    if args.cpu_devices is not None:  # before gdyn_jax.sweep sets its default
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    import gdyn_jax.sweep  # noqa: F401  (one CPU device per core, unless set above)

    devices = len(jax.devices())
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # torch_baselines
    arrays = load_arrays(args.data)
    peak = matmul_flops(args.repeats)
    flops = model_flops_per_step()
    header = (
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {machine()}; "
        f"jax {jax.__version__}; float32 matmul (2048^2 jnp.dot) {peak / 1e9:.1f} GFLOP/s; "
        f"model FLOPs/step {flops / 1e6:.1f} M; median of {args.repeats} interleaved runs; "
        f"data {args.data}; load average {load_average()}"
    )
    print("# " + header)
    print(
        "| members | sweep model-steps/s | each baseline: model-steps/s (sweep / it, range) "
        "| % of matmul rate | load before → after |"
    )
    rows = []
    for m in args.members:
        load_before = os.getloadavg()[0]
        num_devices = devices if m % devices == 0 else 1
        sweep_run, sweep_work, compiled = sweep_runner(arrays, m, args.steps, num_devices)
        runners = {"sweep": (sweep_run, sweep_work)}
        if num_devices > 1:
            runners["sweep1"] = sweep_runner(arrays, m, args.steps, 1)[:2]
        for w in args.member_groups:
            runners[f"sweep@W{w}"] = sweep_runner(arrays, m, args.steps, num_devices, w)[:2]
        runners.update(baseline_runners(arrays, m, args.steps, args.baselines, args.torch_threads))
        times = time_row(runners, args.repeats)
        work = {name: runners[name][1] for name in runners}
        rate = {name: work[name] / float(np.median(times[name])) for name in runners}
        row = {
            "members": m,
            "devices": num_devices,
            "rate": rate,
            "sweep_over": {},
            "percent_of_matmul": 100 * rate["sweep"] * flops / peak,
            "bytes_per_member": memory_per_member(compiled, m),
            "load": [load_before, os.getloadavg()[0]],
        }
        cols = []
        for kind in ("sweep1",) + BASELINES:
            variants = [n for n in runners if n.split("@")[0] == kind]
            if not variants:
                continue
            best = max(variants, key=rate.get)  # PyTorch: the faster thread setting
            row["sweep_over"][kind], text = ratio(times, work, best)
            cols.append(f"{kind}{best[len(kind) :]} {rate[best]:,.0f} (× {text})")
        for w in args.member_groups:  # wider member groups, against each baseline
            name = f"sweep@W{w}"
            row["rate"][name] = rate[name]
            others = [b for b in runners if b.split("@")[0] in BASELINES]
            over = {b: rate[name] / rate[b] for b in others}
            cols.append(
                f"W={w} {rate[name]:,.0f} ("
                + ", ".join(f"{b} × {v:.2f}" for b, v in over.items())
                + ")"
            )
        rows.append(row)
        print(
            f"| {m} | {rate['sweep']:,.0f} ({num_devices} dev) | {' | '.join(cols)} | "
            f"{row['percent_of_matmul']:.1f} | {load_before:.2f} → {os.getloadavg()[0]:.2f} |",
            flush=True,
        )
    result = {"header": header, "matmul_flops": peak, "model_flops_per_step": flops}
    result["rows"] = rows
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
