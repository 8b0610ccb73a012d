"""Render a palme-eval `report.html` (or `compare.html`) in headless Chromium to a PNG and say what it shows.

    .venv/bin/python benchmarks/report_screenshot.py outputs/eval/DATE/TIME [--out shot.png] [--height 1600]

Needs Debian's chromium (`apt-get install -y chromium`). Prints the PNG's path, the number of
pixels in the success-rate and outcome chart colours, and for each recorded video whether its
poster frame is visible in the screenshot (template-match score, 1.0 = identical).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agent.report import CHROMIUM, chromium_screenshot, screenshot_findings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="palme-eval output folder (or an HTML file)")
    ap.add_argument("--out", help="PNG path (default: <run>/report.png)")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=1600)
    ap.add_argument("--chromium", default=CHROMIUM)
    args = ap.parse_args()
    run = Path(args.run)
    page = run if run.is_file() else run / "report.html"
    run_dir = page.parent
    png = Path(args.out) if args.out else run_dir / f"{page.stem}.png"
    chromium_screenshot(page, png, (args.width, args.height), chromium=args.chromium)
    posters = []
    if (run_dir / "episodes.jsonl").is_file():
        for line in (run_dir / "episodes.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec.get("poster_path"):
                posters.append(rec["poster_path"])
    posters = posters[:12]  # the first videos are the ones at the top of the videos section
    found = screenshot_findings(png, run_dir, posters)
    print(f"screenshot: {png}")
    print(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
