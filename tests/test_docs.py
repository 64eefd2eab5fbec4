"""The documentation builds offline with no warning, its links resolve, and it is complete.

The build (``sphinx-build -W``) executes the notebooks not published from a stored run and every
code cell of the landing, concept and guide pages, in quick mode, so a renamed function, a broken
docstring or an example that no longer runs fails here. Checked on the built HTML: every relative
link and anchor resolves; no page loads anything from outside the site (the maths is typeset by
the MathJax the site carries) and nothing of the build machine shows (no absolute path, warning
or stray output); the concept pages draw their figures; the API reference groups every public
module by task, opens each page with a summary table, gives every constant its value and a
sentence and documents a parameter once; each result figure links to its full-size image and
each disagreeing row gives its reason. Checked on the repository: no file cites a document that
is not in it.
"""

from __future__ import annotations

import dataclasses
import html
import html.parser
import importlib
import json
import os
import pathlib
import pkgutil
import re
import subprocess
import sys
import urllib.parse

import pytest

import experiments
import gdyn_jax
from experiments._harness import jsonable

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
_PATH = list(sys.path)
sys.path[:0] = [str(DOCS), str(DOCS / "_ext")]
try:
    import conf  # docs/conf.py: importing it generates nothing, that waits for a build
    from gdyn_docs import results as result_pages
finally:
    sys.path[:] = _PATH


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
    env = dict(os.environ, GDYN_DATA_DIR=str(mnist1d_data_dir))  # conf.py sets the quick mode
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
    """``docs/conf.py`` as a module."""
    return conf


def _grouped(conf) -> list[str]:
    return [name for _, _, names in conf.API_GROUPS for name in names]


def test_every_public_module_is_in_one_group_of_the_api_reference():
    conf = _conf()
    grouped = _grouped(conf)
    twice = sorted({name for name in grouped if grouped.count(name) > 1})
    assert not twice, f"in more than one group of API_GROUPS in docs/conf.py: {twice}"
    ungrouped = [name for name in conf.PUBLIC_MODULES if name not in grouped]
    assert not ungrouped, f"add to a group of API_GROUPS in docs/conf.py: {ungrouped}"
    unknown = [name for name in grouped if name not in conf.PUBLIC_MODULES]
    assert not unknown, f"in API_GROUPS but not in PUBLIC_MODULES (docs/conf.py): {unknown}"


def test_api_reference_lists_every_public_name(site: pathlib.Path):
    conf = _conf()
    missing = []
    for name in _grouped(conf) + list(conf.INTERNAL_MODULES):
        ids = _parse(site / "api" / "_generated" / f"{name}.html").ids
        missing += [f"{name}.{n}" for n in conf.documented_names(name) if f"{name}.{n}" not in ids]
    assert not missing, missing


def test_every_module_of_the_package_is_in_the_api_reference():
    """A new top-level module or package of ``gdyn_jax`` cannot be left out."""
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


# ----------------------------------------------------------------- what a reader sees in the HTML


def _pages(site: pathlib.Path) -> dict[str, str]:
    return {
        str(path.relative_to(site)): path.read_text(encoding="utf-8")
        for path in sorted(site.rglob("*.html"))
        if "_static" not in path.parts
    }


