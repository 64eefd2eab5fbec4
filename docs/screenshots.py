"""Screenshots of the built site in headless Chromium, to look at it as a reader does.

    sphinx-build -b html docs docs/_build/html
    python docs/screenshots.py [--site docs/_build/html] [--out docs/_screenshots] [PAGE ...]

Takes a PNG of each page (default: the landing page, a concept page, the API index and one
result page) at a desktop window size, after MathJax has typeset the maths, into ``--out``
(ignored by git). Needs Debian's ``chromium`` (``apt-get install -y chromium``); a developer runs
it by hand after changing the look of the site, not CI.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = (
    "index.html",
    "concepts/closed_loop.html",
    "api/index.html",
    "results/_generated/wu2021.html",
)


def screenshot(browser: str, page: pathlib.Path, out: pathlib.Path, size: str) -> None:
    """One PNG of ``page`` (a file of the built site) at window ``size`` ('WIDTH,HEIGHT')."""
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=10000",  # lets MathJax typeset before the picture
        f"--window-size={size}",
        f"--screenshot={out}",
        page.resolve().as_uri(),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", default=PAGES, help="pages, relative to --site")
    parser.add_argument("--site", type=pathlib.Path, default=ROOT / "docs" / "_build" / "html")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "_screenshots")
    parser.add_argument("--size", default="1440,2400", help="window WIDTH,HEIGHT in pixels")
    args = parser.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        parser.error("chromium not found: apt-get install -y chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.pages:
        page = args.site / name
        if not page.is_file():
            parser.error(f"pages: {page} does not exist; build the site first")
        target = args.out / (name.removesuffix(".html").replace("/", "_") + ".png")
        screenshot(browser, page, target, args.size)
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
