"""Sweep engine throughput: model-steps per second of many MNIST-1D MLPs in one program.

For 1, 8, 64 and 256 members (a momentum learning-rate grid × seeds) of the MNIST-1D
MLP (``gdyn_jax.models.get('mlp')``, 15,210 parameters) trained with batch size 100, it times
one compiled block of the sweep (``steps`` optimizer steps per member, one evaluation on the
4,000 + 1,000 examples at its end, included in the time) after a warm-up block, and compares
it with, in the same process:

(a) the plain per-step loop of the flax/optax examples: a ``jax.jit``-ed train step
    (``value_and_grad`` + optimizer update) called once per batch from Python, batches
    sliced on the host from a per-epoch permutation, one model at a time (members run one
    after another, so its rate does not depend on the member count);
(b) PyTorch eager training of the same model (same layers, ``torch.optim.SGD`` with the same
    heavy-ball momentum), when torch is installed;

and with the float32 matmul rate of this machine measured in the same process (a jitted
``jnp.dot`` of two 2048 × 2048 matrices): the sweep's model FLOP rate (6 × batch × weights
per step: forward, and backward for inputs and weights) as a fraction of it.

The baselines train as many model-steps as the sweep block (capped at 20,000 for the
plain loop and 4,000 for PyTorch), so the timed runs last comparably long. All runs of one
row are interleaved in one process (sweep, plain, torch, torch 1 thread, then the next
repeat with the order rotated), so that all see the same load of a shared machine; each
figure is the *median* of ``--repeats`` runs and each ratio is the ratio of the medians
(the min-max range of the per-repeat ratios is printed too). PyTorch is timed with one
thread and with its default thread count; the faster (by median) is reported. The 1-minute
load average (``os.getloadavg``) is printed before and after each row: figures taken at a
load above the core count are not trustworthy.

    python benchmarks/sweep.py [--members 1 8 64 256] [--steps 400] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gdyn_jax import data, models, optimizers
from gdyn_jax.sweep import SweepConfig, execute, groups
from gdyn_jax.sweep import grid as grid_lib

BATCH = 100
LR, BETA = 0.05, 0.9


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
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    return 2 * n**3 / _best(lambda: dot(a, b).block_until_ready(), max(repeats, 5))


def model_flops_per_step() -> float:
    """6 × batch × weight count: forward (2) and backward for inputs and weights (4)."""
    weights = 40 * 100 + 100 * 100 + 100 * 10
    return 6.0 * BATCH * weights


def sweep_runner(members: int, steps: int, width: int | None = None):
    """(run, model-steps per run) for one block of a ``members``-wide sweep (compiled), in
    member groups of ``width`` (default: the engine's; the padding members are not counted)."""
    config = SweepConfig(
        model="mlp",
        optimizer="momentum",
        steps=steps,
        batch_size=BATCH,
        eval_every=steps,
        hparams={"beta": BETA},
    )
    devices = tuple(jax.devices()[:1])
    width = groups.default_width(devices) if width is None else width
    programs = execute.compiled(config, 1, devices, width)
    chunk, _ = groups.chunk_layout(members, None, 1, width)
    mesh = execute.sweep_mesh(1)
    member = jax.sharding.NamedSharding(mesh, jax.P("sweep"))
    lrs = grid_lib.pad(np.geomspace(1e-3, 1e-1, members).astype(np.float32), chunk)
    hp = {"learning_rate": execute._put(lrs, member)}
    keys = execute._put(grid_lib.pad(grid_lib.seed_keys(np.arange(members)), chunk), member)
    state = {"train": programs.init(programs.data, hp, keys)}

    def block():
        train_state, _, metrics = programs.advance(programs.data, hp, state["train"], np.int32(0))
        jax.block_until_ready(metrics)
        state["train"] = train_state

    block()  # compile and warm up
    return block, members * steps


def plain_loop_runner(steps: int):
    """(run, steps per run) of the per-step jitted flax/optax loop for one model."""
    x, y = data.load("mnist1d", "train")
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


def torch_runner(steps: int, threads: int | None):
    """(run, steps per run) of PyTorch eager training of the same MLP, or None without torch.

    ``threads``: ``torch.set_num_threads`` value (None keeps torch's default)."""
    try:
        import torch
    except ImportError:
        return None
    x, y = data.load("mnist1d", "train")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear1 = torch.nn.Linear(40, 100)
            self.linear2 = torch.nn.Linear(100, 100)
            self.linear3 = torch.nn.Linear(100, 10)

        def forward(self, h):
            h = torch.relu(self.linear1(h))
            h = h + torch.relu(self.linear2(h))
            return self.linear3(h)

    torch.manual_seed(0)
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=BETA)
    per_epoch = len(x) // BATCH

    default_threads = torch.get_num_threads()

    def run():
        torch.set_num_threads(threads or default_threads)
        perm = torch.randperm(len(x))
        for i in range(steps):
            if i % per_epoch == 0:
                perm = torch.randperm(len(x))
            idx = perm[(i % per_epoch) * BATCH : (i % per_epoch + 1) * BATCH]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    run()
    return run, steps


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        name = platform.processor()
    return f"{name}, {os.cpu_count()} CPUs, {jax.devices()[0].platform}"


