"""Bit-for-bit equivalence of the sweep engine across a refactoring: four fixed small sweeps.

Runs four small sweeps through the public API and saves every resulting array to one
``.npz`` (``OUT``), plus, beside it (``OUT`` with ``.hlo.json``), the optimised HLO of one
compiled training block: its instruction count per opcode and a SHA-256 of its computations
(without the metadata and the tables of source files and stack frames, which name the
package's files and functions). Run it before and after a change of the
engine and compare with ``--compare``: every array with ``np.array_equal`` (NaNs equal),
the opcode counts exactly.

(a) logistic regression, heavy-ball momentum, square loss (MSE), 3 learning rates (one
    diverging) × 2 betas × 2 seeds in chunks of 3 (so padded chunks), into an ``out``
    directory;
(b) 32 MLP members under Adam (8 learning rates × 4 seeds) in member groups of 8, the
    gradient norm tracked;
(c) full-batch Nesterov, a warm-up cosine schedule, the sharpness tracked;
(d) ``make_train`` directly (the documented pure program): ``jit(vmap(train))`` over 4
    members, with ``return_state=True`` (the final parameters saved too).

    python benchmarks/equivalence.py OUT.npz
    python benchmarks/equivalence.py --compare BEFORE.npz AFTER.npz
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import re
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gdyn_jax.sweep import SweepConfig, make_train, run_sweep

try:  # after the refactoring: the program cache and the mesh in their own modules
    from gdyn_jax.sweep.cache import compiled
    from gdyn_jax.sweep.mesh import put
except ImportError:  # before
    from gdyn_jax.sweep.execute import _put as put
    from gdyn_jax.sweep.execute import compiled

COMMON = {"dataset": "mnist1d", "train_subset": 256, "eval_batch_size": 128}


def _dataset_arrays(prefix: str, ds) -> dict[str, np.ndarray]:
    out = {f"{prefix}/{k}": np.asarray(ds[k].values) for k in ds.data_vars}
    out.update({f"{prefix}/coord/{k}": np.asarray(ds[k].values) for k in ds.coords})
    return out


def sweep_a(out_dir: Path):
    config = SweepConfig(
        model="logistic",
        optimizer="momentum",
        loss="mse",
        steps=40,
        batch_size=32,
        eval_every=10,
        **COMMON,
    )
    grid = {"learning_rate": [0.02, 0.1, 3.0], "beta": [0.0, 0.9]}
    return run_sweep(config, grid, 2, chunk_size=3, out=out_dir, progress=False)


def sweep_b():
    config = SweepConfig(
        model="mlp",
        optimizer="adam",
        steps=20,
        batch_size=64,
        eval_every=10,
        track_grad_norm=True,
        **COMMON,
    )
    grid = {"learning_rate": list(np.geomspace(1e-4, 1e-1, 8))}
    return run_sweep(config, grid, 4, member_group=8, progress=False)


def sweep_c():
    config = SweepConfig(
        model="mlp",
        optimizer="nesterov",
        steps=20,
        batch_size=None,
        eval_every=5,
        schedule="warmup_cosine",
        warmup_steps=5,
        track_sharpness=True,
        sharpness_subset=128,
        sharpness_iters=8,
        **COMMON,
    )
    grid = {"learning_rate": [0.05, 0.2], "beta": [0.5, 0.9]}
    return run_sweep(config, grid, 1, progress=False)


def sweep_d() -> dict[str, np.ndarray]:
    config = SweepConfig(
        model="mlp",
        optimizer="momentum",
        steps=20,
        batch_size=50,
        eval_every=10,
        hparams={"beta": 0.9},
        **COMMON,
    )
    train = make_train(config, return_state=True)
    lrs = jnp.array([0.01, 0.05, 0.2, 5.0], jnp.float32)
    keys = jax.random.split(jax.random.key(3), 4)
    metrics, state = jax.jit(jax.vmap(train))({"learning_rate": lrs}, keys)
    out = {f"d/{k}": np.asarray(v) for k, v in metrics.items()}
    for i, leaf in enumerate(jax.tree.leaves(state.params)):
        out[f"d/params/{i}"] = np.asarray(leaf)
    return out


def block_hlo() -> str:
    """The optimised HLO text of one compiled training block of sweep (a)'s config."""
    config = SweepConfig(
        model="logistic",
        optimizer="momentum",
        loss="mse",
        steps=40,
        batch_size=32,
        eval_every=10,
        **COMMON,
    )
    devices = tuple(jax.devices()[:1])
    programs = compiled(config, 2, devices, 4)
    mesh = jax.make_mesh(
        (1,), ("sweep",), axis_types=(jax.sharding.AxisType.Auto,), devices=list(devices)
    )
    member = jax.sharding.NamedSharding(mesh, jax.P("sweep"))
    replicated = jax.sharding.NamedSharding(mesh, jax.P())
    data = jax.tree.map(lambda x: put(x, replicated), programs.data)
    hp = {
        "learning_rate": put(np.full(4, 0.1, np.float32), member),
        "beta": put(np.full(4, 0.9, np.float32), member),
    }
    keys = put(
        np.stack([np.asarray(jax.random.key_data(jax.random.key(i))) for i in range(4)]), member
    )
    state = programs.init(data, hp, keys)
    return programs.advance.lower(data, hp, state, np.int32(0)).compile().as_text()


