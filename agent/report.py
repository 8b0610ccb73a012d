"""Self-contained HTML reports with inline SVG charts (no scripts, no network): one run, or runs side by side.

`render_report(info, episodes)` makes a run's `report.html`: a success-rate chart per task and
split with Wilson 95% intervals, a failure-breakdown chart, a metrics table, the recorded videos
(`<video>` tags with paths relative to the run folder) and the tracebacks of episodes that raised.
`compare_markdown` / `render_compare` put several runs' `eval_info.json` side by side.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.eval_metrics import FAILURE_KINDS

SERIES_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#9d755d", "#eeca3b")
KIND_COLOURS = {
    "success": "#54a24b",
    "parse_error": "#e45756",
    "invalid_reference": "#f58518",
    "precondition": "#eeca3b",
    "skill_failure": "#4c78a8",
    "premature_done": "#ff9da6",
    "step_budget": "#b279a2",
    "physics": "#9d755d",
    "consecutive_failures": "#72b7b2",
    "exception": "#222222",
}
OTHER_COLOUR = "#bab0ac"
VIDEO_WIDTH = 220  # CSS px of the report's <video> tags
FONT = "font-family='DejaVu Sans, Arial, sans-serif'"
CSS = """
body{font-family:'DejaVu Sans',Arial,sans-serif;margin:24px;color:#222;max-width:1150px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left} .meta{color:#555;font-size:13px}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:6px 10px;margin:8px 0}
.vids{display:flex;flex-wrap:wrap;gap:10px} figure{margin:0;font-size:12px;text-align:center;width:220px}
video{background:#000;display:block} pre{font-size:11px;background:#f7f7f7;padding:6px;overflow-x:auto}
.ok{color:#2a7a2a} .bad{color:#b22}
"""


@dataclass
class Series:
    """One bar series of a grouped chart: a value (percent) and interval per category, or None where missing."""

    name: str
    values: list[float | None]
    intervals: list[tuple[float, float] | None]
    notes: list[str]  # hover text per category


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def grouped_bar_svg(title: str, categories: Sequence[str], series: Sequence[Series], width: int = 1000) -> str:
    """Grouped vertical bars on a 0-100 axis with interval whiskers and a legend, as an inline <svg>."""
    left, right, top = 48, 12, 52
    band = (width - left - right) / max(1, len(categories))
    longest = max((len(c) for c in categories), default=0)
    tilt = longest * 6.5 > band  # long names: write them at an angle so neighbours do not overlap
    bottom = 30 + (round(longest * 4.6) if tilt else 10)
    height = top + 230 + bottom
    plot_h = height - top - bottom
    bar = min(36.0, band * 0.8 / max(1, len(series)))

    def y(v: float) -> float:
        return top + plot_h * (1 - v / 100)

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' {FONT} font-size='11'>",
           f"<text x='{left}' y='18' font-size='14' font-weight='bold'>{_esc(title)}</text>"]
    for tick in (0, 25, 50, 75, 100):
        out.append(f"<line x1='{left}' x2='{width - right}' y1='{y(tick):.1f}' y2='{y(tick):.1f}' stroke='#ddd'/>"
                   f"<text x='{left - 6}' y='{y(tick) + 4:.1f}' text-anchor='end'>{tick}%</text>")
    for i, cat in enumerate(categories):
        cx = left + band * (i + 0.5)
        ly = height - bottom + 16
        anchor = f"text-anchor='end' transform='rotate(-40 {cx:.1f} {ly})'" if tilt else "text-anchor='middle'"
        out.append(f"<text x='{cx:.1f}' y='{ly}' {anchor}>{_esc(cat)}</text>")
        x0 = cx - bar * len(series) / 2
        for j, s in enumerate(series):
            out.append(_bar(s, i, x0 + j * bar, bar, y, SERIES_COLOURS[j % len(SERIES_COLOURS)]))
    out.append(_legend([s.name for s in series], list(SERIES_COLOURS), left, 36))
    out.append("</svg>")
    return "".join(out)


def _bar(s: Series, i: int, x: float, w: float, y, colour: str) -> str:
    """One bar with its whisker and value label (a 'n/a' tick when the value is missing)."""
    v = s.values[i]
    if v is None:
        return f"<text x='{x + w / 2:.1f}' y='{y(0) - 3:.1f}' text-anchor='middle' fill='#999'>n/a</text>"
    parts = [(f"<rect x='{x + 1:.1f}' y='{y(v):.1f}' width='{w - 2:.1f}' height='{y(0) - y(v):.1f}' fill='{colour}'>"
              f"<title>{_esc(s.notes[i])}</title></rect>")]
    label_y = y(v) - 4
    if s.intervals[i] is not None:
        lo, hi = s.intervals[i]
        mx = x + w / 2
        parts.append(f"<path d='M{mx:.1f},{y(lo):.1f}V{y(hi):.1f}M{mx - 4:.1f},{y(lo):.1f}H{mx + 4:.1f}"
                     f"M{mx - 4:.1f},{y(hi):.1f}H{mx + 4:.1f}' stroke='#222' stroke-width='1.2' fill='none'/>")
        label_y = y(hi) - 4
    parts.append(f"<text x='{x + w / 2:.1f}' y='{label_y:.1f}' text-anchor='middle' font-size='10'>{v:.0f}</text>")
    return "".join(parts)


def _legend(names: Sequence[str], colours: Sequence[str], x: float, y: float) -> str:
    parts, cx = [], x
    for name, colour in zip(names, colours, strict=False):
        parts.append(f"<rect x='{cx:.0f}' y='{y - 9}' width='11' height='11' fill='{colour}'/>"
                     f"<text x='{cx + 15:.0f}' y='{y}'>{_esc(name)}</text>")
        cx += 26 + 7 * len(name)
    return "".join(parts)


def stacked_bar_svg(title: str, rows: Sequence[str], counts: Sequence[dict[str, int]], width: int = 1000) -> str:
    """Horizontal 100%-stacked bars: how each row's episodes ended (success or a failure kind)."""
    kinds = [k for k in ("success", *FAILURE_KINDS) if any(c.get(k) for c in counts)]
    kinds += sorted({k for c in counts for k in c if c[k] and k not in kinds})
    colours = [KIND_COLOURS.get(k, OTHER_COLOUR) for k in kinds]
    left, right, top, row_h = max(130, 12 + round(6.5 * max((len(r) for r in rows), default=0))), 20, 52, 24
    height = top + row_h * len(rows) + 12
    plot_w = width - left - right
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' {FONT} font-size='11'>",
           f"<text x='{left}' y='18' font-size='14' font-weight='bold'>{_esc(title)}</text>",
           _legend(kinds, colours, left, 36)]
    for r, (name, c) in enumerate(zip(rows, counts, strict=True)):
        total = sum(c.values())
        y0 = top + r * row_h
        out.append(f"<text x='{left - 6}' y='{y0 + 15}' text-anchor='end'>{_esc(name)}</text>")
        x = float(left)
        for kind, colour in zip(kinds, colours, strict=True):
            n = c.get(kind, 0)
            if not n or not total:
                continue
            w = plot_w * n / total
            out.append(f"<rect x='{x:.1f}' y='{y0 + 3}' width='{w:.1f}' height='{row_h - 6}' fill='{colour}'>"
                       f"<title>{_esc(name)}: {_esc(kind)} {n}/{total}</title></rect>")
            if w > 22:
                out.append(f"<text x='{x + w / 2:.1f}' y='{y0 + 15}' text-anchor='middle' fill='#fff'>{n}</text>")
            x += w
    out.append("</svg>")
    return "".join(out)


# ---- one run -----------------------------------------------------------------------------------
def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec)


def _outcomes(entry: dict[str, Any]) -> dict[str, int]:
    return {"success": entry["n_successes"], **entry["failures"]}


def success_chart(info: dict[str, Any]) -> str:
    """Success rate per task (categories) and split (series) with Wilson 95% intervals."""
    tasks = list(dict.fromkeys(t["task_id"] for t in info["per_task"]))
    splits = list(dict.fromkeys(t["task_group"] for t in info["per_task"]))
    index = {(t["task_group"], t["task_id"]): t for t in info["per_task"]}
    series = []
    for split in splits:
        entries = [index.get((split, task)) for task in tasks]
        series.append(Series(
            name=split,
            values=[e["pc_success"] if e else None for e in entries],
            intervals=[tuple(e["ci95"]) if e else None for e in entries],
            notes=[f"{split} {task}: {e['pc_success']:.1f}% [{e['ci95'][0]:.1f}, {e['ci95'][1]:.1f}] "
                   f"(n={e['n_episodes']})" if e else "" for task, e in zip(tasks, entries, strict=True)],
        ))
    return grouped_bar_svg("Success rate per task and split (bars: Wilson 95% interval)", tasks, series)


def failure_chart(info: dict[str, Any]) -> str:
    """How episodes ended, per split and task."""
    rows = [f"{t['task_group']} {t['task_id']}" for t in info["per_task"]]
    return stacked_bar_svg("Outcome of every episode (success or failure kind)", rows,
                           [_outcomes(t) for t in info["per_task"]])


def metrics_table(info: dict[str, Any]) -> str:
    """Per split and task: success with interval, plan lengths, parse errors, replans, failures."""
    head = ("<tr><th class='l'>split</th><th class='l'>task</th><th>n</th><th>success %</th><th>95% CI</th>"
            "<th>plan len</th><th>oracle len</th><th>parse err/call</th><th>replans/ep</th>"
            "<th class='l'>failures</th></tr>")
    rows = [_table_row(t["task_group"], t["task_id"], t) for t in info["per_task"]]
    rows += [_table_row(g, "all", e, bold=True) for g, e in info["per_group"].items()]
    rows.append(_table_row("all", "all", info["overall"], bold=True))
    return f"<table>{head}{''.join(rows)}</table>"


def _table_row(split: str, task: str, e: dict[str, Any], bold: bool = False) -> str:
    fails = ", ".join(f"{k} {v}" for k, v in e["failures"].items() if v) or "none"
    cells = [f"<td class='l'>{_esc(split)}</td><td class='l'>{_esc(task)}</td>", f"<td>{e['n_episodes']}</td>",
             f"<td>{_fmt(e['pc_success'])}</td>", f"<td>{e['ci95'][0]:.1f}–{e['ci95'][1]:.1f}</td>",
             f"<td>{_fmt(e['mean_plan_length'], '.2f')}</td><td>{_fmt(e['mean_oracle_plan_length'], '.2f')}</td>",
             f"<td>{_fmt(e['parse_error_rate'], '.3f')}</td><td>{_fmt(e['replans_per_episode'], '.2f')}</td>",
             f"<td class='l'>{_esc(fails)}</td>"]
    style = " style='font-weight:bold;background:#fafafa'" if bold else ""
    return f"<tr{style}>{''.join(cells)}</tr>"


def videos_section(episodes: Sequence[dict[str, Any]]) -> str:
    """The recorded episodes as <video> tags, one row per split (relative paths; a poster frame where saved)."""
    recorded = sorted((e for e in episodes if e.get("video_path")), key=lambda e: (e["split"], e["task"], e["episode"]))
    if not recorded:
        return "<p class='meta'>No videos were recorded (videos_per_task=0).</p>"
    rows: dict[str, list[str]] = {}
    for e in recorded:
        poster = f" poster='{_esc(e['poster_path'])}'" if e.get("poster_path") else ""
        verdict = "<span class='ok'>success</span>" if e["success"] else f"<span class='bad'>{_esc(e['failure'])}</span>"
        rows.setdefault(e["split"], []).append(
            f"<figure><video src='{_esc(e['video_path'])}'{poster} width='{VIDEO_WIDTH}' controls muted loop "
            f"playsinline preload='metadata'></video><figcaption><b>{_esc(e['task'])}</b> ep {e['episode']} · "
            f"seed {e['seed']} · {verdict}</figcaption></figure>")
    return "".join(f"<h3>{_esc(split)}</h3><div class='vids'>{''.join(v)}</div>" for split, v in rows.items())


def exceptions_section(episodes: Sequence[dict[str, Any]]) -> str:
    """Tracebacks of episodes that raised (each counted as a failure of kind `exception`)."""
    raised = [e for e in episodes if e.get("traceback")]
    if not raised:
        return "<p class='meta'>No episode raised an exception.</p>"
    return "".join(
        f"<details><summary>{_esc(e['split'])} {_esc(e['task'])} ep {e['episode']} (seed {e['seed']}): "
        f"{_esc(e.get('reason') or '')}</summary><pre>{_esc(e['traceback'])}</pre></details>"
        for e in raised
    )


def render_report(info: dict[str, Any], episodes: Sequence[dict[str, Any]], title: str = "Evaluation report") -> str:
    """The whole `report.html` of one run."""
    cfg, ov = info.get("config", {}), info["overall"]
    banner = ""
    if info.get("interrupted") or ov["n_episodes"] < info.get("n_planned", ov["n_episodes"]):
        banner = (f"<div class='banner'>Partial report: {ov['n_episodes']} of {info.get('n_planned')} planned "
                  f"episodes finished{' (interrupted)' if info.get('interrupted') else ' so far'}.</div>")
    meta = " · ".join(f"{_esc(k)}: {_esc(v)}" for k, v in cfg.items()
                      if k in _META_KEYS and not (k in _META_IF_SET and v is None))
    head = (f"<h1>{_esc(title)}</h1><p class='meta'>{meta}</p>{banner}"
            f"<p>Overall success <b>{_fmt(ov['pc_success'])}%</b> (95% CI {ov['ci95'][0]:.1f}–{ov['ci95'][1]:.1f}) "
            f"over {ov['n_episodes']} episodes; wall time {ov['eval_s']:.1f} s ({ov['eval_ep_s']:.2f} s/episode).</p>")
    body = [head]
    if info["per_task"]:
        body += ["<h2>Success rate</h2>", success_chart(info), "<h2>Failure breakdown</h2>", failure_chart(info)]
    body += ["<h2>Metrics</h2>", metrics_table(info), "<h2>Videos</h2>", videos_section(episodes),
             "<h2>Exceptions</h2>", exceptions_section(episodes)]
    return _page(title, "".join(body))


_META_KEYS = ("planner", "checkpoint", "env", "block_set", "splits", "tasks", "episodes", "workers", "world_size",
              "seed_offset")
_META_IF_SET = ("block_set",)  # shown only when given (null: the split decides, as in every run before the key)


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


# ---- several runs side by side -----------------------------------------------------------------
def run_label(info: dict[str, Any], fallback: str) -> str:
    """A short name for a run: its label, else planner (+ checkpoint folder name), else the folder name."""
    cfg = info.get("config", {})
    if cfg.get("label"):
        return str(cfg["label"])
    if cfg.get("planner"):
        ckpt = cfg.get("checkpoint")
        return f"{cfg['planner']}:{Path(ckpt).name}" if ckpt else str(cfg["planner"])
    return fallback


def _compare_rows(infos: Sequence[dict[str, Any]]) -> list[tuple[str, str, list[dict[str, Any] | None]]]:
    """(split, task, entry per run) for every split/task any run has, then per split 'all', then overall."""
    keys = list(dict.fromkeys((t["task_group"], t["task_id"]) for info in infos for t in info["per_task"]))
    index = [{(t["task_group"], t["task_id"]): t for t in info["per_task"]} for info in infos]
    rows = [(s, t, [ix.get((s, t)) for ix in index]) for s, t in keys]
    groups = list(dict.fromkeys(g for info in infos for g in info["per_group"]))
    rows += [(g, "all", [info["per_group"].get(g) for info in infos]) for g in groups]
    rows.append(("all", "all", [info["overall"] for info in infos]))
    return rows


def _cell(e: dict[str, Any] | None) -> str:
    if e is None or e["pc_success"] is None:
        return "–"
    return f"{e['pc_success']:.1f} [{e['ci95'][0]:.1f}, {e['ci95'][1]:.1f}] (n={e['n_episodes']})"


def compare_markdown(infos: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    """Success % [Wilson 95% CI] (n) per split and task, one column per run, plus an overall metrics table."""
    lines = ["| split | task | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    lines += [f"| {s} | {t} | " + " | ".join(_cell(e) for e in es) + " |" for s, t, es in _compare_rows(infos)]
    lines += ["", "| run | success % | 95% CI | episodes | plan len | oracle len | parse err/call | replans/ep | eval s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for label, info in zip(labels, infos, strict=True):
        o = info["overall"]
        lines.append(f"| {label} | {_fmt(o['pc_success'])} | {o['ci95'][0]:.1f}–{o['ci95'][1]:.1f} | {o['n_episodes']} | "
                     f"{_fmt(o['mean_plan_length'], '.2f')} | {_fmt(o['mean_oracle_plan_length'], '.2f')} | "
                     f"{_fmt(o['parse_error_rate'], '.3f')} | {_fmt(o['replans_per_episode'], '.2f')} | "
                     f"{o['eval_s']:.1f} |")
    return "\n".join(lines) + "\n"


def render_compare(infos: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    """`compare.html`: per split, a success chart with one bar series per run; outcomes per run; the tables."""
    rows = _compare_rows(infos)
    charts = []
    for split in dict.fromkeys(s for s, _, _ in rows):
        mine = [(t, es) for s, t, es in rows if s == split]
        series = [
            Series(name=label,
                   values=[es[j]["pc_success"] if es[j] else None for _, es in mine],
                   intervals=[tuple(es[j]["ci95"]) if es[j] else None for _, es in mine],
                   notes=[f"{label} {split} {t}: {_cell(es[j])}" for t, es in mine])
            for j, label in enumerate(labels)
        ]
        title = "Overall" if split == "all" else f"Split {split}"
        charts.append(grouped_bar_svg(f"{title} (bars: Wilson 95% interval)", [t for t, _ in mine], series, width=560))
    outcome = stacked_bar_svg("Outcome of every episode, per run", list(labels),
                              [_outcomes(info["overall"]) for info in infos])
    body = ("<h1>Runs side by side</h1><p class='meta'>" + " · ".join(_esc(x) for x in labels) + "</p>"
            + "<h2>Success rate</h2><div class='vids'>" + "".join(charts) + "</div><h2>Outcomes</h2>" + outcome
            + "<h2>Tables</h2>" + _markdown_to_tables(compare_markdown(infos, labels)))
    return _page("Runs side by side", body)


def _markdown_to_tables(md: str) -> str:
    """The pipe tables of `compare_markdown` as HTML tables."""
    out, rows = [], []
    for line in [*md.splitlines(), ""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                rows.append([c.strip() for c in line.strip("|").split("|")])
            continue
        if rows:
            head = "".join(f"<th class='l'>{_esc(c)}</th>" for c in rows[0])
            body = "".join("<tr>" + "".join(f"<td class='l'>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
            out.append(f"<table><tr>{head}</tr>{body}</table><br>")
            rows = []
    return "".join(out)


# ---- looking at a report -----------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--mute-audio")


def chromium_screenshot(html_path: str | Path, png_path: str | Path, size: tuple[int, int] = (1200, 1600),
                        chromium: str = CHROMIUM, timeout_s: float = 120.0) -> Path:
    """Render an HTML file in headless Chromium to a PNG (a fresh, empty profile each time)."""
    import subprocess
    import tempfile

    html_path, png_path = Path(html_path).resolve(), Path(png_path).resolve()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png_path}",
               f"--window-size={size[0]},{size[1]}", html_path.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if not png_path.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return png_path



def screenshot_findings(png_path: str | Path, run_dir: str | Path, poster_paths: Sequence[str]) -> dict[str, Any]:
    """What a report screenshot shows: pixels of the chart colours, and which video posters appear in it."""
    import cv2
    import numpy as np

    shot = cv2.imread(str(png_path))  # BGR
    if shot is None:
        raise ValueError(f"cannot read screenshot {png_path}")

    def pixels(hex_colour: str) -> int:
        b, g, r = (int(hex_colour[i : i + 2], 16) for i in (5, 3, 1))
        return int(np.all(np.abs(shot.astype(int) - (b, g, r)) <= 6, axis=-1).sum())

    found = []
    for rel in poster_paths:
        poster = cv2.imread(str(Path(run_dir) / rel))
        if poster is None:
            continue
        h = round(VIDEO_WIDTH * poster.shape[0] / poster.shape[1])
        tmpl = cv2.resize(poster, (VIDEO_WIDTH, h), interpolation=cv2.INTER_AREA)
        score = float(cv2.matchTemplate(shot, tmpl, cv2.TM_CCOEFF_NORMED).max())
        found.append({"poster": rel, "match": score})
    return {
        "size": [int(shot.shape[1]), int(shot.shape[0])],
        "success_chart_px": pixels(SERIES_COLOURS[0]),  # bars of the first split
        "outcome_chart_px": pixels(KIND_COLOURS["success"]),  # the success share of the outcome chart
        "videos": found,
    }
