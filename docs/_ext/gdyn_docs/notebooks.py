"""The notebooks as the site publishes them: executed in quick mode, or a stored quick run.

A notebook in ``STORED_NOTEBOOKS`` (``docs/conf.py``) is published from its run stored in
``docs/stored_notebooks/`` by ``python docs/store_notebooks.py``, and only while that run is of
the notebook's current cells; the others are copied as they are and executed by myst-nb.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Collection
from pathlib import Path

import nbformat

STORED = Path(__file__).resolve().parents[2] / "stored_notebooks"
STORE_COMMAND = "python docs/store_notebooks.py"


def cells_digest(book) -> str:
    """SHA-256 of the notebook's cells (type and source): what a stored run must have run."""
    digest = hashlib.sha256()
    for cell in book.cells:
        digest.update(f"{cell.cell_type}\0{cell.source}\0".encode())
    return digest.hexdigest()


def stored_run(path: Path):
    """The stored quick run of notebook ``path``; a ``RuntimeError`` if none is current."""
    stored = STORED / path.name
    if not stored.is_file():
        raise RuntimeError(f"{path.name}: no stored run; run `{STORE_COMMAND} {path.stem}`")
    book = nbformat.read(stored, as_version=4)
    record = book.metadata.get("gdyn_jax", {})
    current = cells_digest(nbformat.read(path, as_version=4))
    ran = record.get("cells_sha256")
    if record.get("mode") != "quick" or ran != current or cells_digest(book) != current:
        raise RuntimeError(
            f"{path.name}: the stored run is not of its current cells in quick mode; "
            f"run `{STORE_COMMAND} {path.stem}`"
        )
    return book


def publish(source: Path, out: Path, stored: Collection[str]) -> None:
    """Write the notebooks of ``source`` into ``out`` as the site shows them."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for path in sorted(source.glob("*.ipynb")):
        if path.stem in stored:
            book = stored_run(path)
            book.metadata["mystnb"] = {"execution_mode": "off"}
            nbformat.write(book, out / path.name)
        else:
            shutil.copy2(path, out / path.name)
