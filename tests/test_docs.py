"""The documentation builds offline with no warning, its links resolve, and it is complete.

The build (``sphinx-build -W``) executes every notebook and every code cell of the concept and
guide pages, so a renamed function, a broken docstring or an example that no longer runs fails
here. Checked on the built HTML: every relative link and anchor resolves, and every public name
of the API modules has an entry. Checked on the repository: no file cites a document that is
not in it.
"""

from __future__ import annotations

import html.parser
import importlib
import os
import pathlib
import re
import subprocess
import sys
import urllib.parse

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


class _Links(html.parser.HTMLParser):
    """Collects ``id``s and relative ``href``/``src`` targets of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            value = attrs.get(key)
            if value and not re.match(r"^[a-z][a-z0-9+.-]*:", value):  # no scheme: internal
                self.targets.append(value)


def _parse(path: pathlib.Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def site(tmp_path_factory, mnist1d_data_dir) -> pathlib.Path:
    out = tmp_path_factory.mktemp("docs_html")
    env = dict(os.environ, GDYN_NOTEBOOK_MODE="tiny", GDYN_DATA_DIR=str(mnist1d_data_dir))
    env.pop("MPLBACKEND", None)  # let the notebook kernel use its inline backend
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-E",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    warnings = [w for w in warnings if "IPKernelApp" not in w]  # the kernel's TCP notice
    assert proc.returncode == 0 and not warnings, "\n".join(warnings) or proc.stderr[-3000:]
    return out


def test_every_internal_link_resolves(site: pathlib.Path):
    pages = {path: _parse(path) for path in site.rglob("*.html")}
    broken = []
    for page, links in pages.items():
        for target in links.targets:
            parts = urllib.parse.urlsplit(target)
            dest = page if not parts.path else (page.parent / urllib.parse.unquote(parts.path))
            dest = dest.resolve()
            if dest.is_dir():
                dest = dest / "index.html"
            if not dest.exists():
                broken.append(f"{page.relative_to(site)} -> {target}")
            elif parts.fragment and dest.suffix == ".html":
                ids = pages[dest].ids if dest in pages else _parse(dest).ids
                if urllib.parse.unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(site)} -> {target} (no such anchor)")
    assert not broken, "\n".join(broken[:30])


def _conf():
    """``docs/conf.py`` as a module (importing it generates nothing: that waits for a build)."""
    sys.path.insert(0, str(DOCS))
    try:
        return importlib.import_module("conf")
    finally:
        sys.path.remove(str(DOCS))


def test_api_reference_lists_every_public_name(site: pathlib.Path):
    conf = _conf()
    missing = []
    for name in conf.PUBLIC_MODULES + conf.INTERNAL_MODULES:
        ids = _parse(site / "api" / "_generated" / f"{name}.html").ids
        missing += [f"{name}.{n}" for n in conf.documented_names(name) if f"{name}.{n}" not in ids]
    assert not missing, missing


def test_every_module_of_the_package_is_in_the_api_reference():
    """A new top-level module or package of ``gdyn_jax`` cannot be left out."""
    import pkgutil

    import gdyn_jax

    conf = _conf()
    listed = set(conf.PUBLIC_MODULES + conf.INTERNAL_MODULES + conf.COMMAND_LINE_MODULES) | set(
        conf.DEPRECATED_MODULES
    )
    top = [f"gdyn_jax.{m.name}" for m in pkgutil.iter_modules(gdyn_jax.__path__)]
    missing = [name for name in top if not name.split(".")[-1].startswith("_")]
    missing = [name for name in missing if name not in listed]
    assert not missing, f"add to PUBLIC_MODULES in docs/conf.py: {missing}"


def test_notebooks_are_rendered_with_outputs(site: pathlib.Path):
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = (site / "notebooks" / f"{path.stem}.html").read_text(encoding="utf-8")
        assert "cell_output" in page, path.name


def _tracked_text_files() -> list[pathlib.Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    suffixes = {".py", ".md", ".toml", ".ipynb", ".txt", ".cfg", ".yml", ".yaml", ".sh", ""}
    files = [ROOT / line for line in out.stdout.splitlines()]
    return [f for f in files if f.suffix in suffixes and f.is_file()]


def test_no_file_cites_a_document_outside_the_repository():
    outside = re.compile(r"\b(DESIGN|REFERENCES)\.md\b|\.\./shared\b|/work/shared")
    offenders = [
        str(path.relative_to(ROOT))
        for path in _tracked_text_files()
        if path != pathlib.Path(__file__) and outside.search(path.read_text(errors="ignore"))
    ]
    assert not offenders, offenders


def test_markdown_links_in_the_repository_resolve():
    link = re.compile(r"\]\(([^)\s]+)\)")
    broken = []
    for path in _tracked_text_files():
        if path.suffix != ".md":
            continue
        for target in link.findall(path.read_text(encoding="utf-8")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            file_part = urllib.parse.unquote(target.split("#", 1)[0])
            dest = (path.parent / file_part).resolve()
            candidates = [dest, dest.with_suffix(".md"), dest.with_suffix(".ipynb")]
            if not any(c.exists() for c in candidates):
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_every_code_block_of_the_docs_runs():
    """A page either executes its code cells at build time (MyST-NB) or has no code block: a
    snippet is never shown without being run (README sections come in through ``include``,
    and tests/test_readme.py runs them)."""
    fence = re.compile(r"^```(\S*)", re.M)
    shown = []
    for page in DOCS.rglob("*.md"):
        if "_build" in page.parts or "jupyter_execute" in page.parts:
            continue
        text = page.read_text(encoding="utf-8")
        if text.startswith("---\nfile_format: mystnb"):
            continue
        shown += [
            f"{page.relative_to(DOCS)}: {lang}"
            for lang in fence.findall(text)
            if lang and not lang.startswith("{")
        ]
    assert not shown, shown


def test_every_experiment_page_shows_a_stored_run_of_its_current_quick_settings():
    """The result pages show stored quick runs: one per experiment, of today's settings (a
    changed experiment is stored again with ``docs/store_results.py``)."""
    import dataclasses
    import json

    import experiments
    from experiments._harness import jsonable

    stale = []
    for name in experiments.names():
        folder = DOCS / "results" / "stored" / name
        if not (folder / "run.json").is_file():
            stale.append(f"{name}: not stored")
            continue
        run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        quick = jsonable(dataclasses.asdict(experiments.settings(name, "quick")))
        if run["mode"] != "quick" or run["settings"] != quick:
            stale.append(f"{name}: stored {run['mode']} run of {run['settings']}, now {quick}")
        figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (folder / "report.md").read_text())
        stale += [f"{name}: {f} missing" for f in figures if not (folder / f).is_file()]
    hint = "gdyn reproduce NAME --quick --out runs/q && python docs/store_results.py runs/q NAME"
    assert not stale, "\n".join([*stale, hint])