_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?[%\w.\-]+\s*=\s*.*?\s([a-z][a-z0-9\-]*)\(", re.M)
_COMPUTATION = re.compile(r"^\s*(?:ROOT\s+)?%\S+ = |^(?:ENTRY\s+)?%\S+ .*\{$|^\}")


def hlo_summary(text: str) -> dict:
    """Instruction counts per opcode, and a SHA-256 of the computations (their instructions,
    names and operands; without the metadata and the tables of source files and frames)."""
    stripped = re.sub(r",?\s*metadata=\{[^}]*\}", "", text)
    counts = collections.Counter(_INSTRUCTION.findall(stripped))
    program = "\n".join(l for l in stripped.splitlines() if _COMPUTATION.match(l))
    return {
        "opcodes": dict(sorted(counts.items())),
        "instructions": sum(counts.values()),
        "sha256_computations": hashlib.sha256(program.encode()).hexdigest(),
    }


def run(out: Path) -> None:
    arrays: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        arrays.update(_dataset_arrays("a", sweep_a(Path(tmp) / "a")))
    arrays.update(_dataset_arrays("b", sweep_b()))
    arrays.update(_dataset_arrays("c", sweep_c()))
    arrays.update(sweep_d())
    np.savez(out, **arrays)
    hlo = hlo_summary(block_hlo())
    out.with_suffix(".hlo.json").write_text(json.dumps(hlo, indent=1))
    values = sum(x.size for x in arrays.values())
    print(f"{out}: {len(arrays)} arrays, {values} values; HLO {hlo['instructions']} instr.")


def compare(before: Path, after: Path) -> int:
    a, b = np.load(before), np.load(after)
    bad = sorted(set(a.files) ^ set(b.files))
    values = 0
    for k in sorted(set(a.files) & set(b.files)):
        x, y = a[k], b[k]
        same = x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind in "fc")
        bad += [] if same else [k]
        values += x.size
    ha = json.loads(before.with_suffix(".hlo.json").read_text())
    hb = json.loads(after.with_suffix(".hlo.json").read_text())
    print(f"{len(a.files)} arrays, {values} values compared; differing: {bad or 'none'}")
    same_text = ha["sha256_computations"] == hb["sha256_computations"]
    print(
        f"HLO: {ha['instructions']} -> {hb['instructions']} instructions; opcode counts "
        f"{'equal' if ha['opcodes'] == hb['opcodes'] else 'DIFFER'}; computations (instructions, "
        "names, operands) "
        f"{'equal' if same_text else 'differs'}"
    )
    return 1 if bad or ha["opcodes"] != hb["opcodes"] else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--compare", action="store_true")
    args = parser.parse_args()
    if args.compare:
        return compare(*args.paths)
    run(args.paths[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
