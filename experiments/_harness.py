r"""The experiment harness: a report that scores itself, one figure helper, the outputs.

How to add an experiment
------------------------
Write one module ``experiments/NAME.py`` (a name without a leading ``_``: modules starting with
``_`` are helpers). Discovery is by file name, so there is no list of names to edit, and
``gdyn reproduce NAME`` and ``gdyn list experiments`` see it at once. The module defines:

- ``TITLE`` (one line) and ``SOURCE`` (the publication), and the published numbers as module
  constants, so that every number a report sets beside a measurement lives in the module;
- ``Settings``: a frozen dataclass deriving from :class:`Modes`. Its field defaults are the
  ``quick`` mode (minutes on a laptop CPU); the class attributes ``TINY`` (seconds: the tests)
  and ``FULL`` (the paper's size) hold only what those modes change, as Flax's example configs
  start from the default one and override a few entries. ``Settings.tiny()``, ``quick()`` and
  ``full()`` build the three;
- ``run(settings, report) -> None``: the script. It computes and tells ``report`` what to show;
  it never builds paths, writes files or decides by hand whether a number agrees.

::

    TITLE = "MNIST-1D MLP accuracy with Adam (Greydanus & Kobak 2024)"
    SOURCE = "Greydanus & Kobak, ICML 2024"
    PUBLISHED = 0.68

    @dataclass(frozen=True)
    class Settings(Modes):
        steps: int = 6000
        seeds: int = 3

        TINY = dict(steps=20, seeds=2)
        FULL = dict(seeds=5)

    def run(s: Settings, report: Report) -> None:
        accuracy = ...                                        # train, measure
        report.text("What was run, and how to read the table.")
        report.compare("MLP test accuracy (%)", 100 * accuracy, 100 * PUBLISHED, atol=5,
                       label="published")                      # |m - e| <= atol + rtol |e|
        report.bound("Spearman correlation", rho, lower=0.5)  # lower <= m <= upper
        with report.figure("accuracy.png", "Test accuracy against steps") as fig:
            ax = fig.subplots()                               # a matplotlib Figure, no pyplot
            ...
        report.record(accuracy=accuracy)                      # goes into summary.json

Agreement is never typed in: ``compare`` and ``bound`` check the measured value against the
declared tolerance or bounds (a non-finite measurement never agrees), and the table shows the
expected value with its tolerance. To score a qualitative claim, measure a number that
expresses it (a ratio, a count, a largest difference) and ``bound`` it. ``report.table(header,
rows)`` adds a table that is shown, not scored; ``report.mode`` is ``'tiny'``, ``'quick'`` or
``'full'``. Shared pieces: ``experiments._training`` (one sweep call, seed statistics, the
curvature at the sweep's own initialisation), ``experiments._quadratic`` (runs on a quadratic),
``gdyn_jax.measurements`` and ``gdyn_jax.plotting`` (which draw on a given ``Axes``). An
experiment stays a short script (under about 250 lines): a self-contained part of a longer
paper (its computation, scored rows and figure) goes into a helper module of its own that
``run`` calls, as ``_counterexample`` (lessard2016, §4.6), ``_quadratic_floor`` (liu2018) and
``_control`` (wu2021's theory). Imports stand at a module's top; heavy or optional third-party
modules come through ``gdyn_jax.extras``. Keep ``TITLE`` a literal string: ``gdyn list`` then
reads it without importing the module.

``tests/test_harness.py`` checks every module against this contract (and that none calls
pyplot or cites a file outside the repository); give the experiment its own test of its numbers
against an independent reference, on its ``tiny()`` run.

``experiments.run(name, out_dir, mode)`` builds ``Settings.<mode>()`` and a ``Report`` on
``out_dir``, calls ``run``, and writes ``out_dir/report.md`` (settings, prose, the comparison
table, figures) and ``out_dir/summary.json`` (title, source, mode, settings, wall time, every
comparison with its tolerance and verdict, the agreement count, the figures and the recorded
values). Figures are PNG files written when their ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import pathlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from gdyn_jax import extras, files

#: keys of summary.json that the harness writes (``record`` may not use them)
RESERVED = (
    "title",
    "source",
    "mode",
    "settings",
    "seconds",
    "agreement",
    "comparisons",
    "figures",
)


class Modes:
    """The three modes of an experiment's ``Settings`` from one set of defaults.

    A subclass is a frozen dataclass whose field defaults are the ``quick`` mode; ``TINY`` and
    ``FULL`` map field names to the values those modes change (the rest stay the defaults).
    """

    TINY: ClassVar[Mapping[str, Any]] = {}
    FULL: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def tiny(cls):
        """Seconds: the tests' setting."""
        return cls(**cls.TINY)

    @classmethod
    def quick(cls):
        """Minutes on a laptop CPU: the field defaults."""
        return cls()

    @classmethod
    def full(cls):
        """The paper's size."""
        return cls(**cls.FULL)


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and scalars, tuples and dataclasses as JSON types;
    NaN becomes null and infinities the strings ``"inf"`` / ``"-inf"``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, complex):
        return [jsonable(value.real), jsonable(value.imag)]
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__array__"):
        array = np.asarray(value)
        if np.iscomplexobj(array):
            array = np.stack([array.real, array.imag], axis=-1)
        return jsonable(array.tolist()) if array.ndim else jsonable(array.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def table_row(cells: Iterable[Any]) -> str:
    """One markdown table row; a ``|`` inside a cell (as in ``|1 - a h|``) is escaped."""
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def fmt(value: Any) -> str:
    """A number as the report prints it (4 significant digits)."""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One scored row: ``measured`` against ``expected`` within ``atol + rtol |expected|``, or
    against ``lower <= measured <= upper``."""

    quantity: str
    measured: float
    expected: float | None = None
    rtol: float = 0.0
    atol: float = 0.0
    lower: float | None = None
    upper: float | None = None
    label: str = ""

    @property
    def tolerance(self) -> float | None:
        if self.expected is None:
            return None
        return self.atol + self.rtol * abs(self.expected)

    @property
    def agrees(self) -> bool:
        m = self.measured
        if not math.isfinite(m):
            return False
        if self.expected is not None:
            return abs(m - self.expected) <= self.tolerance
        return (self.lower is None or m >= self.lower) and (self.upper is None or m <= self.upper)

    def expected_cell(self) -> str:
        prefix = f"{self.label}: " if self.label else ""
        if self.expected is not None:
            tol = self.tolerance
            return prefix + fmt(self.expected) + (f" ± {tol:.2g}" if tol else " (exact)")
        if self.lower is not None and self.upper is not None:
            return prefix + f"in [{fmt(self.lower)}, {fmt(self.upper)}]"
        return prefix + (
            f"≥ {fmt(self.lower)}" if self.lower is not None else f"≤ {fmt(self.upper)}"
        )


class Report:
    """What an experiment shows: prose, tables, scored comparisons, figures, recorded values.

    ``out_dir`` is the experiment's output folder and ``mode`` the setting it runs in
    (``'tiny'``, ``'quick'`` or ``'full'``); the harness writes the files.
    """

    def __init__(self, title: str, source: str, out_dir: pathlib.Path, mode: str) -> None:
        self.title, self.source, self.mode = title, source, mode
        self.out_dir = pathlib.Path(out_dir)
        self.paragraphs: list[str] = []
        self.comparisons: list[Comparison] = []
        self.figures: list[tuple[str, str]] = []
        self.values: dict[str, Any] = {}

    # ---------------------------------------------------------------- what the script calls

    def text(self, paragraph: str) -> None:
        """Add a paragraph of prose (markdown)."""
        self.paragraphs.append(paragraph)

    def table(self, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Add a markdown table (cells formatted with :func:`fmt`); it is shown, not scored."""
        lines = [table_row(header), "|" + "---|" * len(header)]
        lines += [table_row(fmt(c) for c in row) for row in rows]
        self.paragraphs.append("\n".join(lines))

    def compare(
        self,
        quantity: str,
        measured: float,
        expected: float,
        *,
        rtol: float = 0.0,
        atol: float = 0.0,
        label: str = "",
    ) -> bool:
        """A scored row: agrees when ``|measured - expected| <= atol + rtol |expected|``.

        ``label`` names where ``expected`` comes from (``'published'``, ``'linearize'``, a
        formula). Returns the verdict.
        """
        if rtol < 0 or atol < 0:
            raise ValueError(f"rtol, atol: expected >= 0, got {rtol}, {atol}")
        row = Comparison(quantity, float(measured), float(expected), rtol, atol, label=label)
        self.comparisons.append(row)
        return row.agrees

    def bound(
        self,
        quantity: str,
        measured: float,
        *,
        lower: float | None = None,
        upper: float | None = None,
        label: str = "",
    ) -> bool:
        """A scored row: agrees when ``lower <= measured <= upper`` (either may be omitted)."""
        if lower is None and upper is None:
            raise ValueError("lower, upper: expected at least one bound, got neither")
        row = Comparison(quantity, float(measured), lower=lower, upper=upper, label=label)
        self.comparisons.append(row)
        return row.agrees

    @contextlib.contextmanager
    def figure(
        self, filename: str, caption: str, size: tuple[float, float] = (6.5, 4.5)
    ) -> Iterator[Any]:
        """A ``matplotlib.figure.Figure`` (constrained layout) saved as ``filename`` (PNG,
        110 dpi) into the output folder when the block ends, and linked with ``caption``."""
        if pathlib.Path(filename).name != filename or not filename.endswith(".png"):
            raise ValueError(f"filename: expected a plain 'name.png', got {filename!r}")
        fig = extras.figure.Figure(figsize=size, layout="constrained")
        yield fig
        self.out_dir.mkdir(parents=True, exist_ok=True)
        files.save_figure(fig, self.out_dir / filename, dpi=110)
        self.figures.append((filename, caption))

    def record(self, **values: Any) -> None:
        """Values for ``summary.json`` (numpy arrays and dataclasses are converted)."""
        clash = sorted(set(values) & set(RESERVED))
        if clash:
            raise ValueError(f"{clash[0]}: reserved for the harness in summary.json")
        self.values.update(values)

    # ---------------------------------------------------------------- what the harness calls

    @property
    def agreement(self) -> tuple[int, int]:
        """(agreeing rows, scored rows)."""
        return sum(c.agrees for c in self.comparisons), len(self.comparisons)

    def markdown(self, settings: Any = None) -> str:
        lines = [f"# {self.title}", ""]
        if self.source:
            lines += [f"Source: {self.source}", ""]
        if settings is not None:
            fields = ", ".join(f"{k}={v}" for k, v in jsonable(settings).items())
            lines += [f"Settings (`{self.mode}`): {fields}.", ""]
        for paragraph in self.paragraphs:
            lines += [paragraph, ""]
        if self.comparisons:
            agree, total = self.agreement
            lines += [
                f"{agree} of {total} rows agree within their declared tolerance.",
                "",
                "| quantity | measured | published / predicted | agrees |",
                "|---|---|---|---|",
            ]
            for c in self.comparisons:
                verdict = "yes" if c.agrees else "**no**"
                lines.append(table_row([c.quantity, fmt(c.measured), c.expected_cell(), verdict]))
            lines.append("")
        for filename, caption in self.figures:
            lines += [f"![{caption}]({filename})", "", f"*{caption}*", ""]
        return "\n".join(lines)

    def summary(self, settings: Any, seconds: float) -> dict[str, Any]:
        agree, total = self.agreement
        rows = [
            dataclasses.asdict(c) | {"tolerance": c.tolerance, "agrees": c.agrees}
            for c in self.comparisons
        ]
        return jsonable(
            {
                "title": self.title,
                "source": self.source,
                "mode": self.mode,
                "settings": settings,
                "seconds": seconds,
                "agreement": {"agree": agree, "compared": total},
                "comparisons": rows,
                "figures": [name for name, _ in self.figures],
                **self.values,
            }
        )

    def write(self, settings: Any, seconds: float) -> dict[str, Any]:
        """Write ``report.md`` and ``summary.json``; return the summary."""
        summary = self.summary(settings, seconds)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        files.write_text(self.out_dir / "report.md", self.markdown(settings))
        files.write_text(self.out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        return summary
