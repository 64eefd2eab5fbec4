"""Long work that shows where it is: the sweep's compile phase, `gdyn reproduce`'s bar in work,
`--version`, the help texts, the `--plot` title of `gdyn analyze`, and JAX's compilation cache
of the `gdyn` command (on by default, in the user's cache folder, the user's own respected)."""

from __future__ import annotations

import importlib.metadata
import json
import pathlib
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from sweep_fixtures import environment, write_data_module

import experiments
import gdyn_jax
from experiments._harness import Report
from gdyn_jax import cli, files
from gdyn_jax.commands import progress
from gdyn_jax.sweep import SweepConfig, observe, run_sweep

TINY = SweepConfig(
    dataset="tinydata:arrays", model="logistic", optimizer="sgd", steps=40, eval_every=10,
    batch_size=64,
)  # fmt: skip
GRID = {"learning_rate": [0.05, 0.1]}


@pytest.fixture
def tiny_dir(tmp_path, monkeypatch):
    write_data_module(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    jax = importlib.metadata.version("jax")
    assert capsys.readouterr().out.startswith(f"gdyn {gdyn_jax.__version__} (jax {jax}, jaxlib ")


@pytest.mark.parametrize(
    ("command", "needles"),
    [
        (None, ["examples:", "gdyn plot runs/demo", "GDYN_COMPILATION_CACHE", "TFDS_DATA_DIR"]),
        ("list", ["examples:", "pkg.module:attr", "~/tensorflow_datasets"]),
        ("analyze", ["examples:", "pkg.module:factory", "optimizer's defaults", "--robust 1,10"]),
        ("sweep", ["examples:", "$GDYN_DATA_DIR, else $TFDS_DATA_DIR, else", "--plot FILE"]),
        ("plot", ["examples:", "default DIR/sweep.png", "checkpoint"]),
        ("reproduce", ["examples:", "--quick --out runs/quick", "index.md"]),
    ],
)
def test_every_help_has_an_example_and_its_defaults(capsys, command, needles):
    with pytest.raises(SystemExit) as stop:
        cli.main([command, "--help"] if command else ["--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in needles:
        assert " ".join(needle.split()) in text, needle


def test_the_sweep_compiles_first_and_its_estimate_excludes_compilation(tiny_dir, capsys):
    events = []
    start = time.perf_counter()
    with observe(events.append):
        run_sweep(TINY, GRID, 2, member_group=2, checkpoint_every=10)
    wall = time.perf_counter() - start
    kinds = [e["event"] for e in events]
    assert kinds == ["compiling", "compiled"] + ["block"] * 4
    compiled = events[1]["seconds"]
    assert 0 < compiled < wall
    assert [e["fraction"] for e in events[2:]] == [0.25, 0.5, 0.75, 1.0]
    assert [e["step"] for e in events[2:]] == [10, 20, 30, 40]
    assert {e["members"] for e in events} == {4} and {e["steps"] for e in events} == {40}
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    first = next(i for i, line in enumerate(bar) if "compiling ..." in line)
    assert "0/4" in bar[first]  # said before any block
    assert re.search(r"compiled in \d+\.\d s", bar[-1])
    # The bar's clock restarted after the compilation: its elapsed time excludes it.
    minutes, seconds = re.search(r"\| 4/4 \[(\d+):(\d+)<", bar[-1]).groups()
    assert 60 * int(minutes) + int(seconds) <= wall - compiled + 1.0


def test_observe_is_scoped_and_nests(tiny_dir):
    outer, inner = [], []
    with observe(outer.append):
        with observe(inner.append):
            run_sweep(TINY, GRID, 1, member_group=2, progress=False)
        assert len(outer) == len(inner) > 2
    run_sweep(TINY, GRID, 1, member_group=2, progress=False)
    assert len(outer) == len(inner)  # nothing after the block ends


def test_reproduce_bar_weighs_experiments_and_moves_inside_them(monkeypatch):
    monkeypatch.setattr(experiments, "recorded_seconds", lambda name, mode: {"a": 30.0}.get(name))
    previous = [{"name": "b", "mode": "tiny", "status": "ok", "seconds": 10.0}]
    weights = progress.estimates(["a", "b", "c"], "tiny", previous)
    assert weights == {"a": 30.0, "b": 10.0, "c": 20.0}  # stored, last run here, their mean
    assert progress.estimates(["c"], "tiny", []) == {"c": progress.DEFAULT_SECONDS}
    bar = progress.ReproduceProgress(["a", "b", "c"], "tiny", previous, disable=True)
    assert bar.total == 60.0
    bar.start("a")
    bar.started -= 15.0  # half of a's estimate spent
    bar.sweep_event({"event": "block", "members": 4, "steps": 40, "step": 10, "num_chunks": 1})
    assert bar.position == pytest.approx(15.0, abs=0.5)
    bar.started -= 100.0  # far over the estimate: at most 95 % before a ends
    bar.sweep_event({"event": "compiling", "members": 4, "steps": 40})
    assert bar.position == pytest.approx(0.95 * 30.0)
    bar.finish("a")
    assert bar.position == 30.0
    # a took about four times its estimate: b's share moves at that speed.
    bar.start("b")
    bar.started -= 20.0
    bar.sweep_event({"event": "compiled", "members": 4, "steps": 40, "seconds": 1.0})
    assert bar.position == pytest.approx(30.0 + 10.0 * 20.0 / (10.0 * bar.taken / 30.0), abs=0.5)
    bar.close()


def test_reproduce_shows_the_sweeps_inside_an_experiment(tiny_dir, monkeypatch, capsys):
    def run(name, out_dir, mode="quick"):
        run_sweep(TINY, GRID, 1, member_group=2, checkpoint_every=20, progress=False)
        report = Report(name, "", pathlib.Path(out_dir), mode)
        report.compare("a number", 1.0, 1.0)
        return report.write(settings=None, seconds=0.0)

    monkeypatch.setattr(experiments, "run", run)
    assert cli.main(["reproduce", "mnist1d", "--quick", "--out", "out"]) == 0
    out, err = capsys.readouterr()
    err = err.replace("\r", "\n")
    assert "mnist1d (1/1): sweep 1 (2 members) compiling ..." in err
    assert "mnist1d (1/1): sweep 1 (2 members) step 40/40" in err
    assert "mnist1d: ok in" in out
    assert re.search(r"reproduce \(quick\): 100%\|", err)


def test_analyze_plot_title_shows_the_defaults_the_text_shows(capsys, tmp_path, monkeypatch):
    saved = {}
    monkeypatch.setattr(files, "save_figure", lambda fig, path, **kw: saved.update(fig=fig))
    argv = ["analyze", "momentum", "--hp", "learning_rate=0.1", "--curvature", "1"]
    assert cli.main([*argv, "--plot", str(tmp_path / "a.png")]) == 0
    text = capsys.readouterr().out
    assert "{'learning_rate': 0.1, 'beta': 0.9}" in text.splitlines()[0]
    title = saved["fig"].get_suptitle()
    assert title.startswith("momentum {'learning_rate': 0.1, 'beta': 0.9}")
    locus = saved["fig"].axes[2]  # the root locus runs over the learning rate, beta at 0.9
    assert locus.get_title() == "root locus in learning_rate"


def test_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("GDYN_COMPILATION_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if sys.platform.startswith("linux"):
        assert cli.cache_folder() == tmp_path / "gdyn_jax" / "jax"
    for off in ("0", "off", "", "false"):
        monkeypatch.setenv("GDYN_COMPILATION_CACHE", off)
        assert cli.cache_folder() is None
    monkeypatch.setenv("GDYN_COMPILATION_CACHE", str(tmp_path / "mine"))
    assert cli.cache_folder() == tmp_path / "mine"


def _analyze(**env):
    argv = ["analyze", "momentum", "--hp", "learning_rate=0.3", "--curvature", "2", "--json"]
    env = environment(**env)
    env.pop("GDYN_COMPILATION_CACHE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "gdyn_jax.cli", *argv], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_compilation_cache_on_by_default_same_numbers_user_setting_kept(tmp_path):
    """Three fresh `gdyn analyze`: filling the cache, reading it, and the user's own folder."""
    ours = tmp_path / "xdg" / "gdyn_jax" / "jax"
    first = _analyze(XDG_CACHE_HOME=str(tmp_path / "xdg"))
    entries = sorted(p.name for p in ours.iterdir())
    assert len(entries) > 10  # every small program of the analysis is kept
    assert _analyze(XDG_CACHE_HOME=str(tmp_path / "xdg")) == first  # read back: same numbers
    assert sorted(p.name for p in ours.iterdir()) == entries  # nothing compiled again
    theirs = tmp_path / "theirs"
    third = _analyze(XDG_CACHE_HOME=str(tmp_path / "xdg2"), JAX_COMPILATION_CACHE_DIR=str(theirs))
    assert third == first
    assert not (tmp_path / "xdg2").exists() and theirs.is_dir()
    np.testing.assert_allclose(first["max_stable_curvature"], (2 + 2 * 0.9) / 0.3, rtol=1e-10)
