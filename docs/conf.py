"""Sphinx configuration of the gdyn_jax documentation.

Build (offline, warnings are errors), from the repository root:
``sphinx-build -W --keep-going -b html docs docs/_build/html``.

When a build starts (Sphinx's ``builder-inited`` event) this file writes generated folders,
all ignored by git:

- ``api/_generated/``: one page per public module, listing every name of its ``__all__``
  (so the API reference can never miss a public function);
- ``notebooks/``: copies of the repository's ``notebooks/*.ipynb``, which myst-nb executes in
  their tiny mode (``GDYN_NOTEBOOK_MODE=tiny``) while building;
- ``results/_generated/``: one page per experiment (found by ``experiments.names()``): its
  docstring, its settings in each mode, and the report and figures of its last stored quick
  run (``results/stored/NAME/``, written by ``python docs/store_results.py RUN_DIR``), and
  ``results/index.md``, the table of them all.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pathlib
import re
import shutil
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GDYN_NOTEBOOK_MODE", "tiny")
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
)

project = "gdyn_jax"
author = "the gdyn_jax developers"
copyright = "2026, the gdyn_jax developers"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "**.ipynb_checkpoints", "jupyter_execute", "results/stored"]
html_theme = "furo"
html_title = "gdyn_jax"
html_static_path = []

# Notebooks and MyST code cells run at build time: a broken example fails the build.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 300
nb_execution_show_tb = True
nb_merge_streams = True

# API reference from the docstrings (Google style, maths in :math: roles).
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Every reference to a gdyn_jax name must resolve; names of other packages cannot be linked
# offline (no intersphinx inventories), so only those are exempt.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(jax|jaxlib|optax|flax|numpy|np|scipy|control|xarray|chex|matplotlib)(\..*)?"),
    (r"py:.*", r"(Any|Callable|Sequence|Mapping|Iterable|PyTree|ArrayLike|Array|Path|Carry)"),
    (r"py:.*", r"(collections|typing|pathlib|types|argparse|tfds|tensorflow_datasets)\..*"),
    (r"py:.*", r"(optional|callable|array|array-like|pytree|Module|dict|tuple|float|int)"),
    (r"py:exc", r"(ValueError|TypeError|KeyError|RuntimeError|OSError|UsageError)"),
    # aliases of gdyn_jax.sweep.train; flax.linen
    (r"py:class", r"(Metrics|Kernels|HParams|nn\..*)"),
    (r"py:.*", r"(importlib|functools|inspect|dataclasses|contextlib|os)(\..*)?"),
]

#: Public modules of the API reference, in the order of the reference's table of contents.
PUBLIC_MODULES = (
    "gdyn_jax.optimizers",
    "gdyn_jax.linearize",
    "gdyn_jax.data",
    "gdyn_jax.models",
    "gdyn_jax.sweep",
    "gdyn_jax.measurements",
    "gdyn_jax.predictions",
    "gdyn_jax.state_structure",
    "gdyn_jax.plotting",
    "gdyn_jax.files",
    "gdyn_jax.errors",
    "gdyn_jax.extras",
    "gdyn_jax.imports",
)

#: Old import paths of moved modules (a DeprecationWarning, gone in the next release).
DEPRECATED_MODULES = (
    "gdyn_jax.hessian",
    "gdyn_jax.modes",
    "gdyn_jax.noise_floor",
    "gdyn_jax.adversarial",
    "gdyn_jax.analysis",
    "gdyn_jax.linearize.structure",
    "gdyn_jax.optimizers.state",
)

#: Modules of the package that are not a library API: the command line.
COMMAND_LINE_MODULES = ("gdyn_jax.cli", "gdyn_jax.commands")

#: Modules of the implementation whose docstrings carry the maths and the proofs.
INTERNAL_MODULES = (
    "gdyn_jax.linearize.loop",
    "gdyn_jax.state_structure.interpret",
    "gdyn_jax.state_structure.roles",
    "gdyn_jax.state_structure.bookkeeping",
    "gdyn_jax.linearize.exactness",
    "gdyn_jax.linearize.freeze",
    "gdyn_jax.linearize.system",
    "gdyn_jax.linearize.timevarying",
    "gdyn_jax.linearize.grid",
    "gdyn_jax.linearize.robust",
    "gdyn_jax.linearize.iqc",
    "gdyn_jax.linearize.lmi",
    "gdyn_jax.linearize.rate_search",
    "gdyn_jax.sweep.assembly",
    "gdyn_jax.sweep.train",
    "gdyn_jax.sweep.checks",
    "gdyn_jax.sweep.grid",
    "gdyn_jax.sweep.data",
    "gdyn_jax.sweep.task_check",
    "gdyn_jax.sweep.groups",
    "gdyn_jax.sweep.outdir",
    "gdyn_jax.sweep.storage",
    "gdyn_jax.sweep.checkpoint",
)


def public_names(module) -> list[str]:
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


def _directive(module, name: str) -> str:
    value = getattr(module, name)
    if inspect.isclass(value):
        return f".. autoclass:: {module.__name__}.{name}\n   :members:\n"
    if callable(value):
        return f".. autofunction:: {module.__name__}.{name}\n"
    return f".. autodata:: {module.__name__}.{name}\n   :annotation:\n"


def documented_names(name: str) -> list[str]:
    """The names a module's page documents: all its public names."""
    return public_names(importlib.import_module(name))


