"""Experiments that reproduce published figures: discovery and running.

Every public module of this package (``experiments/NAME.py``, a name without a leading ``_``)
is an experiment; how to write one is in ``experiments/_harness.py``. ``run(name, out_dir,
mode)`` runs one into ``out_dir`` and returns its summary (also written as ``summary.json``);
``gdyn reproduce`` adds the index. ``title(name)`` reads a literal ``TITLE`` from the module's
source, so that listing the experiments (``gdyn list experiments``) imports none of them.
``recorded_seconds(name, mode)`` is the wall time of the run stored for the documentation
(``docs/results/stored/NAME/run.json``, quick mode), which ``gdyn reproduce`` uses to weigh
the experiments in its progress bar.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import pathlib
import pkgutil
import time
from types import ModuleType
from typing import Any

from experiments._harness import Report

MODES = ("tiny", "quick", "full")
__all__ = ["MODES", "Report", "get", "names", "recorded_seconds", "run", "settings", "title"]

#: The quick runs stored for the documentation (``docs/store_results.py`` writes them).
STORED = pathlib.Path(__file__).resolve().parents[1] / "docs" / "results" / "stored"


def names() -> tuple[str, ...]:
    """The experiments: the public modules of this package, in alphabetical order."""
    found = pkgutil.iter_modules(__path__)
    return tuple(sorted(m.name for m in found if not m.name.startswith("_")))


def get(name: str) -> ModuleType:
    """The experiment module called ``name``."""
    return importlib.import_module(_known(name))


def title(name: str) -> str:
    """The one-line title of experiment ``name``: its ``TITLE``, read from the source when it is
    assigned once, as a literal; otherwise from the imported module."""
    source = pathlib.Path(importlib.util.find_spec(_known(name)).origin).read_text("utf-8")
    found = []
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "TITLE" for t in targets):
            found.append(node)
    if len(found) == 1 and isinstance(found[0], ast.Assign):
        try:
            return ast.literal_eval(found[0].value)
        except ValueError:
            pass
    return get(name).TITLE


def recorded_seconds(name: str, mode: str) -> float | None:
    """The wall time (s) of the stored run of experiment ``name`` in ``mode``, or None (no
    stored run in that mode, or an unreadable record)."""
    try:
        record = json.loads((STORED / _known(name).split(".")[1] / "run.json").read_text())
        seconds = float(record["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return seconds if record.get("mode") == mode and seconds >= 0 else None


def _known(name: str) -> str:
    """The module path of experiment ``name`` (a ValueError naming the known ones if unknown)."""
    known = names()
    if name not in known:
        raise ValueError(f"experiment: unknown name {name!r}; expected one of {', '.join(known)}")
    return f"experiments.{name}"


def settings(name: str, mode: str) -> Any:
    """The ``Settings`` of experiment ``name`` in ``mode`` (``Settings.tiny()`` and so on)."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    return getattr(get(name).Settings, mode)()


def run(name: str, out_dir: str | pathlib.Path, mode: str = "quick") -> dict:
    """Run experiment ``name`` in ``mode`` into ``out_dir`` (created); return its summary."""
    module = get(name)
    chosen = settings(name, mode)
    report = Report(module.TITLE, module.SOURCE, pathlib.Path(out_dir), mode)
    report.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    module.run(chosen, report)
    return report.write(chosen, time.perf_counter() - start)
