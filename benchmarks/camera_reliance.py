"""How much a model planner relies on its camera: success on the same seeds with the camera as rendered and
with the camera blanked, for the model and for perception (issue #20).

Both runs are palme-eval runs (`agent.evaluate.evaluate`) with the same checkpoint, tasks, split, seeds and
state keys; they differ in one planner key, `blank_frames`. Blanked, everything that reads the camera sees a
blank one: the model is given an all-zero frame of the same shape at every decision
(`agent.planners.PalmEPlanner.seen`), and perception an all-zero RGB frame with the depth at the far plane (the
env's `blank_perception`), so `--state estimated` gives no object rows and `--skills-use estimated` finds no
object. What does not come from the camera is unchanged: `--state privileged|noisy` rows, the task's success
check. With privileged rows, a model that reads its plan off the object tokens loses little and one that needs
the image loses much; with `--state estimated` the planner sees nothing of the scene, so success should collapse.

    python benchmarks/camera_reliance.py CHECKPOINT [--tasks stack grasp ...] [--episodes 50] [--split L1]
        [--seed-offset 600000] [--state privileged|estimated|noisy] [--skills-use privileged|estimated]
        [--workers 2] [--image-size 64] [--out reliance.json] [--runs DIR]

Prints per task and pooled: success with rendered and with blanked frames (95% Wilson intervals,
agent.eval_metrics.wilson_interval), the difference in points and the paired changes (seeds won only with the
frames / only without them); `--out` writes the same as JSON with the per-seed outcomes, `--runs` keeps both
palme-eval run folders (report.html, episodes.jsonl).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.eval_metrics import wilson_interval

RUNS = {"rendered": False, "blanked": True}  # run name -> blank_frames


def evaluate_run(checkpoint: str, blank: bool, out_dir: Path, **keys: Any) -> list[dict[str, Any]]:
    """One palme-eval run into `out_dir` (planner palme, `blank_frames=blank`, `keys`: other EvalConfig keys);
    returns its episode records (episodes.jsonl)."""
    from agent.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(planner="palme", checkpoint=checkpoint, blank_frames=blank, videos_per_task=0, progress=False,
                     label="blanked frames" if blank else "rendered frames", **keys)
    evaluate(cfg, out_dir)
    return [json.loads(line) for line in (out_dir / "episodes.jsonl").read_text().splitlines() if line.strip()]


def paired(records: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per (task, seed): {"task", "seed", "rendered": 0/1, "blanked": 0/1}, in the rendered run's order."""
    won = {name: {(r["task"], r["seed"]): int(bool(r["success"])) for r in recs} for name, recs in records.items()}
    keys = [(r["task"], r["seed"]) for r in records["rendered"] if (r["task"], r["seed"]) in won["blanked"]]
    return [{"task": t, "seed": s, **{name: won[name][(t, s)] for name in RUNS}} for t, s in keys]


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task, then pooled ("all"): n, successes, rate and 95% Wilson interval of each run, the difference
    (points) and the paired changes."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    out = []
    for name, sel in [*((t, [r for r in rows if r["task"] == t]) for t in tasks), ("all", rows)]:
        entry: dict[str, Any] = {"task": name, "n": len(sel)}
        for run in RUNS:
            k = sum(r[run] for r in sel)
            lo, hi = wilson_interval(k, len(sel))
            entry[run] = {"successes": k, "pc_success": 100 * k / max(len(sel), 1), "ci95": [100 * lo, 100 * hi]}
        entry["difference_points"] = entry["blanked"]["pc_success"] - entry["rendered"]["pc_success"]
        entry["only_rendered"] = sum(r["rendered"] > r["blanked"] for r in sel)
        entry["only_blanked"] = sum(r["blanked"] > r["rendered"] for r in sel)
        out.append(entry)
    return out


def table(entries: list[dict[str, Any]]) -> str:
    """Markdown table of `summary`."""
    def pct(e: dict[str, Any]) -> str:
        return f"{e['pc_success']:.1f}% [{e['ci95'][0]:.1f}, {e['ci95'][1]:.1f}]"

    head = ("| task | n | frames as rendered | frames blanked | blanked - rendered (points) | won only with frames "
            "| won only blanked |")
    lines = [head, "|---|---|---|---|---|---|---|"]
    for e in entries:
        lines.append(f"| {e['task']} | {e['n']} | {pct(e['rendered'])} | {pct(e['blanked'])} | "
                     f"{e['difference_points']:+.1f} | {e['only_rendered']} | {e['only_blanked']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a PalmE checkpoint folder (palme-eval's checkpoint=)")
    ap.add_argument("--world", default="pickplace", choices=["pickplace", "push"])
    ap.add_argument("--tasks", nargs="*", default=None, help="default: every task of the world")
    ap.add_argument("--episodes", type=int, default=50, help="episodes per task (the same seeds in both runs)")
    ap.add_argument("--split", default="L1", help="evaluation split (L1-L4)")
    ap.add_argument("--seed-offset", type=int, default=600_000, help="episode n: seed range start + offset + n")
    ap.add_argument("--state", default="privileged", help="the model's object rows: privileged | estimated | noisy")
    ap.add_argument("--skills-use", default="privileged", help="what the skills act on: privileged | estimated")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=64, help="camera frames (square): the size the model was trained on")
    ap.add_argument("--out", type=Path, default=None, help="write the summary and per-seed outcomes here (JSON)")
    ap.add_argument("--runs", type=Path, default=None, help="keep both palme-eval run folders under this folder")
    args = ap.parse_args(argv)
    keys = {"env": args.world, "tasks": list(args.tasks or []), "episodes": args.episodes, "split": args.split,
            "seed_offset": args.seed_offset, "state": args.state, "skills_use": args.skills_use,
            "workers": args.workers, "image_size": [args.image_size, args.image_size]}
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="camera-reliance-") as tmp:
            base = args.runs if args.runs is not None else Path(tmp)
            records = {name: evaluate_run(args.checkpoint, blank, base / name, **keys) for name, blank in RUNS.items()}
    except ValueError as err:  # a set-up error palme-eval refuses (names, seeds, checkpoint): one line, exit 2
        ap.error(" ".join(str(err).split()))
    wall = time.perf_counter() - t0
    rows = paired(records)
    entries = summary(rows)
    print(f"{args.checkpoint}: {args.world} {args.split}, seeds from offset {args.seed_offset}, state={args.state}, "
          f"skills_use={args.skills_use}, {args.image_size}px frames\n")
    print(table(entries))
    print(f"\n{wall:.0f} s, {args.workers} worker(s)")
    if args.out:
        args.out.write_text(json.dumps({"checkpoint": args.checkpoint, **keys, "wall_s": round(wall, 1),
                                        "summary": entries, "episodes": rows}, indent=1))


if __name__ == "__main__":
    main()
