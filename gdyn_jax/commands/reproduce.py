"""`gdyn reproduce NAME|all [--quick] --out DIR`: run the published-figure experiments.

Each experiment writes ``DIR/NAME/{report.md, summary.json, *.png}``; this command adds an
index ``DIR/index.md`` (and ``DIR/index.json``) that links every report with its wall time and
a summary of its agreement rows. A failing experiment is recorded in the index with its error
and makes the exit status 1, without losing the other experiments' results. The progress bar
counts the experiments' estimated work and moves with the sweeps inside each
(:mod:`gdyn_jax.commands.progress`).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
import traceback

import gdyn_jax
from gdyn_jax import extras, files
from gdyn_jax.commands import progress

HELP = "reproduce published figures (experiments) into --out DIR, with an index.md"
EXAMPLES = """\
examples:
  gdyn reproduce mnist1d --quick --out runs/quick       one experiment, minutes on a laptop CPU
  gdyn reproduce all --quick --out runs/quick           all of them (about 10 minutes on 2 cores)
  gdyn reproduce cohen2021 --out runs/full              the full setting, the paper's size

Each experiment writes DIR/NAME/report.md, summary.json and its figures; DIR/index.md links
them with their wall time and agreement. Running into the same DIR again keeps the rows of
the experiments not re-run. The experiments live in the repository's experiments/ folder
(run from a checkout); datasets are prepared in $GDYN_DATA_DIR, else $TFDS_DATA_DIR, else
~/tensorflow_datasets.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="an experiment name (see `gdyn list experiments`) or 'all'")
    parser.add_argument("--out", required=True, help="output folder (created)")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument(
        "--quick",
        action="store_true",
        help="the quick setting (minutes on a laptop CPU; default: the full, published size)",
    )
    speed.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (log lines only)"
    )


def _mode(args: argparse.Namespace) -> str:
    if getattr(args, "tiny", False):
        return "tiny"
    return "quick" if args.quick else "full"


def _selected(name: str) -> tuple[str, ...]:
    experiments = extras.experiments
    if name == "all":
        return experiments.names()
    experiments.get(name)  # raises ValueError naming `experiment` if unknown
    return (name,)


def agreement(out_dir: pathlib.Path) -> tuple[int, int]:
    """(agreeing rows, compared rows) of an experiment's run, from its ``summary.json``."""
    path = pathlib.Path(out_dir) / "summary.json"
    if not path.is_file():
        return 0, 0
    counts = json.loads(path.read_text(encoding="utf-8"))["agreement"]
    return counts["agree"], counts["compared"]


def _index_markdown(mode: str, rows: list[dict]) -> str:
    lines = [
        "# gdyn reproduce: index",
        "",
        f"Latest run's mode: `{mode}`. Each report sets measured numbers beside the published "
        "or predicted ones.",
        "",
        "| experiment | title | mode | status | wall time (s) | agreement | report |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if row["status"] == "ok":
            agree = f"{row['agree']}/{row['compared']} rows agree" if row["compared"] else "-"
            link = f"[{row['name']}/report.md]({row['name']}/report.md)"
        else:
            agree = "-"
            link = f"error: `{row['error']}`"
        lines.append(
            f"| {row['name']} | {row['title']} | {row.get('mode', mode)} | {row['status']} | "
            f"{row['seconds']:.1f} | "
            f"{agree} | {link} |"
        )
    total = sum(row["seconds"] for row in rows)
    failed = [row["name"] for row in rows if row["status"] != "ok"]
    lines += ["", f"Total wall time: {total:.1f} s."]
    if failed:
        lines.append(f"Failed: {', '.join(failed)} (see the error column).")
    return "\n".join(lines) + "\n"


def _previous_rows(out: pathlib.Path) -> list[dict]:
    """Rows of an earlier index in ``out`` (kept for experiments not re-run now)."""
    try:
        rows = json.loads((out / "index.json").read_text())["rows"]
        return [row for row in rows if isinstance(row, dict) and "name" in row]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _merged(previous: list[dict], rows: list[dict]) -> list[dict]:
    """Earlier rows overridden by this run's, in the registry's order."""
    experiments = extras.experiments
    by_name = {row["name"]: row for row in previous} | {row["name"]: row for row in rows}
    order = {name: i for i, name in enumerate(experiments.names())}
    return sorted(by_name.values(), key=lambda row: order.get(row["name"], len(order)))


def _run_one(name: str, out: pathlib.Path, mode: str) -> dict:
    experiments = extras.experiments
    start = time.perf_counter()
    row = {
        "name": name,
        "title": "",
        "mode": mode,
        "status": "ok",
        "error": None,
        "agree": 0,
        "compared": 0,
    }
    try:
        row["title"] = experiments.title(name)
        experiments.run(name, out / name, mode=mode)
        row["agree"], row["compared"] = agreement(out / name)
    except Exception as error:  # noqa: BLE001 - one failure must not lose the others
        row["status"] = "failed"
        message = " ".join(str(error).split()).replace("|", "/").replace("`", "'")
        row["error"] = f"{type(error).__name__}: {message}"[:300]
        (out / name).mkdir(parents=True, exist_ok=True)
        files.write_text(out / name / "error.txt", traceback.format_exc())
    row["seconds"] = time.perf_counter() - start
    return row


def run(args: argparse.Namespace) -> int:
    mode = _mode(args)
    names = _selected(args.name)
    out = files.output_directory(args.out, "out")
    previous = _previous_rows(out)
    rows: list[dict] = []
    bar = progress.ReproduceProgress(names, mode, previous, disable=args.no_progress)
    try:
        for name in names:
            bar.start(name)
            with gdyn_jax.sweep.observe(bar.sweep_event):  # the sweeps inside move the bar
                row = _run_one(name, out, mode)
            bar.finish(name)
            rows.append(row)
            status = "ok" if row["status"] == "ok" else f"FAILED ({row['error']})"
            bar.write(f"{name}: {status} in {row['seconds']:.1f} s")
            # Rewrite the index after every experiment so an interrupted run keeps what it
            # did; experiments of earlier runs into the same folder stay listed.
            merged = _merged(previous, rows)
            files.write_text(out / "index.md", _index_markdown(mode, merged))
            files.write_text(
                out / "index.json", json.dumps({"mode": mode, "rows": merged}, indent=2)
            )
    finally:
        bar.close()
    failed = [row["name"] for row in rows if row["status"] != "ok"]
    print(f"wrote {out / 'index.md'}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
