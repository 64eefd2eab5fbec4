"""Every code block of the README runs as written and prints what the text says it prints.

The blocks run in README order, in one working directory that holds the ``rules.py`` the
README defines (a user's file beside them) and in one namespace (as ``__main__``, like a
user's script):

- ``pycon`` blocks are doctests: each ``>>>`` line's output is compared with the text;
- ``python`` blocks are executed; one followed by a ``text`` block must print exactly that text;
- ``bash`` blocks: every ``gdyn`` command runs through the CLI and must exit 0. Not run here:
  the two set-up commands (a fresh virtual environment: ``.ci/run`` runs the test command
  itself, checked below, and the main job ``gdyn reproduce all --quick`` takes minutes; the
  experiments' tests run each experiment), the docs build (tests/test_docs.py builds the site
  with the same flags) and commands for several hosts (tests/test_multiprocess.py).

Independent checks of what the text claims beyond its printed output: the quoted grid error is
the real one, the certified-rate example against a hand-derived closed loop, the sweep's
record of the user's import path.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from gdyn_jax.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
NOT_RUN = (
    re.compile(r"^python3 -m venv "),  # the two set-up commands
    re.compile(r"^pip install -e \"\.\[docs\]\" && sphinx-build "),  # tests/test_docs.py
    re.compile(r"--coordinator|^srun |^sbatch "),  # several hosts: tests/test_multiprocess.py
)
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(README.read_text())]


def commands(code: str) -> list[str]:
    """The command lines of a bash block, continuation lines joined, comments left out."""
    lines = [line.strip() for line in code.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def rules_py() -> str:
    return next(code for lang, code in blocks() if code.startswith("# rules.py"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, mnist1d_data_dir):
    """Runs every block in order; returns ``[(lang, code, printed or exit status)]``."""
    workdir = tmp_path_factory.mktemp("readme")
    (workdir / "rules.py").write_text(rules_py())
    namespace = {"__name__": "__main__"}
    outcomes = []
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        patch.syspath_prepend(str(workdir))
        for i, (lang, code) in enumerate(blocks()):
            if lang == "python" and not code.startswith("# rules.py"):
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    exec(compile(code, f"README block {i}", "exec"), namespace)
                outcomes.append((lang, code, out.getvalue()))
            elif lang == "bash":
                for line in commands(code):
                    if any(p.search(line) for p in NOT_RUN):
                        continue
                    argv = shlex.split(line)
                    assert argv[0] == "gdyn", f"README runs a command the test cannot: {line}"
                    extra = ["--no-progress"] if argv[1] in ("sweep", "reproduce") else []
                    outcomes.append((lang, line, main([*argv[1:], *extra])))
            else:
                outcomes.append((lang, code, None))
    sys.modules.pop("rules", None)
    return outcomes, namespace, workdir


def test_every_gdyn_command_succeeds(run):
    outcomes, _, _ = run
    ran = [(line, status) for lang, line, status in outcomes if lang == "bash"]
    assert len(ran) >= 4 and all(status == 0 for _, status in ran), ran


def test_every_python_block_prints_its_text(run):
    outcomes, _, _ = run
    checked = 0
    for (lang, code, printed), (next_lang, text, _) in zip(outcomes, outcomes[1:], strict=False):
        if lang == "python" and next_lang == "text":
            assert printed.strip() == text.strip(), code
            checked += 1
    assert checked >= 6


def test_pycon_examples(run):
    """The ``>>>`` examples (tour, exactness) as doctests of the whole file."""
    result = doctest.testfile(str(README), module_relative=False, optionflags=DOCTEST_FLAGS)
    assert result.attempted >= 30 and result.failed == 0


def test_setup_commands_are_what_ci_runs():
    setup = [line for lang, code in blocks() if lang == "bash" for line in commands(code)]
    test_command = next(line for line in setup if line.endswith("&& pytest"))
    ci = (ROOT / ".ci" / "run").read_text()
    for part in ("python3 -m venv .venv", ". .venv/bin/activate", 'pip install -e ".[test]"'):
        assert part in test_command and part in ci
    assert re.search(r"^pytest$", ci, re.M)
    main_job = next(line for line in setup if "gdyn reproduce all --quick" in line)
    assert main_job.endswith("gdyn reproduce all --quick --out results")


def test_quoted_grid_error_is_the_real_one(run):
    from gdyn_jax.sweep import Grid, SweepConfig

    _, _, workdir = run
    quoted = re.search(r"`(grid: optimizer .*?)`", " ".join(README.read_text().split())).group(1)
    sys.path.insert(0, str(workdir))
    try:
        from rules import qhm

        config = SweepConfig(model="logistic", optimizer=qhm)
        with pytest.raises(ValueError) as info:
            Grid.build(config, {"learning_rate": [0.1], "nu": [1.5]})
    finally:
        sys.path.remove(str(workdir))
        sys.modules.pop("rules", None)
    assert str(info.value) == quoted


def test_sweep_records_the_users_import_path(run):
    from gdyn_jax.sweep import load_results

    _, _, workdir = run
    record = json.loads(load_results(workdir / "runs" / "qhm").attrs["config"])
    assert record["optimizer"] == "rules:qhm"


def test_certified_rate_example_against_a_hand_derived_loop(run):
    """QHM on f = h θ²/2: [θ; m]' = [[1 − ah(1 − νβ), −aνβ], [(1 − β)h, β]] [θ; m]; its
    worst spectral radius over h in [1, 10] is the quadratic rate the README prints."""
    from gdyn_jax.linearize import robust

    _, namespace, _ = run
    result = namespace["result"]
    a, beta, nu = 0.25, 0.7, 0.7
    radii = [
        np.max(
            np.abs(
                np.linalg.eigvals(
                    [[1 - a * h * (1 - nu * beta), -a * nu * beta], [(1 - beta) * h, beta]]
                )
            )
        )
        for h in np.linspace(1.0, 10.0, 2001)
    ]
    assert result.quadratic_rate == pytest.approx(max(radii), abs=1e-9)
    assert result.rate >= result.quadratic_rate and result.lmi_residual() <= robust.LMI_RTOL
    assert np.linalg.eigvalsh(result.P)[0] > 0
    qhm = namespace["qhm"]
    assert robust.robust_rate(qhm(0.25, beta=0.7, nu=0.7), 1.0, 10.0, iqc="sector").rate is None


def test_main_job_installs_what_every_experiment_imports(tmp_path):
    """The main job's install (its extras) must cover the experiments: run the experiments that
    reach an optional extra's entry point with every module of the extras it does not install
    made unimportable, as on a fresh machine."""
    import subprocess
    import tomllib

    setup = [line for lang, code in blocks() if lang == "bash" for line in commands(code)]
    main_job = next(line for line in setup if "gdyn reproduce all --quick" in line)
    found = re.findall(r'pip install -e "?\.\[([\w,]+)\]', main_job)
    installed = set(found[0].split(",")) if found else set()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    # the library's entry points behind an extra: linearize.robust_rate, TransferFunction.to_control
    entry_points = {"robust_rate": "robust", "to_control": "control"}
    absent = {
        re.split(r"[<>=!~ \[]", requirement)[0].replace("-", "_")
        for name in set(entry_points.values()) - installed
        for requirement in extras[name]
    }
    import experiments

    needing = [
        name
        for name in experiments.names()
        if any(call in Path(experiments.get(name).__file__).read_text() for call in entry_points)
    ]
    assert needing, "no experiment uses an extra: the check would check nothing"
    blocker = (
        "import sys\n"
        f"for m in {sorted(absent)!r}: sys.modules[m] = None\n"
        "import experiments\n"
        f"for n in {needing!r}: experiments.run(n, {str(tmp_path)!r} + '/' + n, 'tiny')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", blocker], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
