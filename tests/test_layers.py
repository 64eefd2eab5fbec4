"""The package's layers, held from the source: who may import whom, where, and how large.

Every module of ``gdyn_jax`` is parsed with ``ast`` (nothing imported), and a second set of
tests imports each layer in a fresh interpreter and looks at ``sys.modules``. The layers, bottom
to top, and what each may import besides itself (docs/architecture.md draws them):

    foundation (errors, extras, files, imports, machine, _deprecated, state_structure): nothing
    optimizers: foundation           linearize: foundation, optimizers
    data, models: foundation         measurements: foundation, optimizers, data, models
    sweep: measurements and below, never linearize
    predictions: all of the above    plotting: everything below it
    cli, commands: everything

The allowlists below name what other branches of the layering work (issue 20) are still
removing; each check also fails on an entry that no longer offends, so the lists only shrink.
"""

from __future__ import annotations

import ast
import importlib
import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

from gdyn_jax import extras

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gdyn_jax"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60

#: The package's top-level modules and subpackages, by layer, bottom to top.
LAYERS: dict[str, tuple[str, ...]] = {
    "foundation": (
        "errors",
        "extras",
        "files",
        "imports",
        "machine",
        "_deprecated",
        "state_structure",
    ),
    "optimizers": ("optimizers",),
    "linearize": ("linearize",),
    "data": ("data",),
    "models": ("models",),
    "measurements": ("measurements",),
    "sweep": ("sweep",),
    "predictions": ("predictions",),
    "plotting": ("plotting",),
    "cli": ("cli", "commands"),
}
_BELOW_PLOTTING = set(LAYERS) - {"plotting", "cli"}
#: Layer -> the layers it may import (itself included).
ALLOWED: dict[str, set[str]] = {
    "foundation": {"foundation"},
    "optimizers": {"foundation", "optimizers"},
    "linearize": {"foundation", "optimizers", "linearize"},
    "data": {"foundation", "data"},
    "models": {"foundation", "models"},
    "measurements": {"foundation", "optimizers", "data", "models", "measurements"},
    "sweep": {"foundation", "optimizers", "data", "models", "measurements", "sweep"},
    "predictions": _BELOW_PLOTTING,
    "plotting": _BELOW_PLOTTING | {"plotting"},
    "cli": set(LAYERS),
}
#: Old paths of moved names (gdyn_jax._deprecated.forwarder): exempt as importers, and no
#: module of the package may import them.
FORWARDERS = ("hessian", "modes", "noise_floor", "adversarial", "analysis")

# Known offenders, each check's allowlist: empty, and an entry that stops offending fails too.
#: (b) ``path:function: module`` of every import statement inside a function.
IMPORTS_IN_FUNCTIONS_ALLOWED: set = set()
#: (c) modules over MAX_MODULE_LINES lines.
LONG_MODULES_ALLOWED: set = set()
#: (c) ``path:function`` of functions over MAX_FUNCTION_LINES lines.
LONG_FUNCTIONS_ALLOWED: set = set()
#: Import circles (strongly connected modules of the import graph), each as sorted names.
IMPORT_CIRCLES_ALLOWED: set = set()


