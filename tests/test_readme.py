"""The README's bring-your-own section runs as written and prints what it says it prints.

Its Python blocks run in order in one namespace (as ``__main__``, like a user's script); a
block followed by a ``text`` block must print exactly that text. The error message the text
quotes is checked against the real one, and the ``gdyn sweep`` line runs with the section's
``rules.py`` in the working directory.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pytest

from gdyn_jax.cli import main
from gdyn_jax.sweep import Grid, SweepConfig, load_results

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def section() -> str:
    text = README.read_text()
    start = text.index("### Bring your own optimizer, model, data and loss")
    return text[start : text.index("\n## ", start)]


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(section())]


@pytest.fixture(scope="module")
def namespace(mnist1d_data_dir):
    return {"__name__": "__main__"}


def test_python_blocks_print_what_the_text_says(namespace):
    found = blocks()
    checked = 0
    for i, (lang, code) in enumerate(found):
        if lang != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"README block {i}", "exec"), namespace)
        if i + 1 < len(found) and found[i + 1][0] == "text":
            assert out.getvalue().strip() == found[i + 1][1].strip(), f"block {i}"
            checked += 1
    assert checked == 3


def test_quoted_grid_error_is_the_real_one(namespace):
    if "qhm" not in namespace:
        test_python_blocks_print_what_the_text_says(namespace)
    quoted = re.search(r"`(grid: optimizer .*?)`", " ".join(section().split())).group(1)
    config = SweepConfig(model="logistic", optimizer=namespace["qhm"])
    with pytest.raises(ValueError) as info:
        Grid.build(config, {"learning_rate": [0.1], "nu": [1.5]})
    assert str(info.value) == quoted


def test_command_line_runs_with_rules_py_beside_it(mnist1d_data_dir, tmp_path, monkeypatch):
    rules = next(code for lang, code in blocks() if code.startswith("# rules.py"))
    (tmp_path / "rules.py").write_text(rules)
    command = next(code for lang, code in blocks() if lang == "bash")
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:2] == ["gdyn", "sweep"]
    argv[argv.index("--out") + 1] = str(tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    assert main([*argv[1:], "--no-progress"]) == 0
    record = json.loads(load_results(tmp_path / "runs").attrs["config"])
    assert record["optimizer"] == "rules:qhm"
