"""Writing an experiment's outputs: ``summary.json``, ``report.md`` and figures.

A report sets each measured number beside the published or predicted one and says whether
they agree::

    report = Report("Edge of stability", source="Cohen et al., ICLR 2021")
    report.compare("final sharpness, GD a=0.01", measured=198.0, expected=200.0, rtol=0.1)
    report.figure("sharpness.png", "Sharpness against steps")
    report.write(out_dir)
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gdyn_jax import files


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__array__"):
        array = np.asarray(value)
        return _to_jsonable(array.tolist()) if array.ndim else _to_jsonable(array.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def write_text_atomic(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, with the usual permissions (``gdyn_jax.files``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(path, text)


def write_summary(out_dir: pathlib.Path, summary: dict) -> pathlib.Path:
    """Write ``summary.json`` (numpy values converted, NaN as null) and return its path."""
    path = pathlib.Path(out_dir) / "summary.json"
    write_text_atomic(path, json.dumps(_to_jsonable(summary), indent=2) + "\n")
    return path


def save_figure(fig: Any, path: str | os.PathLike) -> None:
    """Save a matplotlib figure as PNG (tight layout, 110 dpi) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    files.save_figure(fig, path, dpi=110)
    plt.close(fig)


def _format(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


@dataclass
class Report:
    """A markdown report: prose, a comparison table and figures."""

    title: str
    source: str = ""
    paragraphs: list[str] = field(default_factory=list)
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)

    def text(self, paragraph: str) -> None:
        """Add a paragraph of prose."""
        self.paragraphs.append(paragraph)

    def compare(
        self,
        quantity: str,
        measured: float,
        expected: float,
        *,
        rtol: float | None = None,
        atol: float = 0.0,
        agrees: bool | None = None,
        expected_label: str | None = None,
    ) -> bool:
        """Add a row; agreement is ``|m − e| <= atol + rtol |e|`` unless ``agrees`` is given."""
        if agrees is None:
            tol = atol + (rtol or 0.0) * abs(float(expected))
            agrees = bool(np.isfinite(measured) and abs(float(measured) - float(expected)) <= tol)
        label = expected_label if expected_label is not None else _format(expected)
        self.rows.append((quantity, _format(measured), label, "yes" if agrees else "**no**"))
        return agrees

    def figure(self, filename: str, caption: str) -> None:
        """Link a figure written beside the report."""
        self.figures.append((filename, caption))

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        if self.source:
            lines += [f"Source: {self.source}", ""]
        for paragraph in self.paragraphs:
            lines += [paragraph, ""]
        if self.rows:
            lines += [
                "| quantity | measured | published / predicted | agrees |",
                "|---|---|---|---|",
            ]
            lines += [f"| {q} | {m} | {e} | {a} |" for q, m, e, a in self.rows]
            lines.append("")
        for filename, caption in self.figures:
            lines += [f"![{caption}]({filename})", "", f"*{caption}*", ""]
        return "\n".join(lines)

    def write(self, out_dir: pathlib.Path) -> pathlib.Path:
        """Write ``report.md`` into ``out_dir`` and return its path."""
        path = pathlib.Path(out_dir) / "report.md"
        write_text_atomic(path, self.markdown())
        return path
