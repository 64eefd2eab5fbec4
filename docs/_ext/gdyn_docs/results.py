"""The reproduced-results pages: one per experiment, from its stored quick run.

Each page gives the experiment's docstring, its settings in the three modes and the stored
report (``docs/results/stored/NAME/``), with two changes for the site: a row that does not
agree has its reason beside its verdict (from ``docs/results/reasons.toml``), and each figure
is shown as wide as the page allows and links to its full-size image.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tomllib
from pathlib import Path

from PIL import Image

import experiments

RESULTS = Path(__file__).resolve().parents[2] / "results"
STORED = RESULTS / "stored"
REASONS = RESULTS / "reasons.toml"
COMPARISON_HEADER = "| quantity | measured | published / predicted | agrees |"
DISAGREES = "| **no** |"
IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)/]+)\)$")

INTRO = """# Reproduced results

Each experiment is a module of `experiments/`, run by `gdyn reproduce NAME [--quick] --out DIR`
(see [Reproducing the papers](../guide/reproduce.md)); `gdyn reproduce all --quick` runs them
all. Each page below gives the experiment's claims and method (its docstring), its settings in
the three modes, and the report of a quick run stored with the documentation: every comparison
with a published or predicted number is scored by code against a declared tolerance, a row that
does not agree gives its reason beside it, and the figures are those the run drew (click one to
see it full size). Full citations are on the [references](../references.md) page.
"""


def reasons() -> dict[str, dict[str, str]]:
    """``experiment -> {start of a row's quantity -> why it does not agree}``."""
    return tomllib.loads(REASONS.read_text(encoding="utf-8"))


def disagreeing_rows(name: str) -> list[str]:
    """The quantities of the stored report's rows that do not agree."""
    lines = (STORED / name / "report.md").read_text(encoding="utf-8").splitlines()
    return [line.split("|")[1].strip() for line in lines if line.endswith(DISAGREES)]


def reason(name: str, quantity: str, table: dict[str, dict[str, str]]) -> str | None:
    """The reason given for a row whose quantity starts with one of the experiment's keys."""
    found = [text for key, text in table.get(name, {}).items() if quantity.startswith(key)]
    return found[0] if len(found) == 1 else None


def settings_table(name: str) -> list[str]:
    modes = ("tiny", "quick", "full")
    values = {m: dataclasses.asdict(experiments.settings(name, m)) for m in modes}
    rows = ["| setting | tiny | quick | full |", "|---|---|---|---|"]
    for field in values["quick"]:
        cells = " | ".join(f"`{values[m][field]!r}`" for m in modes)
        rows.append(f"| `{field}` | {cells} |")
    return rows


def _figure(name: str, caption: str, filename: str) -> list[str]:
    width, _ = Image.open(STORED / name / filename).size
    return [
        f":::{{figure}} ../stored/{name}/{filename}",
        f":alt: {caption}",
        f":width: {width}px",
        ":figclass: gdyn-result-figure",
        "",
        caption,
        ":::",
    ]


def report(name: str, table: dict[str, dict[str, str]]) -> list[str]:
    """The stored report without its title, source and settings line (the page has them),
    with each disagreeing row's reason beside its verdict and each figure as a figure."""
    lines = (STORED / name / "report.md").read_text(encoding="utf-8").splitlines()[1:]
    drop = ("Source: ", "Settings (`quick`): ")
    lines = [line for line in lines if not line.startswith(drop)]
    out, skip_caption = [], None
    for line in lines:
        if skip_caption is not None and line == f"*{skip_caption}*":
            skip_caption = None
            continue
        image = IMAGE.match(line)
        if image:
            out += _figure(name, image.group(1), image.group(2))
            skip_caption = image.group(1)
        elif line.endswith(DISAGREES):
            why = reason(name, line.split("|")[1].strip(), table)
            out.append(line.removesuffix(" |") + (f": {why} |" if why else " |"))
        else:
            out.append(line)
    return out


def agreement(name: str) -> str:
    run = json.loads((STORED / name / "run.json").read_text(encoding="utf-8"))
    agree = run.get("agreement", {})
    return f"{agree['agree']} of {agree['compared']}" if agree.get("compared") else "not scored"


def page(name: str, table: dict[str, dict[str, str]]) -> str:
    module = experiments.get(name)
    lines = ["---", "hide-toc: true", "---", "", f"# {module.TITLE}", ""]
    lines += [f"Experiment `{name}`; source: {module.SOURCE}.", ""]
    lines += [f"Run it with `gdyn reproduce {name} [--tiny | --quick | --full] --out DIR`.", ""]
    lines += ["```{eval-rst}", f".. automodule:: experiments.{name}", "```", ""]
    lines += ["## Settings", "", *settings_table(name), ""]
    lines += ["## Results (quick mode, stored)", "", *report(name, table), ""]
    return "\n".join(lines)


def write(out: Path) -> None:
    """``out/_generated/NAME.md`` per experiment and ``out/index.md``, the table of them all."""
    generated = out / "_generated"
    shutil.rmtree(generated, ignore_errors=True)
    generated.mkdir(parents=True)
    table = reasons()
    rows = ["| experiment | reproduces | rows that agree | source |", "|---|---|---|---|"]
    for name in experiments.names():
        module = experiments.get(name)
        link = f"[`{name}`](_generated/{name}.md)"
        rows.append(f"| {link} | {module.TITLE} | {agreement(name)} | {module.SOURCE} |")
        (generated / f"{name}.md").write_text(page(name, table), encoding="utf-8")
    toctree = ["```{toctree}", ":hidden:", ""]
    toctree += [f"{name} <_generated/{name}>" for name in experiments.names()]
    index = [INTRO, *rows, "", *toctree, "```", ""]
    (out / "index.md").write_text("\n".join(index), encoding="utf-8")
