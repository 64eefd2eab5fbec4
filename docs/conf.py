"""Sphinx configuration of the gdyn_jax documentation.

Build (offline, warnings are errors), from the repository root:
``sphinx-build -W --keep-going -b html docs docs/_build/html``.

This file holds the settings and the lists a developer edits (the API reference's modules and
groups, the notebooks published from a stored run); the local extension ``docs/_ext/gdyn_docs``
does the work. When a build starts (Sphinx's ``builder-inited`` event) it writes generated
folders, all ignored by git:

- ``api/_generated/``: one page per module, with a summary table and every name of its
  ``__all__`` (so the API reference can never miss a public function), and ``api/index.md``,
  the modules grouped by task;
- ``notebooks/``: the repository's ``notebooks/*.ipynb`` as published: executed at build time
  in their quick mode, or, for those in ``STORED_NOTEBOOKS`` (too slow to run in every build),
  the quick run stored in ``stored_notebooks/`` by ``python docs/store_notebooks.py``;
- ``results/_generated/``: one page per experiment (found by ``experiments.names()``): its
  docstring, its settings in each mode, and the report and figures of its last stored quick
  run (``results/stored/NAME/``, written by ``python docs/store_results.py RUN_DIR``), and
  ``results/index.md``, the table of them all.
"""

from __future__ import annotations

import os
import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]

from gdyn_docs import api, notebooks, results  # noqa: E402  (after the path above)

project = "gdyn_jax"
author = "the gdyn_jax developers"
copyright = "2026, the gdyn_jax developers"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 served from the built site, never from a CDN
    "gdyn_docs",
]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = [
    "_build",
    "**.ipynb_checkpoints",
    "jupyter_execute",
    "results/stored",
    "stored_notebooks",
    "_ext",
]
html_theme = "furo"
html_title = "gdyn_jax"
html_static_path = ["_static"]
html_css_files = ["gdyn.css"]
html_theme_options = {"navigation_with_keys": True}

# Notebooks and MyST code cells run at build time: a broken example fails the build.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 300
nb_execution_show_tb = True
nb_merge_streams = True

# API reference from the docstrings (Google style, maths in :math: roles). Types go into the
# description of the parameters a docstring documents; a dataclass's fields are documented once,
# as its attributes, never again as an untyped parameter list.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
python_use_unqualified_type_names = True
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

#: Public modules of the API reference.
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
    "gdyn_jax.machine",
)

#: The API reference's index, by task: (title, what its modules are for, modules in order). A
#: module joins a group by one line here; each of PUBLIC_MODULES is in exactly one group.
API_GROUPS = (
    (
        "Analyse a rule",
        "The update rules, and their exact analysis as a closed loop on quadratics.",
        ("gdyn_jax.optimizers", "gdyn_jax.linearize", "gdyn_jax.state_structure"),
    ),
    (
        "Predict",
        "A rule's analysis joined to a network's measurements.",
        ("gdyn_jax.predictions",),
    ),
    (
        "Measure",
        "A real network: curvature, sharpness, modes, gradient noise, adversarial probes, curves.",
        ("gdyn_jax.measurements",),
    ),
    (
        "Sweep and plot",
        "Many networks trained at once over a hyperparameter grid, and their figures.",
        ("gdyn_jax.sweep", "gdyn_jax.plotting"),
    ),
    (
        "Data and models",
        "Datasets prepared offline, and the Flax models the sweeps train.",
        ("gdyn_jax.data", "gdyn_jax.models"),
    ),
    (
        "Utilities",
        "Files written atomically, the package's errors, optional extras, import paths, the "
        "machine's memory.",
        (
            "gdyn_jax.files",
            "gdyn_jax.errors",
            "gdyn_jax.extras",
            "gdyn_jax.imports",
            "gdyn_jax.machine",
        ),
    ),
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
    "gdyn_jax.linearize.outcome",
    "gdyn_jax.linearize.limit",
    "gdyn_jax.linearize.lifting",
    "gdyn_jax.linearize.infeasibility",
    "gdyn_jax.linearize.bracket",
    "gdyn_jax.linearize.pep",
    "gdyn_jax.measurements.ntk",
    "gdyn_jax.predictions.ntk_loop",
    "gdyn_jax.predictions.ntk_predict",
    "gdyn_jax.predictions.ntk_adam",
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

#: Notebooks published from a stored quick run (``docs/store_notebooks.py``) rather than
#: executed in every build: their quick mode trains networks for minutes. The others execute.
STORED_NOTEBOOKS = ("02_sweep_and_plots", "03_edge_of_stability")


def documented_names(name: str) -> list[str]:
    """The names a module's page documents: all its public names."""
    return api.documented_names(name)


def generate(app) -> None:
    """Write the generated folders before Sphinx reads the sources."""
    api.write(DOCS / "api", API_GROUPS, INTERNAL_MODULES, DEPRECATED_MODULES)
    notebooks.publish(ROOT / "notebooks", DOCS / "notebooks", STORED_NOTEBOOKS)
    results.write(DOCS / "results")


def setup(app) -> None:
    # The kernels that execute pages inherit this environment: every page that runs code
    # (notebooks, landing, concept and guide pages) runs in the quick mode the notebooks name as
    # their default (only the test suite runs them in tiny mode), with this checkout importable.
    os.environ["GDYN_NOTEBOOK_MODE"] = "quick"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    # One persistent XLA compilation cache for all the build's kernels, beside its doctrees:
    # the pages compile the same programs (linearize, the guide's sweeps), and a program read
    # from the cache is the one compiled, so the numbers are the same.
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(pathlib.Path(app.doctreedir) / "jax_cache")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    app.connect("builder-inited", generate)
