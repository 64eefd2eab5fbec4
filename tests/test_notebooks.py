"""The notebooks are stored without outputs, run top to bottom, and publish their quick run.

The documentation build (tests/test_docs.py) executes the notebooks it does not publish from a
stored run, in quick mode; the stored ones (``STORED_NOTEBOOKS`` in docs/conf.py, whose quick
mode trains networks for minutes) run here in their tiny mode, and their stored quick run must be
of their current cells (``python docs/store_notebooks.py`` stores it again).
"""

from __future__ import annotations

import os
import pathlib
import sys

import nbclient
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
_PATH = list(sys.path)
sys.path[:0] = [str(ROOT / "docs"), str(ROOT / "docs" / "_ext")]
try:
    import conf  # docs/conf.py
    from gdyn_docs import notebooks as published
finally:
    sys.path[:] = _PATH

STORED = [ROOT / "notebooks" / f"{name}.ipynb" for name in conf.STORED_NOTEBOOKS]


def test_there_are_three_notebooks():
    names = [p.stem for p in NOTEBOOKS]
    assert len(names) == 3, names
    assert any("transfer" in n for n in names)
    assert any("sweep" in n for n in names)
    assert any("edge_of_stability" in n for n in names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_stored_without_outputs(path: pathlib.Path):
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code, "a notebook without code"
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    source = "\n".join(c.source for c in code)
    assert "gdyn_jax" in source


@pytest.mark.parametrize("path", STORED, ids=lambda p: p.stem)
def test_published_run_is_a_quick_run_of_the_current_cells(path: pathlib.Path):
    book = published.stored_run(path)  # raises, naming the command, when it is not
    assert book.metadata["gdyn_jax"]["mode"] == "quick"
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure in the stored run"
    assert not [o for o in outputs if o.get("name") == "stderr" or o.output_type == "error"]


@pytest.mark.parametrize("path", STORED, ids=lambda p: p.stem)
def test_stored_notebook_runs_in_tiny_mode(path: pathlib.Path, mnist1d_data_dir):
    book = nbformat.read(path, as_version=4)
    env = dict(os.environ, GDYN_NOTEBOOK_MODE="tiny", PYTHONPATH=str(ROOT))
    env.pop("MPLBACKEND", None)
    client = nbclient.NotebookClient(
        book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute(env=env)
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs)
