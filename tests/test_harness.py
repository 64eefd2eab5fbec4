"""The experiment harness: discovery by file name, scored comparisons, the files it writes.

A throwaway experiment module is written into a temporary folder added to the package's
search path, then run through ``experiments.run`` and ``gdyn reproduce``; the verdicts are
checked against the tolerance arithmetic written out by hand here.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import pathlib
import sys

import pytest

import experiments
from experiments._harness import Comparison, Modes, Report
from gdyn_jax import cli
from gdyn_jax.commands import reproduce

TOY = '''
"""A toy experiment for the harness tests."""
from dataclasses import dataclass

from experiments._harness import Modes

TITLE = "toy experiment"
SOURCE = "nobody, 2024"
PUBLISHED = 2.0

@dataclass(frozen=True)
class Settings(Modes):
    value: float = 2.05
    TINY = dict(value=1.0)
    FULL = dict(value=2.0)

def run(s, report):
    report.text("one paragraph")
    report.compare("value", s.value, PUBLISHED, rtol=0.05, label="published")
    report.bound("value is positive", s.value, lower=0.0)
    with report.figure("toy.png", "a line") as fig:
        fig.subplots().plot([0, 1], [0, s.value])
    report.record(doubled=2 * s.value)
'''


@pytest.fixture
def toy(tmp_path, monkeypatch) -> str:
    folder = tmp_path / "more_experiments"
    folder.mkdir()
    (folder / "zz_toy.py").write_text(TOY)
    (folder / "_helper.py").write_text("X = 1\n")
    monkeypatch.setattr(experiments, "__path__", [*experiments.__path__, str(folder)])
    yield "zz_toy"
    sys.modules.pop("experiments.zz_toy", None)


def test_discovery_is_every_public_module_file():
    folder = pathlib.Path(experiments.__file__).parent
    on_disk = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
    assert list(experiments.names()) == on_disk
    assert {"wu2021", "liu2018", "mnist1d"} <= set(on_disk)


def test_a_new_module_is_an_experiment_without_editing_a_list(toy, tmp_path):
    assert toy in experiments.names() and "_helper" not in experiments.names()
    assert experiments.title(toy) == "toy experiment"
    summary = experiments.run(toy, tmp_path / "out", mode="quick")
    out = tmp_path / "out"
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["mode"] == "quick" and summary["settings"] == {"value": 2.05}
    assert summary["doubled"] == pytest.approx(4.1)
    assert summary["agreement"] == {"agree": 2, "compared": 2}  # |2.05 - 2| <= 0.05 * 2
    assert summary["figures"] == ["toy.png"] and summary["seconds"] >= 0
    assert (out / "toy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "report.md").read_text()
    assert text.startswith("# toy experiment") and "![a line](toy.png)" in text
    assert "| value | 2.05 | published: 2 ± 0.1 | yes |" in text
    assert reproduce.agreement(out) == (2, 2)
    tiny = experiments.run(toy, tmp_path / "tiny", mode="tiny")  # |1 - 2| > 0.1: no
    assert tiny["agreement"] == {"agree": 1, "compared": 2}
    assert [c["agrees"] for c in tiny["comparisons"]] == [False, True]


def test_modes_change_only_the_listed_fields():
    @dataclasses.dataclass(frozen=True)
    class Settings(Modes):
        steps: int = 100
        seeds: int = 3
        widths: tuple[int, ...] = (8, 8)
        TINY = dict(steps=2)
        FULL = dict(seeds=5, widths=(64,))

    assert [f.name for f in dataclasses.fields(Settings)] == ["steps", "seeds", "widths"]
    assert Settings.quick() == Settings(100, 3, (8, 8))
    assert Settings.tiny() == Settings(2, 3, (8, 8))
    assert Settings.full() == Settings(100, 5, (64,))
    assert Settings.TINY == {"steps": 2}  # building a mode leaves its table alone

    class Typo(Settings):
        TINY = dict(step=2)

    with pytest.raises(TypeError, match="step"):
        Typo.tiny()


def test_titles_are_read_without_importing(toy, tmp_path):
    assert experiments.title(toy) == "toy experiment" and f"experiments.{toy}" not in sys.modules
    computed = tmp_path / "more_experiments" / "zz_computed.py"
    computed.write_text(TOY.replace('TITLE = "toy experiment"', 'TITLE = "toy" + " computed"'))
    try:
        assert experiments.title("zz_computed") == "toy computed"  # not a literal: imported
    finally:
        sys.modules.pop("experiments.zz_computed", None)
    with pytest.raises(ValueError, match="^experiment: unknown name 'nope'"):
        experiments.title("nope")


def test_reproduce_runs_a_new_module(toy, tmp_path):
    out = tmp_path / "r"
    assert cli.main(["reproduce", toy, "--tiny", "--out", str(out), "--no-progress"]) == 0
    row = json.loads((out / "index.json").read_text())["rows"][0]
    assert (row["name"], row["status"], row["agree"], row["compared"]) == (toy, "ok", 1, 2)


def test_bad_names_and_modes_are_one_line_errors(toy, tmp_path):
    with pytest.raises(ValueError, match="^experiment: unknown name 'nope'"):
        experiments.run("nope", tmp_path / "out")
    with pytest.raises(ValueError, match="^mode: expected one of tiny, quick, full"):
        experiments.run(toy, tmp_path / "out", mode="fast")
    assert not (tmp_path / "out").exists()  # nothing was written before the error


@pytest.mark.parametrize(
    ("measured", "expected", "rtol", "atol", "agrees"),
    [
        (1.5, 1.0, 0.5, 0.0, True),  # on the boundary |m - e| = rtol |e|
        (1.5001, 1.0, 0.5, 0.0, False),
        (-3.0, -2.0, 0.5, 0.0, True),  # rtol scales |e|
        (0.3, 0.0, 0.5, 0.25, False),
        (0.25, 0.0, 0.5, 0.25, True),
        (math.nan, 1.0, 1.0, 1.0, False),  # a NaN never agrees
        (math.inf, math.inf, 0.0, 0.0, False),
    ],
)
def test_compare_is_the_declared_tolerance(measured, expected, rtol, atol, agrees):
    report = Report("t", "", pathlib.Path("."), "tiny")
    assert report.compare("q", measured, expected, rtol=rtol, atol=atol) is agrees
    assert report.comparisons[0].agrees is agrees


@pytest.mark.parametrize(
    ("measured", "lower", "upper", "agrees", "cell"),
    [
        (0.6, 0.5, None, True, "≥ 0.5"),
        (0.4, 0.5, None, False, "≥ 0.5"),
        (-1.0, None, 0.0, True, "≤ 0"),
        (2.0, 0.0, 1.0, False, "in [0, 1]"),
        (math.nan, 0.0, None, False, "≥ 0"),
    ],
)
def test_bound_rows(measured, lower, upper, agrees, cell):
    row = Comparison("q", measured, lower=lower, upper=upper)
    assert row.agrees is agrees and row.expected_cell() == cell


def test_report_rejects_what_it_cannot_score_or_write(tmp_path):
    report = Report("t", "", tmp_path, "tiny")
    with pytest.raises(ValueError, match="^lower, upper"):
        report.bound("q", 1.0)
    with pytest.raises(ValueError, match="^rtol, atol"):
        report.compare("q", 1.0, 1.0, rtol=-1)
    with pytest.raises(ValueError, match="^mode: reserved"):
        report.record(mode="x")
    with pytest.raises(ValueError, match="^filename"), report.figure("../x.png", "c"):
        pass
    assert report.comparisons == [] and not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", experiments.names())
def test_every_experiment_follows_the_contract(name):
    module = experiments.get(name)
    assert module.TITLE and module.SOURCE and callable(module.run)
    assert issubclass(module.Settings, Modes)  # the quick defaults, TINY and FULL
    for mode in experiments.MODES:
        settings = getattr(module.Settings, mode)()
        assert dataclasses.is_dataclass(settings) and type(settings) is module.Settings
    assert experiments.title(name) == module.TITLE
    source = pathlib.Path(module.__file__).read_text()
    # (no file cites a document outside the repository: tests/test_docs.py checks every file)
    for banned in ('matplotlib.use("Agg")', "pyplot"):
        assert banned not in source, f"{name} mentions {banned}"


@pytest.mark.parametrize("path", sorted(pathlib.Path(experiments.__file__).parent.glob("*.py")))
def test_imports_stand_at_module_top(path):
    """No experiment or helper imports inside a function (deferred imports go through
    ``gdyn_jax.extras``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inside = [
        f"{path.name}:{node.lineno}"
        for function in ast.walk(tree)
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(function)
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    assert not inside, inside
