"""The notebooks are stored without outputs.

That they run top to bottom (tiny mode) is checked by the documentation build
(tests/test_docs.py), which executes and renders them.
"""

from __future__ import annotations

import pathlib

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


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