def _modules() -> Iterator[tuple[str, pathlib.Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _rel(path: pathlib.Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The modules an import statement imports (``from a import b``: ``a.b`` if a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".")[: len(module.split(".")) - node.level + is_package]
        base = ".".join([*package, *([base] if base else [])])
    subs = [f"{base}.{alias.name}" for alias in node.names]
    return [sub if _is_module(sub) else base for sub in subs]


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _module_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported (not in functions or classes'
    methods, not under ``if TYPE_CHECKING:``)."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        elif not _is_type_checking(node):
            stack.extend(ast.iter_child_nodes(node))


def _lazy_references(tree: ast.Module) -> Iterator[tuple[ast.Attribute, str]]:
    """``gdyn_jax.X`` attribute accesses (the package's lazy subpackages) as ``gdyn_jax.X``."""
    aliases = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.split(".")[0] == "gdyn_jax"
        and (alias.asname is None or "." not in alias.name)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and _is_module(f"gdyn_jax.{node.attr}")
        ):
            yield node, f"gdyn_jax.{node.attr}"


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.AST]]:
    """Every function and method (nested ones too) with its qualified name."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(module: str) -> str | None:
    """The layer of a module of gdyn_jax; None for the package root and the forwarders."""
    top = _top(module)
    if top in ("", *FORWARDERS):
        return None
    for layer, names in LAYERS.items():
        if top in names:
            return layer
    raise AssertionError(f"{module}: its top-level name {top!r} is in no layer of LAYERS")


def _parsed() -> Iterator[tuple[str, pathlib.Path, ast.Module]]:
    for module, path in _modules():
        yield module, path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _import_graph(*, in_functions: bool) -> dict[str, set[str]]:
    """Module -> the modules of gdyn_jax it imports (at module level, or anywhere)."""
    graph: dict[str, set[str]] = {}
    for module, path, tree in _parsed():
        package = path.name == "__init__.py"
        nodes = ast.walk(tree) if in_functions else _module_level_imports(tree)
        imports = [n for n in nodes if isinstance(n, ast.Import | ast.ImportFrom)]
        graph[module] = {
            target
            for node in imports
            for target in _targets(node, module, package)
            if target.split(".")[0] == "gdyn_jax" and target != module
        }
    return graph


def import_circles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: set[tuple[str, ...]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.add(tuple(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def _checked(found: set, allowed: set, what: str) -> None:
    new, fixed = sorted(found - allowed), sorted(allowed - found)
    assert not new, f"{what}: {new}"
    assert not fixed, f"no longer offending, remove from the allowlist: {fixed}"


# --- (a) imports run downward ---------------------------------------------------------------


def test_every_module_is_in_a_layer():
    for module, _ in _modules():
        layer_of(module)  # raises for a top-level name LAYERS does not place


def test_imports_run_downward():
    """A module-level import, or a lazy ``gdyn_jax.X`` access anywhere, of a module of a layer
    the importer may not import (upward or sideways), or of a deprecated forwarder."""
    bad = []
    for module, path, tree in _parsed():
        layer = layer_of(module)
        if layer is None:
            continue
        package = path.name == "__init__.py"
        used = [
            (n.lineno, t) for n in _module_level_imports(tree) for t in _targets(n, module, package)
        ]
        used += [(node.lineno, target) for node, target in _lazy_references(tree)]
        for line, target in used:
            if target.split(".")[0] != "gdyn_jax":
                continue
            if _top(target) in FORWARDERS:
                bad.append(f"{_rel(path)}:{line} imports the deprecated {target}")
                continue
            theirs = layer_of(target)
            if theirs is not None and theirs not in ALLOWED[layer]:
                bad.append(f"{_rel(path)}:{line} ({layer}) imports {target} ({theirs})")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_extras_defers_no_module_of_the_package():
    """``gdyn_jax.extras`` (foundation) must not become a way round the layers."""
    assert not [m for m, _ in extras.MODULES.values() if m.split(".")[0] == "gdyn_jax"]


# --- (b) no import inside a function ---------------------------------------------------------


def test_no_import_inside_a_function():
    """Deferred imports go through a module-level ``__getattr__`` (``gdyn_jax``,
    ``gdyn_jax.extras``, ``gdyn_jax.commands``), never an import statement in a function."""
    found = set()
    for module, path, tree in _parsed():
        package = path.name == "__init__.py"
        for name, function in _functions(tree):
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    targets = _targets(node, module, package)
                    found |= {f"{_rel(path)}:{name}: {target}" for target in targets}
    _checked(found, IMPORTS_IN_FUNCTIONS_ALLOWED, "imports inside functions")


# --- (c) sizes a reader can hold --------------------------------------------------------------


def test_modules_are_short():
    found = {
        _rel(path)
        for _, path in _modules()
        if len(path.read_text(encoding="utf-8").splitlines()) > MAX_MODULE_LINES
    }
    _checked(found, LONG_MODULES_ALLOWED, f"modules over {MAX_MODULE_LINES} lines")


def test_functions_are_short():
    found = {
        f"{_rel(path)}:{name}"
        for _, path, tree in _parsed()
        for name, node in _functions(tree)
        if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    }
    _checked(found, LONG_FUNCTIONS_ALLOWED, f"functions over {MAX_FUNCTION_LINES} lines")


def test_no_import_circle():
    """No two modules import each other, directly or round a longer circle, counting the
    imports inside functions too."""
    _checked(import_circles(_import_graph(in_functions=True)), IMPORT_CIRCLES_ALLOWED, "circles")


def test_import_circles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert import_circles(graph) == {("a", "b", "c")}


# --- at run time: what importing a layer imports ------------------------------------------------


def _imported_after(statement: str) -> set[str]:
    """The modules of gdyn_jax in ``sys.modules`` after ``statement``, in a fresh interpreter."""
    code = f"import json, sys\n{statement}\n"
    code += "print(json.dumps(sorted(m for m in sys.modules if m.startswith('gdyn_jax'))))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_gdyn_jax_imports_no_subpackage():
    assert _imported_after("import gdyn_jax") == {"gdyn_jax"}


@pytest.mark.parametrize("layer", list(LAYERS))
def test_importing_a_layer_imports_nothing_it_may_not(layer):
    """Every module of the layer imported; no module of a layer it may not import follows."""
    mine = [m for m, _ in _modules() if layer_of(m) == layer]
    imported = _imported_after("\n".join(f"import {m}" for m in mine))
    bad = sorted(
        m for m in imported if m != "gdyn_jax" and (layer_of(m) or "") not in ALLOWED[layer]
    )
    assert not bad, f"importing {layer} imports {bad}"


def test_the_command_line_parser_imports_no_numerics():
    """``gdyn --help`` builds the parser of every command: numpy, jax and matplotlib wait."""
    code = (
        "import sys\nfrom gdyn_jax import cli\ncli.build_parser()\n"
        "heavy = ('numpy', 'jax', 'matplotlib', 'experiments')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["[]"]


def test_one_analysis_imports_only_what_it_uses():
    """``gdyn analyze``'s modules load jax and optax, not scipy.signal (its ``ss2tf`` is written
    with numpy.poly) nor scipy.linalg (deferred: loaded when a balancing or Lyapunov solve runs)."""
    code = (
        "import sys\nfrom gdyn_jax.commands import closed_loop\n"
        "heavy = ('scipy.signal', 'scipy.linalg', 'scipy.stats', 'matplotlib', 'flax')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["[]"]


# --- the deprecated forwarders -------------------------------------------------------------------

MOVED = {
    "gdyn_jax.hessian": {"gdyn_jax.measurements.hessian": ["hvp", "top_eigenvalue"]},
    "gdyn_jax.modes": {
        "gdyn_jax.measurements.modes": ["minimize", "kick_responses", "eigen_residuals"],
        "gdyn_jax.predictions.modes": ["REGIMES", "regime", "kick_test", "KickTest"],
    },
    "gdyn_jax.noise_floor": {
        "gdyn_jax.measurements.noise": ["projected_gradient_noise", "noise_ensemble"],
        "gdyn_jax.predictions.noise_floor": ["FloorTest", "floor_test"],
    },
    "gdyn_jax.adversarial": {"gdyn_jax.measurements.adversarial": ["fgsm", "fgsm_evaluate"]},
    "gdyn_jax.analysis": {
        "gdyn_jax.measurements.curves": ["Best", "best_setting", "tail_rate"],
        "gdyn_jax.predictions.spectral": ["quadratic_model_loss"],
    },
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_paths_forward_with_a_warning(old):
    module = importlib.import_module(old)
    for new, names in MOVED[old].items():
        target = importlib.import_module(new)
        for name in names:
            with pytest.warns(DeprecationWarning, match=f"{old}.{name} moved to {new}.{name}"):
                assert getattr(module, name) is getattr(target, name)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        module.nothing_here  # noqa: B018
