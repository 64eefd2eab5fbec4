"""The memory a sweep needs, estimated before compiling (``gdyn_jax.sweep.memory``): checked
against the state a real init allocates and against XLA's own memory analysis of the compiled
block; a sweep that cannot fit is refused before anything is compiled, in the API and the CLI
(one line, exit 2)."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest
import sweep_fixtures
from sweep_fixtures import write_data_module

from gdyn_jax import cli
from gdyn_jax.sweep import SweepConfig, assemble, cache, memory, run_sweep
from gdyn_jax.sweep import grid as grid_lib
from gdyn_jax.sweep.mesh import put, sweep_mesh

LRS = np.geomspace(1e-3, 1e-1, 64).astype(np.float32)


def _config(arrays, **kw) -> SweepConfig:
    base = dict(dataset=arrays, model="mlp", optimizer="momentum", steps=8, batch_size=32)
    base.update(eval_every=4, hparams={"beta": 0.9})
    return SweepConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def arrays():
    namespace: dict = {}
    exec(compile(sweep_fixtures.DATA_MODULE, "tinydata", "exec"), namespace)
    return namespace["arrays"]()


@pytest.mark.parametrize("kw", [{}, {"batch_size": None, "track_sharpness": True}])
def test_state_bytes_are_those_a_real_init_allocates(arrays, kw):
    program = assemble(_config(arrays, **kw), {"learning_rate": LRS[:2]})
    hp, keys = program.members()
    first = {k: v[0] for k, v in hp.items()}
    state = program.init(program.data, first, jax.random.wrap_key_data(keys[0]))
    allocated = sum(x.nbytes for x in jax.tree.leaves(state))
    assert memory.state_bytes(program) == allocated


def test_estimate_is_a_lower_bound_of_xlas_memory_analysis(arrays):
    """XLA's analysis of the compiled block: the (donated) arguments plus its temporaries hold
    at least the two copies of the state the estimate counts, and not far more."""
    program = assemble(_config(arrays), {"learning_rate": LRS})
    devices = tuple(jax.devices()[:1])
    programs = cache.compiled(program, 2, devices, 1)
    mesh = sweep_mesh(1)
    member = jax.sharding.NamedSharding(mesh, jax.P("sweep"))
    data = jax.tree.map(lambda x: put(x, jax.sharding.NamedSharding(mesh, jax.P())), programs.data)
    hp = {"learning_rate": put(LRS, member)}
    keys = put(grid_lib.seed_keys(np.arange(len(LRS))), member)
    state = programs.init(data, hp, keys)
    analysis = programs.advance.lower(data, hp, state, np.int32(0)).compile().memory_analysis()
    held = analysis.argument_size_in_bytes + analysis.temp_size_in_bytes
    est = memory.estimate(program, len(LRS), len(LRS), 3)
    assert est.device <= held <= 3 * est.device, (held, est)


def test_a_sweep_that_cannot_fit_is_refused_before_compiling(arrays, monkeypatch):
    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled")

    monkeypatch.setattr(cache, "compiled", no_compiling)
    monkeypatch.setattr(memory, "available_bytes", lambda: 4_000_000)
    grid = {"learning_rate": LRS}
    with pytest.raises(ValueError, match=r"^chunk_size: 64 members at once need at least") as e:
        run_sweep(_config(arrays), grid, progress=False)
    fit = int(re.search(r"pass chunk_size <= (\d+)", str(e.value)).group(1))
    per = memory.state_bytes(assemble(_config(arrays), grid))
    assert 2 * fit * per <= 4_000_000 < 2 * (fit + 1) * per
    with pytest.raises(AssertionError, match="compiled"):  # that chunk passes the check
        run_sweep(_config(arrays), grid, chunk_size=fit, progress=False)


def test_metric_buffers_that_cannot_fit_are_refused_whatever_the_chunk(arrays, monkeypatch):
    """The host's metric buffers grow with every member, chunked or not: with room for less
    than them (4 bytes x 64 members x 3 evaluations x 3 metrics) no chunk size helps."""
    monkeypatch.setattr(cache, "compiled", lambda *a, **k: pytest.fail("compiled"))
    monkeypatch.setattr(memory, "available_bytes", lambda: 4 * 64 * 3 * 3 - 1)
    with pytest.raises(ValueError, match=r"^eval_every: 3 evaluations of 64 members need at least"):
        run_sweep(_config(arrays), {"learning_rate": LRS}, chunk_size=1, progress=False)


def test_device_limits_are_read_from_accelerators_only():
    class Device:
        def __init__(self, platform, limit):
            self.platform, self.limit = platform, limit

        def memory_stats(self):
            return {"bytes_limit": self.limit}

    assert memory._device_limit([Device("gpu", 80), Device("gpu", 40)]) == 40
    assert memory._device_limit([Device("cpu", 80)]) is None


def test_the_cli_refuses_a_sweep_beyond_memory_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(write_data_module(tmp_path / "data")))
    argv = ["sweep", "--dataset", "tinydata:arrays", "--model", "mlp", "--optimizer", "sgd"]
    argv += ["--grid", "learning_rate=0.1", "--seeds", "4000000", "--steps", "2"]
    argv += ["--eval-every", "2", "--no-progress", "--out", str(tmp_path / "o")]
    code = cli.main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert re.match(r"gdyn sweep: error: chunk_size: 4000000 members at once need", lines[0])
    assert not (tmp_path / "o").exists()