def write_api_pages() -> None:
    """One reStructuredText page per public or internal module under ``api/_generated``."""
    out = DOCS / "api" / "_generated"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in PUBLIC_MODULES + INTERNAL_MODULES:
        module = importlib.import_module(name)
        title = f"``{name}``"
        body = [title, "=" * len(title), "", f".. automodule:: {name}", "", ""]
        body += [_directive(module, member) for member in documented_names(name)]
        (out / f"{name}.rst").write_text("\n".join(body))


def copy_notebooks() -> None:
    """The repository's notebooks into ``docs/notebooks`` (executed by myst-nb)."""
    out = DOCS / "notebooks"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        shutil.copy2(path, out / path.name)


def _settings_table(module) -> list[str]:
    import dataclasses

    modes = ("tiny", "quick", "full")
    values = {m: dataclasses.asdict(getattr(module.Settings, m)()) for m in modes}
    rows = ["| setting | tiny | quick | full |", "|---|---|---|---|"]
    for field in values["quick"]:
        cells = " | ".join(f"`{values[m][field]!r}`" for m in modes)
        rows.append(f"| `{field}` | {cells} |")
    return rows


def _stored_report(name: str) -> list[str]:
    """The stored quick-mode report without its title and source, figures linked in place."""
    folder = DOCS / "results" / "stored" / name
    lines = (folder / "report.md").read_text(encoding="utf-8").splitlines()
    lines = [line for line in lines[1:] if not line.startswith("Source: ")]
    image = re.compile(r"!\[([^\]]*)\]\(([^)/]+)\)")
    return [image.sub(rf"![\1](../stored/{name}/\2)", line) for line in lines]


def write_result_pages() -> None:
    """One page per experiment under ``results/_generated`` and the table of them all."""
    import experiments

    out = DOCS / "results" / "_generated"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    table = ["| experiment | reproduces | source |", "|---|---|---|"]
    for name in experiments.names():
        module = experiments.get(name)
        table.append(f"| [`{name}`](_generated/{name}.md) | {module.TITLE} | {module.SOURCE} |")
        page = [f"# `{name}`: {module.TITLE}", "", f"Source: {module.SOURCE}.", ""]
        page += [f"Run it with `gdyn reproduce {name} [--tiny | --quick | --full] --out DIR`.", ""]
        page += ["```{eval-rst}", f".. automodule:: experiments.{name}", "```", ""]
        page += ["## Settings", "", *_settings_table(module), ""]
        page += ["## Results (quick mode, stored)", "", *_stored_report(name), ""]
        (out / f"{name}.md").write_text("\n".join(page), encoding="utf-8")
    toctree = ["```{toctree}", ":hidden:", "", *(f"_generated/{n}" for n in experiments.names())]
    index = [RESULTS_INTRO, *table, "", *toctree, "```", ""]
    (DOCS / "results" / "index.md").write_text("\n".join(index), encoding="utf-8")


RESULTS_INTRO = """# Reproduced results

Each experiment is a module of `experiments/`, run by `gdyn reproduce NAME [--quick] --out DIR`
(see [Reproducing the papers](../guide/reproduce.md)); `gdyn reproduce all --quick` runs them
all. Each page below gives the experiment's claims and method (its docstring), its settings in
the three modes, and the report of a quick run stored with the documentation: every comparison
with a published or predicted number is scored by code against a declared tolerance, and the
figures are those the run drew. Full citations are on the [references](../references.md) page.
"""


def generate(app) -> None:
    """Write the generated folders before Sphinx reads the sources."""
    write_api_pages()
    copy_notebooks()
    write_result_pages()


def setup(app) -> None:
    app.connect("builder-inited", generate)
