"""Run notebooks in their quick mode and store the executed copies the site publishes.

    python docs/store_notebooks.py [NAME ...]

For each notebook of ``STORED_NOTEBOOKS`` in ``docs/conf.py`` (or the names given), runs
``notebooks/NAME.ipynb`` top to bottom with ``GDYN_NOTEBOOK_MODE=quick`` from the repository
root and writes it with its outputs to ``docs/stored_notebooks/NAME.ipynb``, recording the mode,
a digest of its cells, the seconds it took and the library versions. The build refuses a stored
run whose cells are not the notebook's current ones, so run this after editing such a notebook.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import nbclient
import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "docs"), str(ROOT / "docs" / "_ext")]

import conf  # noqa: E402  (docs/conf.py, after the path above)
from gdyn_docs import notebooks  # noqa: E402

from gdyn_jax.sweep import results  # noqa: E402


def store(name: str, timeout: int = 1800) -> pathlib.Path:
    """Execute ``notebooks/NAME.ipynb`` in quick mode; write the stored copy; return its path."""
    path = ROOT / "notebooks" / f"{name}.ipynb"
    book = nbformat.read(path, as_version=4)
    digest = notebooks.cells_digest(book)
    env = dict(os.environ, GDYN_NOTEBOOK_MODE="quick", PYTHONPATH=str(ROOT))
    env.pop("MPLBACKEND", None)  # the kernel's inline backend draws the figures
    start = time.perf_counter()
    client = nbclient.NotebookClient(
        book, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute(env=env)
    for cell in book.cells:  # times of day and kernel ids would change every run
        cell.metadata.pop("execution", None)
    book.metadata["gdyn_jax"] = {
        "mode": "quick",
        "cells_sha256": digest,
        "seconds": round(time.perf_counter() - start, 1),
        "versions": results.versions(),
    }
    notebooks.STORED.mkdir(exist_ok=True)
    target = notebooks.STORED / path.name
    nbformat.write(book, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to store (default: all stored ones)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if not (ROOT / "notebooks" / f"{n}.ipynb").is_file()]
    if unknown:
        parser.error(f"names: no notebooks/{unknown[0]}.ipynb")
    for name in args.names or conf.STORED_NOTEBOOKS:
        print(f"stored {store(name).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
