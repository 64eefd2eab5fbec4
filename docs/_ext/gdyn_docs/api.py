"""The API reference, generated from each module's ``__all__`` when a build starts.

Each module gets one page: its docstring, a summary table (every public name with the first
sentence of its docstring) and the entries, classes first, then functions, then constants with
their values. The index groups the modules by task (``API_GROUPS`` in ``docs/conf.py``).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import pprint
import re
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from sphinx.ext.autosummary import extract_summary
from sphinx.pycode import ModuleAnalyzer

#: A sentence for each public constant whose defining module has no ``#:`` comment above it
#: (such a comment, where there is one, is used instead: it is the better home).
CONSTANTS = {
    "IQCS": "The integral quadratic constraints a certified rate can use: ``'sector'`` "
    "(the gradient lies in the sector of an :math:`L`-smooth, :math:`\\mu`-strongly convex "
    "function) and ``'off_by_one'`` (Lessard, Recht and Packard 2016's off-by-one IQC).",
    "STEP_INFO_KEYS": "The metrics :func:`~gdyn_jax.linearize.step_info` returns, named and "
    "defined as python-control's ``step_info`` (times in optimizer steps, overshoot and "
    "undershoot in percent).",
    "DEFAULT_DATASET": "The dataset used when none is named: MNIST-1D, generated offline.",
    "LOSSES": "The named per-example losses a sweep accepts: cross-entropy, and the square loss "
    "on one-hot targets (as in Cohen et al. 2021).",
    "SCHEDULES": "The learning-rate schedules a sweep accepts by name (``None`` is constant): "
    "each a unit-peak schedule multiplied by the swept learning rate.",
    "METHODS": "The eigenvalue methods of the Hessian measurements: Lanczos iteration and power "
    "iteration, both on Hessian-vector products.",
    "CONST": "The kind of a value independent of the variables (the state, reference and noise).",
    "AFFINE": "The kind of a value proven affine in the variables.",
    "NONAFFINE": "The kind of a value not proven affine in the variables.",
    "MAX_PERIOD": "The longest period, in steps, checked for a periodic rule's clock.",
    "SCALES": "The scales of the points at which a map proven affine is cross-checked "
    "numerically, around the linearisation point and around the origin.",
    "TIME_CHECKS": "The numbers of clock steps after which :math:`A, B` are recomputed to "
    "cross-check that a rule is time-invariant.",
    "LOCK_FILE": "The file in a sweep's output folder that keeps a second writer out.",
    "FORMAT": "The version of the results file's format, written in its header and checked when "
    "it is read.",
}

_SETTINGS = get_default_settings(Parser)


def public_names(module: ModuleType) -> list[str]:
    """``__all__``, or the module's own public functions and classes where it has none."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module.__name__
    ]


def documented_names(name: str) -> list[str]:
    """The names a module's page documents: all its public names."""
    return public_names(importlib.import_module(name))


def kind(value: Any) -> str:
    """``'class'``, ``'function'`` (anything callable) or ``'constant'``."""
    if inspect.isclass(value):
        return "class"
    return "function" if callable(value) else "constant"


#: A Python role whose target has no dot: relative to a class, it cannot resolve in a table.
_RELATIVE_ROLE = re.compile(r":(?:py:)?(?:meth|attr|func|class|obj|data|exc):`~?([\w]+)(\(\))?`")


def summary(text: str | None) -> str:
    """The first sentence of a docstring (reStructuredText), as autosummary finds it; a
    reference relative to its class becomes a literal."""
    lines = inspect.cleandoc(text or "").splitlines()
    first = extract_summary(lines, _SETTINGS) if lines else ""
    if first.endswith(" ."):  # cut inside "0 .. n": the whole first paragraph instead
        paragraph = "\n".join(lines).strip().split("\n\n")[0]
        first = " ".join(line.strip() for line in paragraph.splitlines())
    return _RELATIVE_ROLE.sub(r"``\1\2``", first)


def _defining_modules(module: ModuleType) -> list[ModuleType]:
    """``module``, the modules of its package (a name re-exported from a sibling is defined
    there) and, for a package, its submodules already imported."""
    found = [module]
    package = module.__name__.rpartition(".")[0]
    if not hasattr(module, "__path__") and package:
        found += [m for n, m in sorted(sys.modules.items()) if n.startswith(package + ".") and m]
    if hasattr(module, "__path__"):
        prefix = module.__name__ + "."
        for info in pkgutil.walk_packages(module.__path__, prefix):
            sub = sys.modules.get(info.name)
            if sub is not None:
                found.append(sub)
    return found


def constant_sentence(module: ModuleType, name: str) -> str:
    """The ``#:`` comment above the constant's assignment, or its entry in :data:`CONSTANTS`."""
    value = getattr(module, name)
    for candidate in _defining_modules(module):
        if getattr(candidate, name, None) is not value:
            continue
        try:
            docs = ModuleAnalyzer.for_module(candidate.__name__).find_attr_docs()
        except Exception:  # no source: nothing to read
            continue
        comment = docs.get(("", name))
        if comment:
            return " ".join(line.strip() for line in comment if line.strip())
    return CONSTANTS.get(name, "")