def _text(fragment: str) -> str:
    """The text of an HTML fragment, tags removed and entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


EXTERNAL = re.compile(
    r"<(?:script|img|iframe)\b[^>]*\bsrc=[\"']((?:[a-z][a-z0-9+.-]*:)?//[^\"']*)"
    r"|<link\b[^>]*\bhref=[\"']((?:[a-z][a-z0-9+.-]*:)?//[^\"']*)",
    re.I,
)


def test_no_page_loads_anything_from_outside_the_site(site: pathlib.Path):
    """No script, style sheet, image or font from a CDN: the site works offline."""
    loads = [
        f"{page}: {a or b}"
        for page, text in _pages(site).items()
        for a, b in EXTERNAL.findall(text)
    ]
    for css in site.rglob("*.css"):
        loads += [f"{css.name}: {u}" for u in re.findall(r"url\(['\"]?(\w+:)?//", css.read_text())]
    assert not loads, "\n".join(loads[:20])


def test_maths_is_typeset_by_the_mathjax_the_site_carries(site: pathlib.Path):
    pages = _pages(site)
    with_maths = [page for page, text in pages.items() if 'class="math' in text]
    assert "concepts/closed_loop.html" in with_maths and len(with_maths) >= 5
    for page in with_maths:
        scripts = re.findall(r"<script\b[^>]*\bsrc=\"([^\"]*mathjax[^\"]*)\"", pages[page], re.I)
        assert scripts, f"{page}: maths but no MathJax script"
        for src in scripts:
            local = (site / page).parent / urllib.parse.urlsplit(src).path
            assert local.resolve().is_file(), f"{page}: {src} is not in the site"
    fonts = list((site / "_static" / "mathjax").rglob("*.woff"))
    assert fonts, "MathJax's fonts are not in the site"


def test_nothing_of_the_build_machine_shows(site: pathlib.Path):
    """No absolute path, warning, traceback or stray output (a bare value, a figure's repr) in
    any page; no cell writes to stderr."""
    leaks = re.compile(
        r"(/tmp/|/work/|/home/|/root/|/usr/|site-packages|[A-Z]:\\\\|Warning:|Traceback)"
    )
    stray = re.compile(r"^(<Figure size [^>]*>|-?\d+|None|True|False)$")
    a_repr = re.compile(r"<[^<>]+ at 0x[0-9a-f]+>")  # anywhere: e.g. a tuple of legends
    plain = re.compile(r'<div class="output text_plain[^"]*">(.*?)</div>\s*</div>', re.S)
    found = []
    for page, text in _pages(site).items():
        body = text.split('<div class="page">', 1)[-1]
        found += [f"{page}: {m.group(0)!r}" for m in leaks.finditer(_text(body))]
        found += [f"{page}: a cell writes to stderr" for _ in re.finditer("output stderr", body)]
        for block in plain.findall(body):
            if stray.match(_text(block).strip()) or a_repr.search(_text(block)):
                found.append(f"{page}: stray output {_text(block).strip()!r}")
    assert not found, "\n".join(found[:20])


def _cell_figures(text: str) -> int:
    outputs = re.findall(r'<div class="cell_output[^"]*">(.*?)\n</div>\n</div>', text, re.S)
    return sum(len(re.findall(r"<img\b", o)) for o in outputs) or len(
        re.findall(r'<img [^>]*src="[^"]*_images/[^"]*"', text)
    )


def test_landing_concept_and_getting_started_pages_draw_their_figures(site: pathlib.Path):
    pages = ["index.html", "getting_started.html", "guide/analyze.html", "guide/sweep.html"]
    pages += [f"concepts/{p.stem}.html" for p in (DOCS / "concepts").glob("*.md")]
    missing = [p for p in pages if not _cell_figures((site / p).read_text(encoding="utf-8"))]
    assert not missing, f"pages without a figure: {missing}"


def test_notebooks_show_their_quick_mode(site: pathlib.Path):
    """Published notebooks are quick runs; the edge-of-stability figure shows what its title
    says: the sharpness at each learning rate settles at the limit 2/a (within 15 %)."""
    text = _text((site / "notebooks" / "03_edge_of_stability.html").read_text(encoding="utf-8"))
    rows = re.findall(r"a = ([\d.]+): sharpness [\d.]+ at step 0, ([\d.]+) over the second", text)
    assert len(rows) == 2, text[-2000:]
    for lr, late in rows:
        assert float(late) == pytest.approx(2 / float(lr), rel=0.15), (lr, late)
    sweep = _text((site / "notebooks" / "02_sweep_and_plots.html").read_text(encoding="utf-8"))
    assert "step: 16" in sweep, "notebook 02 is not its quick run (1500 steps, every 100)"


def _entries(text: str) -> dict[str, tuple[str, str, bool]]:
    """``id -> (signature text, description text, has a literal block)`` of a page's entries."""
    found = {}
    pattern = r'<dt class="sig sig-object py" id="([^"]+)">(.*?)</dt>\s*<dd>(.*?)</dd>'
    for ident, signature, description in re.findall(pattern, text, re.S):
        found[ident] = (_text(signature), _text(description).strip(), "<pre>" in description)
    return found


def test_api_pages_have_summary_tables_and_constants_their_values(site: pathlib.Path):
    conf = _conf()
    problems = []
    for name in _grouped(conf) + list(conf.INTERNAL_MODULES):
        page = (site / "api" / "_generated" / f"{name}.html").read_text(encoding="utf-8")
        names = conf.documented_names(name)
        table = re.search(r'<table class="[^"]*gdyn-summary[^"]*">(.*?)</table>', page, re.S)
        if names and not table:
            problems.append(f"{name}: no summary table")
            continue
        rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.S) if table else []
        problems += [f"{name}: {len(rows)} summary rows for {len(names)} names"] * (
            len(rows) != len(names)
        )
        module = importlib.import_module(name)
        entries = _entries(page)
        for n in names:
            if callable(getattr(module, n)):
                continue
            signature, description, block = entries.get(f"{name}.{n}", ("", "", False))
            if " = " not in signature and not block:
                problems.append(f"{name}.{n}: value not shown")
            if len(description.split()) < 4 or "Built-in" in description:
                problems.append(f"{name}.{n}: no sentence ({description[:60]!r})")
    assert not problems, "\n".join(problems)


