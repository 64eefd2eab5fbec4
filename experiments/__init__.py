"""Experiments that reproduce published figures, one module per entry of REFERENCES.md.

Each module defines ``TITLE`` (one line) and
``run(out_dir: pathlib.Path, mode: str = "quick") -> dict``, where ``mode`` is ``"tiny"``
(seconds, for the test suite), ``"quick"`` (minutes on a laptop CPU, MNIST-1D) or ``"full"``
(the paper-size setting where the data is available). ``run`` writes its PNG figures,
``summary.json`` and ``report.md`` into ``out_dir`` and returns the summary.
"""

from __future__ import annotations

import importlib
import pathlib
from types import ModuleType

NAMES = (
    "wu2021",
    "goh2017",
    "lessard2016",
    "cohen2021",
    "liu2018",
    "mnist1d",
    "an2018",
    "wilson2017",
    "optimizer_memory",
    "gd_variants",
)
MODES = ("tiny", "quick", "full")


def names() -> tuple[str, ...]:
    """The experiment names, in the order of REFERENCES.md."""
    return NAMES


def get(name: str) -> ModuleType:
    """The experiment module called ``name``."""
    if name not in NAMES:
        raise ValueError(f"experiment: unknown name {name!r}; expected one of {', '.join(NAMES)}")
    return importlib.import_module(f"experiments.{name}")


def title(name: str) -> str:
    """The one-line title of experiment ``name``."""
    return get(name).TITLE


def run(name: str, out_dir: str | pathlib.Path, mode: str = "quick") -> dict:
    """Run experiment ``name`` into ``out_dir`` (created) and return its summary."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return get(name).run(out, mode=mode)
