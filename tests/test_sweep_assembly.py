"""The sweep is assembled once: what one ``gdyn sweep`` does, counted.

``measure(out)`` runs a small CLI sweep (``gdyn_jax.cli.main``, a learning rate swept) and
counts, with counting wrappers and ``sys.setprofile``:

- ``validate``: calls of ``SweepConfig.validate``;
- ``signature``: reads of the optimizer factory's signature (``inspect.signature`` on it);
- ``to_advance``: the calls that take the swept learning rate from ``main`` to the training
  program's ``advance`` (``train.advance``, where it starts training): the package's own
  functions on the call stack when ``advance`` is entered, from ``main`` (not counted, as
  the caller of the first call) to ``advance`` (counted); ``jax``'s own frames (jit, vmap,
  shard_map, scan) are not the package's and are not counted;
- ``to_optimizer``: the same, to ``optimizer_at`` called by ``train_step`` (where the
  optimizer is built from the traced learning rate).

Run as a script (``python tests/test_sweep_assembly.py``) it prints them, with the stacks.
"""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sweep_fixtures import CLI_FLAGS

import gdyn_jax
from gdyn_jax import cli, optimizers
from gdyn_jax.sweep import SweepConfig, make_train, run_sweep, train

PACKAGE = os.path.dirname(gdyn_jax.__file__)


def _stack(frame) -> list[str]:
    """The package's functions on the stack from ``cli.main`` down to ``frame``."""
    names = []
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith(PACKAGE):
            names.append(f"{frame.f_globals.get('__name__')}.{code.co_qualname}")
        if code is cli.main.__code__:
            break
        frame = frame.f_back
    return names[::-1]


def measure(out: Path) -> dict[str, Any]:
    """Counts of one CLI sweep into ``out`` (see the module docstring)."""
    counts: dict[str, Any] = {"validate": 0, "signature": 0}
    factory = optimizers.get("momentum")
    validate, signature = SweepConfig.validate, inspect.signature
    targets = {train.advance.__code__: "to_advance", train.optimizer_at.__code__: "to_optimizer"}

    def counting_validate(self):
        counts["validate"] += 1
        return validate(self)

    def counting_signature(obj, *args, **kwargs):
        counts["signature"] += obj is factory
        return signature(obj, *args, **kwargs)

    def profile(frame, event, arg):
        what = targets.get(frame.f_code) if event == "call" else None
        if what is None or what in counts:
            return
        if what == "to_optimizer" and frame.f_back.f_code is not train.train_step.__code__:
            return
        counts[what] = _stack(frame)

    patch = pytest.MonkeyPatch()
    patch.setattr(SweepConfig, "validate", counting_validate)
    patch.setattr(inspect, "signature", counting_signature)
    sys.setprofile(profile)
    try:
        status = cli.main([*CLI_FLAGS, "--eval-every", "20", "--out", str(out)])
    finally:
        sys.setprofile(None)
        patch.undo()
    assert status == 0
    return counts


@pytest.fixture(scope="module")
def measured(mnist1d_data_dir, tmp_path_factory) -> dict[str, Any]:
    return measure(tmp_path_factory.mktemp("assembly") / "out")


def test_validate_runs_once_per_cli_sweep(measured):
    assert measured["validate"] == 1


def test_the_optimizer_signature_is_read_once(measured):
    assert measured["signature"] == 1


def test_a_swept_learning_rate_reaches_advance_in_five_calls(measured):
    stack = measured["to_advance"]
    assert stack[0] == "gdyn_jax.cli.main" and stack[-1] == "gdyn_jax.sweep.train.advance"
    assert len(stack) - 1 <= 5, stack


def _count_validate(monkeypatch) -> list[int]:
    calls = [0]
    validate = SweepConfig.validate

    def counting(self):
        calls[0] += 1
        return validate(self)

    monkeypatch.setattr(SweepConfig, "validate", counting)
    return calls


def test_validate_runs_once_per_run_sweep_and_make_train(mnist1d_data_dir, monkeypatch):
    config = SweepConfig.from_dict({**SweepConfig().to_dict(), **_CONFIG})
    calls = _count_validate(monkeypatch)
    run_sweep(config, {"learning_rate": [0.1]}, progress=False)
    assert calls == [1]
    make_train(config)
    assert calls == [2]


_CONFIG = {"model": "logistic", "steps": 10, "eval_every": 5, "train_subset": 64, "batch_size": 16}


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = measure(Path(tmp) / "out")
    print(f"validate() calls: {result['validate']}")
    print(f"optimizer signature reads: {result['signature']}")
    for key in ("to_advance", "to_optimizer"):
        print(f"calls from main {key}: {len(result[key]) - 1}")
        for name in result[key]:
            print(f"  {name}")


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("gdyn_jax.sweep.train", "make_train", "gdyn_jax.sweep.assembly"),
        ("gdyn_jax.sweep.grid", "to_float", "gdyn_jax.sweep.checks"),
        ("gdyn_jax.sweep.grid", "check_int", "gdyn_jax.sweep.checks"),
        ("gdyn_jax.sweep.execute", "compiled", "gdyn_jax.sweep.cache"),
        ("gdyn_jax.sweep.execute", "Compiled", "gdyn_jax.sweep.cache"),
        ("gdyn_jax.sweep.execute", "block_intervals", "gdyn_jax.sweep.chunks"),
        ("gdyn_jax.sweep.execute", "sweep_mesh", "gdyn_jax.sweep.mesh"),
    ],
)
def test_moved_names_keep_their_old_path_for_one_release(old, name, new):
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    with pytest.warns(DeprecationWarning, match=f"{old}.{name} moved to {new}.{name}"):
        assert getattr(old_module, name) is getattr(new_module, name)
    assert not hasattr(old_module, "no_such_name")


def test_the_sweep_imports_no_analysis_of_rules():
    """The sweep (and `gdyn sweep`) may import the rules, data, models and measurements,
    never linearize or predictions."""
    code = "import sys, gdyn_jax.sweep, gdyn_jax.commands.sweep; print(sorted(sys.modules))"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(PACKAGE).parent)]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = out.stdout
    assert "gdyn_jax.linearize" not in loaded and "gdyn_jax.predictions" not in loaded