def test_api_index_groups_modules_by_task_with_summaries(site: pathlib.Path):
    conf = _conf()
    text = (site / "api" / "index.html").read_text(encoding="utf-8")
    for title, _, names in conf.API_GROUPS:
        section = text.split(f">{html.escape(title)}<", 1)
        assert len(section) == 2, f"no section {title!r}"
        for name in names:
            pattern = rf"<tr[^>]*>(?:(?!</tr>).)*{re.escape(name)}\.html.*?</tr>"
            row = re.search(pattern, section[1], re.S)
            assert row and len(_text(row.group(0)).split()) > 3, f"{name}: no one-line summary"


def test_parameters_are_documented_once(site: pathlib.Path):
    """No parameter list of bare names and types beside the attributes that describe them."""
    bare = []
    for page, text in _pages(site).items():
        if not page.startswith("api/"):
            continue
        for field in re.findall(r"<dt class=\"field-\w+\">Parameters.*?</dd>", text, re.S):
            items = re.findall(r"<li><p>(.*?)</p></li>", field, re.S) or [field]
            bare += [
                f"{page}: {_text(i)[:60]}"
                for i in items
                if re.fullmatch(r"\s*\w+\s*(\([^)]*\))?\s*", _text(i))
            ]
    assert not bare, "\n".join(bare[:20])


def test_every_disagreeing_row_gives_its_reason():
    results = result_pages
    table = results.reasons()
    problems, used = [], set()
    for folder in sorted((DOCS / "results" / "stored").iterdir()):
        for quantity in results.disagreeing_rows(folder.name):
            keys = [k for k in table.get(folder.name, {}) if quantity.startswith(k)]
            problems += [f"{folder.name}: {quantity!r} has {len(keys)} reasons"] * (len(keys) != 1)
            used.update((folder.name, k) for k in keys)
    unused = [(e, k) for e, keys in table.items() for k in keys if (e, k) not in used]
    reasons_file = "docs/results/reasons.toml"
    problems += [f"{reasons_file}: [{e}] {k!r} matches no disagreeing row" for e, k in unused]
    assert not problems, "\n".join(problems)


def test_result_pages_link_each_figure_to_its_full_size_and_show_reasons(site: pathlib.Path):
    problems = []
    for page in sorted((site / "results" / "_generated").glob("*.html")):
        text = page.read_text(encoding="utf-8")
        images = re.findall(r"<img\b[^>]*>", text)
        linked = re.findall(r'<a class="[^"]*image-reference[^"]*" href="([^"]+)"><img', text)
        if len(linked) != len(images) or not images:
            problems.append(f"{page.name}: {len(linked)} of {len(images)} figures linked")
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", text, re.S):
            cells = [_text(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            if len(cells) == 4 and cells[3].startswith("no") and len(cells[3].split()) < 5:
                problems.append(f"{page.name}: {cells[0][:50]!r} disagrees without a reason")
    assert not problems, "\n".join(problems)
