"""`gdyn reproduce`: end to end in the tiny setting, the index, failure isolation, bad input."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

import experiments
from experiments._harness import Report
from gdyn_jax import cli
from gdyn_jax.commands import reproduce

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _index(out: pathlib.Path) -> tuple[str, dict]:
    return (out / "index.md").read_text(), json.loads((out / "index.json").read_text())


def test_command_line_end_to_end_tiny(tmp_path):
    """Two real experiments into one folder: a fresh `python -m gdyn_jax.cli`, then main()."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    out = tmp_path / "results"
    for name, fresh_process in (("optimizer_memory", True), ("lessard2016", False)):
        argv = ["reproduce", name, "--tiny", "--out", str(out), "--no-progress"]
        if fresh_process:  # the real entry point once; then in-process (same code path)
            proc = subprocess.run(
                [sys.executable, "-m", "gdyn_jax.cli", *argv],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
                timeout=300,
            )
            assert proc.returncode == 0, proc.stderr
            assert f"{name}: ok" in proc.stdout + proc.stderr
        else:
            assert cli.main(argv) == 0
        for path in ("report.md", "summary.json"):
            assert (out / name / path).is_file()
        text, index = _index(out)
        rows = {row["name"]: row for row in index["rows"]}
        row = rows[name]
        assert index["mode"] == "tiny" and row["mode"] == "tiny" and row["status"] == "ok"
        assert f"[{name}/report.md]({name}/report.md)" in text
        # The agreement summary counts the report's comparison rows.
        report = (out / name / "report.md").read_text()
        assert row["compared"] == report.count("| yes |") + report.count("| **no** |") > 0
        assert row["agree"] == report.count("| yes |")
        assert f"{row['agree']}/{row['compared']} rows agree" in text
    # The second run into the same folder keeps the first one's row, in registry order.
    assert [row["name"] for row in index["rows"]] == ["lessard2016", "optimizer_memory"]


def _fake_run(failing: str):
    def run(name, out_dir, mode="quick"):
        if name == failing:
            raise RuntimeError("boom: simulated failure")
        report = Report(name, "", pathlib.Path(out_dir), mode)
        report.compare("a number", 1.0, 1.0, rtol=0.1)
        report.compare("another", 2.0, 1.0, rtol=0.1)
        return report.write(settings=None, seconds=0.0)

    return run


def test_all_writes_index_and_isolates_a_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(experiments, "run", _fake_run(failing="cohen2021"))
    monkeypatch.setattr(experiments, "title", lambda name: f"title of {name}")
    out = tmp_path / "all"
    rc = cli.main(["reproduce", "all", "--quick", "--out", str(out), "--no-progress"])
    assert rc == 1
    text, index = _index(out)
    rows = {row["name"]: row for row in index["rows"]}
    assert list(rows) == list(experiments.names())  # every experiment ran, in order
    assert rows["cohen2021"]["status"] == "failed"
    assert "boom: simulated failure" in rows["cohen2021"]["error"]
    assert "Traceback" in (out / "cohen2021" / "error.txt").read_text()
    ok = [name for name in experiments.names() if name != "cohen2021"]
    for name in ok:
        assert rows[name]["status"] == "ok" and rows[name]["seconds"] >= 0
        assert (out / name / "report.md").is_file()
        assert f"[{name}/report.md]({name}/report.md)" in text
        assert (rows[name]["agree"], rows[name]["compared"]) == (1, 2)
        assert json.loads((out / name / "summary.json").read_text())["mode"] == "quick"
    assert "| cohen2021 | title of cohen2021 | quick | failed |" in text
    assert "Failed: cohen2021" in text
    assert "failed: cohen2021" in capsys.readouterr().out


def test_modes_from_flags():
    parser = cli.build_parser()
    for flags, mode in (([], "full"), (["--quick"], "quick"), (["--tiny"], "tiny")):
        args = parser.parse_args(["reproduce", "goh2017", "--out", "x", *flags])
        assert reproduce._mode(args) == mode
    with pytest.raises(SystemExit):
        parser.parse_args(["reproduce", "goh2017", "--out", "x", "--quick", "--tiny"])


def test_unknown_experiment_is_a_one_line_error(tmp_path, capsys):
    rc = cli.main(["reproduce", "nope", "--tiny", "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("gdyn reproduce: error: experiment:") and "nope" in err
    assert len(err.strip().splitlines()) == 1


def test_agreement_is_read_from_the_summary_and_pipes_in_cells_are_escaped(tmp_path):
    report = Report("t", "", tmp_path, "tiny")
    report.text("| not | a | table | yes |? prose")
    report.compare("rate vs max |1 - a h|", 1.0, 1.0, rtol=0.1)
    report.compare("y", 3.0, 1.0, rtol=0.1)
    report.write(settings=None, seconds=0.0)
    assert reproduce.agreement(tmp_path) == (1, 2)
    assert reproduce.agreement(tmp_path / "missing") == (0, 0)
    rows = [line for line in (tmp_path / "report.md").read_text().splitlines() if "max" in line]
    assert rows == ["| rate vs max \\|1 - a h\\| | 1 | 1 ± 0.1 | yes |"]
