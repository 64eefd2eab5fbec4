"""Store the quick-mode reports of a ``gdyn reproduce`` run for the documentation's result pages.

    gdyn reproduce all --quick --out runs/quick
    python docs/store_results.py runs/quick [NAME ...]

For each experiment (all of them, or the names given), ``RUN_DIR/NAME/report.md`` and its
figures are copied to ``docs/results/stored/NAME/`` with ``run.json`` (mode, settings,
seconds, agreement, library versions), replacing what was stored. Only quick-mode runs are
accepted: the pages say they show the quick mode, and ``tests/test_docs.py`` checks that every
stored run used the experiment's current ``Settings.quick()``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys

from gdyn_jax.sweep import results

ROOT = pathlib.Path(__file__).resolve().parents[1]
STORED = ROOT / "docs" / "results" / "stored"


def store(run_dir: pathlib.Path, name: str) -> pathlib.Path:
    """Copy one experiment's quick report and figures into ``docs/results/stored/NAME``."""
    source = run_dir / name
    summary = json.loads((source / "summary.json").read_text(encoding="utf-8"))
    if summary["mode"] != "quick":
        raise ValueError(f"{source}: expected a quick-mode run, got mode {summary['mode']!r}")
    target = STORED / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    shutil.copy2(source / "report.md", target / "report.md")
    for figure in summary["figures"]:
        shutil.copy2(source / figure, target / figure)
    record = {k: summary[k] for k in ("mode", "settings", "seconds", "agreement")}
    record["versions"] = results.versions()  # installed now, when the run is stored
    (target / "run.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return target


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    import experiments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=pathlib.Path, help="the --out of gdyn reproduce")
    parser.add_argument("names", nargs="*", help="experiments to store (default: all)")
    args = parser.parse_args(argv)
    names = args.names or experiments.names()
    missing = [n for n in names if not (args.run_dir / n / "summary.json").is_file()]
    if missing:
        parser.error(f"run_dir: no summary.json for {', '.join(missing)} in {args.run_dir}")
    for name in names:
        print(f"stored {store(args.run_dir, name).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
