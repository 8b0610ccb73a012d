"""PaLM-E Table 7 at small scale: the planner with pretrained language knowledge against the same planner from scratch.

PaLM-E (Driess et al., 2023, Table 7) compares "state, no LLM pretraining" with "state, LLM pretrained" when
scenes and instructions leave the training distribution. Here both checkpoints run `palme-eval` on the same
seeds of the pick-and-place world: the independent instruction set (split L4, episodes whose phrasing is one of
`tests/data/independent_instructions.json`; L4's held-out templates are counted apart) and L3 (6-8 cubes,
longer towers). One command writes the table (success per task with 95% Wilson intervals) as markdown:

    python benchmarks/pretrained_vs_scratch.py PRETRAINED SCRATCH [--episodes 50] [--workers 2] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.api import evaluate
from agent.eval_metrics import wilson_interval

TASKS = ("grasp", "put_in_zone", "sort_by_color", "stack", "unstack")


def _cell(outcomes: list[bool]) -> str:
    n, s = len(outcomes), sum(outcomes)
    if not n:
        return "-"
    lo, hi = wilson_interval(s, n)
    return f"{100 * s / n:.0f} [{100 * lo:.0f}, {100 * hi:.0f}] ({n})"


def measure(checkpoint: str, split: str, episodes: int, workers: int, out: Path) -> dict[str, dict[str, list[bool]]]:
    """task -> phrasing kind ("independent", "held-out", "grammar") -> success per episode."""
    evaluate("palme", "pickplace", list(TASKS), episodes, split=split, out_dir=out, workers=workers,
             checkpoint=checkpoint, image_size=[64, 64])
    res: dict[str, dict[str, list[bool]]] = {t: {} for t in TASKS}
    for line in (out / "episodes.jsonl").read_text().splitlines():
        ep = json.loads(line)
        phrasing = ep.get("phrasing", "")
        kind = "independent" if phrasing.startswith("independent: ") else ("held-out" if split == "L4" else "grammar")
        res[ep["task"]].setdefault(kind, []).append(bool(ep["success"]))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pretrained")
    ap.add_argument("scratch")
    ap.add_argument("--episodes", type=int, default=50, help="episodes per task and split")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=Path, default=ROOT / "outputs" / "table7", help="palme-eval run folders go here")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here (also printed)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = {}
    for name, ckpt in (("pretrained", args.pretrained), ("scratch", args.scratch)):
        for split in ("L4", "L3"):
            rows[name, split] = measure(ckpt, split, args.episodes, args.workers, args.runs / f"{name}_{split}")
    head = "| planner | " + " | ".join(f"{t}: independent set (L4) | {t}: L3" for t in TASKS) + " |"
    title = (f"PaLM-E Table 7 at small scale: success % [95% CI] (episodes); {args.episodes} episodes per task and "
             "split, L4 cells count only independent-set phrasings")
    lines = [title, "", head, "|" + "---|" * (1 + 2 * len(TASKS))]
    for name, ckpt in (("pretrained", args.pretrained), ("scratch", args.scratch)):
        cells = []
        for t in TASKS:
            cells += [_cell(rows[name, "L4"][t].get("independent", [])), _cell(rows[name, "L3"][t].get("grammar", []))]
        lines.append(f"| {name} (`{ckpt}`) | " + " | ".join(cells) + " |")
    for name in ("pretrained", "scratch"):
        ind = [x for t in TASKS for x in rows[name, "L4"][t].get("independent", [])]
        l3 = [x for t in TASKS for x in rows[name, "L3"][t].get("grammar", [])]
        lines.append(f"\n{name}: independent set {_cell(ind)}, L3 {_cell(l3)}")
    lines.append(f"\n{time.perf_counter() - t0:.0f} s on this machine")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