def _value_lines(value: Any) -> tuple[str | None, list[str]]:
    """(the ``:value:`` option, or None and a literal block) for a constant's value; a set's
    elements sorted, so that the page is the same in every build."""
    if isinstance(value, (set, frozenset)):
        elements = ", ".join(repr(v) for v in sorted(value, key=repr))
        text = f"{type(value).__name__}({{{elements}}})"
        block = [f"{type(value).__name__}({{", *(f"    {v!r}," for v in sorted(value, key=repr))]
        block.append("})")
    else:
        text = repr(value)
        block = pprint.pformat(value, width=88).splitlines()
    if len(text) <= 90 and "\n" not in text:
        return text, []
    return None, ["", "   .. code-block:: python", "", *(f"      {line}" for line in block)]


def _entry(module: ModuleType, name: str) -> list[str]:
    full = f"{module.__name__}.{name}"
    value = getattr(module, name)
    if kind(value) == "class":
        return [f".. autoclass:: {full}", "   :members:", ""]
    if kind(value) == "function":
        return [f".. autofunction:: {full}", ""]
    inline, block = _value_lines(value)
    lines = [f".. py:data:: {name}", f"   :module: {module.__name__}"]
    if inline is not None:
        lines.append(f"   :value: {inline}")
    lines += ["", f"   {constant_sentence(module, name)}", *block, ""]
    return lines


def _summary_row(module: ModuleType, name: str) -> list[str]:
    value = getattr(module, name)
    if kind(value) == "constant":
        text = summary(constant_sentence(module, name))
    else:
        text = summary(inspect.getdoc(value))
    return [f"   * - :py:obj:`~{module.__name__}.{name}`", f"     - {text or ' '}"]


SECTIONS = (("class", "Classes"), ("function", "Functions"), ("constant", "Constants"))


def short_title(name: str) -> str:
    """A module's page title: its path without the package prefix (short in the sidebar)."""
    return name.removeprefix("gdyn_jax.")


def module_page(name: str) -> str:
    """The reStructuredText page of one module."""
    module = importlib.import_module(name)
    names = public_names(module)
    title = short_title(name)
    body = [title, "=" * len(title), "", f".. automodule:: {name}", ""]
    if names:
        body += [".. rubric:: Summary", "", ".. list-table::", "   :class: gdyn-summary", ""]
        for section, _ in SECTIONS:
            for n in names:
                if kind(getattr(module, n)) == section:
                    body += _summary_row(module, n)
        body.append("")
    for section, heading in SECTIONS:
        members = [n for n in names if kind(getattr(module, n)) == section]
        if members:
            body += [heading, "-" * len(heading), ""]
            for n in members:
                body += _entry(module, n)
    return "\n".join(body) + "\n"


def module_summary(name: str) -> str:
    """The first sentence of a module's docstring, in MyST (roles written ``{role}`x```)."""
    text = summary(importlib.import_module(name).__doc__)
    return re.sub(r":((?:py:)?[a-z]+):`", r"{\1}`", text)


def _module_table(names: Sequence[str]) -> list[str]:
    """A MyST list-table: each module linked, with the first sentence of its docstring."""
    rows = ["```{list-table}", ":class: gdyn-summary", ":widths: 25 75", ":header-rows: 1", ""]
    rows += ["* - module", "  - what it is for"]
    for name in names:
        link = f"[`{short_title(name)}`](_generated/{name}.rst)"
        rows += [f"* - {link}", f"  - {module_summary(name)}"]
    return [*rows, "```"]


def index_page(groups, internal: Sequence[str], deprecated: Sequence[str]) -> str:
    """The API index (MyST): the public modules by task, then the internals."""
    lines = [
        "# API reference",
        "",
        "Every public name of the package, with its docstring. The pages are generated from",
        "each module's `__all__` when the site is built, so nothing public is left out; each",
        "page opens with a table of its names and their one-line summaries.",
        "",
    ]
    toctree = []
    for title, purpose, names in groups:
        lines += [f"## {title}", "", purpose, "", *_module_table(names), ""]
        toctree += [f"_generated/{n}" for n in names]
    lines += [
        "## Internals",
        "",
        "The modules behind `linearize` and the sweep engine, whose docstrings state the maths",
        "and the proofs.",
        "",
        *_module_table(internal),
        "",
    ]
    if deprecated:
        lines += ["## Old import paths", "", "Each works for one more release, with a warning.", ""]
        lines += [f"- `{name}`: {module_summary(name)}" for name in deprecated]
        lines.append("")
    pages = [*toctree, *(f"_generated/{n}" for n in internal)]
    lines += ["```{toctree}", ":hidden:", "", *pages, "```", ""]
    return "\n".join(lines)


def write(out: Path, groups, internal: Sequence[str], deprecated: Sequence[str]) -> None:
    """``out/_generated/NAME.rst`` for every grouped and internal module, and ``out/index.md``."""
    generated = out / "_generated"
    shutil.rmtree(generated, ignore_errors=True)
    generated.mkdir(parents=True)
    public = [name for _, _, names in groups for name in names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the old paths' forwarders
        for name in [*public, *internal]:
            (generated / f"{name}.rst").write_text(module_page(name), encoding="utf-8")
        (out / "index.md").write_text(index_page(groups, internal, deprecated), encoding="utf-8")
