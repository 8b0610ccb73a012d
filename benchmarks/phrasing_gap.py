"""Success with the training grammar's phrasing against new phrasings of the same goals, on the same scenes (issue #19).

Each episode's scene and goal come from `env.reset(seed)` of `--split` (L1: new placements on evaluation seeds;
`train`: the training distribution); the planner runs it twice: once with the instruction the env said
(the training grammar) and once with the same goal said by a template of `--phrasings`
(`env.set_instruction(text, keep_goal=True)`, so success stays known). Seeds whose goal no template of the file
can say are skipped (counted in the output). The default file is the independent test set
(`tests/data/independent_instructions.json`, never trained on: measure with it once, on fresh seeds);
`benchmarks/validate_phrasing.py` runs the same protocol on the validation phrasings that recipes are chosen on.

    python benchmarks/phrasing_gap.py CHECKPOINT [--world pickplace] [--tasks ...] [--episodes 300]
        [--split L1] [--seed-offset 400000] [--workers 2] [--out gap.json] [--failures failed.jsonl]

Prints per task: success with the grammar's phrasing and with the file's phrasing (95% Wilson intervals)
and the paired difference in points; with `--out`, the per-seed outcomes as JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.eval_metrics import wilson_interval
from envs.tasks.base import seed_range

INDEPENDENT_FILE = ROOT / "tests" / "data" / "independent_instructions.json"
KINDS = ("grammar", "new")  # the env's own phrasing (training grammar), the file's phrasing of the same goal

_WORKER: dict[str, Any] = {}


def _init(checkpoint: str, phrasings: str) -> None:
    import torch

    from agent.api import make_planner
    from agent.loop import Agent
    from envs.tasks.independent_instructions import IndependentInstructions

    torch.set_num_threads(1)  # one core per worker process
    _WORKER.update(agent=Agent(make_planner("palme", checkpoint=checkpoint)),
                   phrasings=IndependentInstructions.load(phrasings), envs={})


def _episodes(job: tuple[str, str, str, int, list[int], bool, tuple[str, ...]]) -> list[dict[str, Any]]:
    """The runs (`kinds`) of each seed of one task: [{"task", "seed", "grammar": 0/1, "new": 0/1 | None, ...}]."""
    from agent.api import make_env

    world, task, split, image_size, seeds, keep_failed, kinds = job
    key = (world, task, split)
    if key not in _WORKER["envs"]:
        _WORKER["envs"][key] = make_env(world, task, split=split, image_size=(image_size, image_size))
    env, agent, phrasings = _WORKER["envs"][key], _WORKER["agent"], _WORKER["phrasings"]
    rows = []
    for seed in seeds:
        row: dict[str, Any] = {"task": task, "seed": seed}
        for kind in kinds:
            env.reset(seed=seed)
            u = env.unwrapped
            if kind == "new":
                text = phrasings.render(task, u.goal, u.instance.objects, np.random.default_rng(seed))
                if text is None:  # no template of the file can say this goal
                    row[kind] = None
                    continue
                u.set_instruction(text, keep_goal=True)
            trace = agent.run(env, seed=seed)
            row[kind] = int(bool(trace.success))
            row[f"{kind}_instruction"] = trace.instruction
            if keep_failed and not trace.success:
                row.setdefault("failed", []).append({"kind": kind, **trace.to_dict()})
        rows.append(row)
    return rows


def run(checkpoint: str, world: str, tasks: list[str], episodes: int, split: str, seed_offset: int,
        phrasings: Path = INDEPENDENT_FILE, workers: int = 2, image_size: int = 64,
        keep_failed: bool = False, kinds: tuple[str, ...] = KINDS) -> list[dict[str, Any]]:
    """Per-seed outcomes of every task (see `_episodes`), seeds `seed_range(split)[0] + seed_offset + n`; `kinds`:
    which runs each seed gets (both by default; ("new",) alone halves the cost when only new phrasings count)."""
    lo, hi = seed_range(split)
    first = lo + seed_offset
    if not (lo <= first and first + episodes <= hi):
        raise ValueError(f"seed_offset={seed_offset} with episodes={episodes} leaves the {split} seed range [{lo}, {hi})")
    chunk = max(1, min(25, episodes // max(1, workers)))
    jobs = [(world, t, split, image_size, list(range(s, min(s + chunk, first + episodes))), keep_failed, kinds)
            for t in tasks for s in range(first, first + episodes, chunk)]
    if workers <= 1:
        _init(checkpoint, str(phrasings))
        return [r for j in jobs for r in _episodes(j)]
    with mp.get_context("spawn").Pool(workers, _init, (checkpoint, str(phrasings))) as pool:
        return [r for rows in pool.imap(_episodes, jobs) for r in rows]


def _pct(xs: list[int]) -> str:
    n, s = len(xs), sum(xs)
    lo, hi = wilson_interval(s, n)
    return f"{100 * s / max(n, 1):5.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] of {n}"


def table(rows: list[dict[str, Any]]) -> str:
    """Per task and pooled: grammar vs new phrasing on the seeds both ran (paired), in points."""
    lines = ["| task | training grammar | new phrasing | new - grammar (points) | seeds skipped |", "|---|---|---|---|---|"]
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    for name, sel in [*((t, [r for r in rows if r["task"] == t]) for t in tasks), ("all", rows)]:
        both = [r for r in sel if r.get("new", 0) is not None]
        g, n = [r["grammar"] for r in both if "grammar" in r], [r["new"] for r in both if "new" in r]
        diff = f"{100 * (np.mean(n) - np.mean(g)):+.1f}" if g and n else "-"
        lines.append(f"| {name} | {_pct(g) if g else '-'} | {_pct(n) if n else '-'} | {diff} | {len(sel) - len(both)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None, default_file: Path = INDEPENDENT_FILE, default_split: str = "L1",
         default_offset: int = 400_000, default_episodes: int = 300) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--world", default="pickplace", choices=["pickplace", "push"])
    ap.add_argument("--tasks", nargs="*", default=None, help="default: every task of the file in this world")
    ap.add_argument("--episodes", type=int, default=default_episodes, help="scenes per task")
    ap.add_argument("--split", default=default_split, help="the scenes' split (its seed range)")
    ap.add_argument("--seed-offset", type=int, default=default_offset, help="episode n: seed range start + offset + n")
    ap.add_argument("--phrasings", type=Path, default=default_file, help="templates of new phrasings (JSON)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None, help="write the per-seed outcomes here (JSON)")
    ap.add_argument("--failures", type=Path, default=None, help="write the failed episodes' traces here (JSON lines)")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS,
                    help="runs per seed: the training grammar's phrasing and/or the file's (default both)")
    args = ap.parse_args(argv)
    import envs  # noqa: F401 - registers the worlds' tasks
    from envs.tasks.base import task_names
    from envs.tasks.independent_instructions import IndependentInstructions

    known = IndependentInstructions.load(args.phrasings).tasks
    tasks = args.tasks or [t for t in task_names(args.world) if t in known]
    t0 = time.perf_counter()
    rows = run(args.checkpoint, args.world, tasks, args.episodes, args.split, args.seed_offset, args.phrasings,
               args.workers, args.image_size, keep_failed=args.failures is not None, kinds=tuple(args.kinds))
    wall = time.perf_counter() - t0
    print(f"{args.checkpoint}: {args.world}, {args.split} scenes, seeds from offset {args.seed_offset}, "
          f"new phrasings from {args.phrasings.name}\n")
    print(table(rows))
    print(f"\n{wall:.0f} s, {args.workers} worker(s)")
    failed = [f for r in rows for f in r.pop("failed", [])]
    if args.out:
        args.out.write_text(json.dumps({"checkpoint": args.checkpoint, "world": args.world, "split": args.split,
                                        "seed_offset": args.seed_offset, "phrasings": str(args.phrasings),
                                        "wall_s": round(wall, 1), "episodes": rows}, indent=1))
    if args.failures:
        args.failures.write_text("".join(json.dumps(f) + "\n" for f in failed))


if __name__ == "__main__":
    main()