def time_row(runners: dict, repeats: int) -> dict[str, list[float]]:
    """Per-repeat wall times of each runner, interleaved (the order rotates every repeat)."""
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(_time(runners[name][0]))
    return times


def ratio(times: dict[str, list[float]], work: dict[str, int], base: str) -> str:
    """Sweep rate / ``base`` rate: the ratio of the medians, and the per-repeat range."""
    per_repeat = [
        (work["sweep"] / ts) / (work[base] / tb)
        for ts, tb in zip(times["sweep"], times[base], strict=True)
    ]
    median = (work["sweep"] / np.median(times["sweep"])) / (work[base] / np.median(times[base]))
    return f"{median:.2f} ({min(per_repeat):.2f}–{max(per_repeat):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    peak = matmul_flops(args.repeats)
    flops = model_flops_per_step()
    plain_cap, torch_cap = 20_000, 4_000
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {machine()}; "
        f"jax {jax.__version__}; float32 matmul (2048^2 jnp.dot) {peak / 1e9:.1f} GFLOP/s; "
        f"model FLOPs/step {flops / 1e6:.1f} M; median of {args.repeats} interleaved runs; "
        f"load average {load_average()}"
    )
    print(
        "| members | sweep model-steps/s | plain jitted loop steps/s | × plain (range) "
        "| PyTorch eager steps/s | × PyTorch (range) | % of matmul rate | load before → after |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in args.members:
        load_before = os.getloadavg()[0]
        # The baselines train the same number of model-steps as the sweep block (member after
        # member), capped, so that all timed runs last about as long under the same load.
        runners = {
            "sweep": sweep_runner(m, args.steps),
            "plain": plain_loop_runner(min(m * args.steps, plain_cap)),
        }
        for threads in (1, None):
            runner = torch_runner(min(m * args.steps, torch_cap), threads)
            if runner is not None:
                runners[f"torch{threads or ''}"] = runner
        times = time_row(runners, args.repeats)
        work = {name: runners[name][1] for name in runners}
        rate = {name: work[name] / float(np.median(times[name])) for name in runners}

        torch_names = [k for k in rate if k.startswith("torch")]
        torch_cols = "n/a | n/a"
        if torch_names:
            best_torch = max(torch_names, key=rate.get)
            torch_cols = f"{rate[best_torch]:,.0f} | {ratio(times, work, best_torch)}"
        print(
            f"| {m} | {rate['sweep']:,.0f} | {rate['plain']:,.0f} | "
            f"{ratio(times, work, 'plain')} | "
            f"{torch_cols} | {100 * rate['sweep'] * flops / peak:.1f} | "
            f"{load_before:.2f} → {os.getloadavg()[0]:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
