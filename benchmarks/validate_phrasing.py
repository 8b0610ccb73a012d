"""Closed-loop success of a checkpoint on VALIDATION phrasings: what a recipe is chosen on (issue #19).

The test set of phrasings (L4: tests/data/independent_instructions.json and the held-out templates) must
never steer a recipe, so recipes are compared here instead: L1-like scenes (split `train`) on seeds of the
training range that no collection uses (`VAL_SEED_START` + k), their sampled goals said in
`benchmarks/data/validation_instructions.json` (the same file format, paraphrases written by the project
and checked to be outside the training grammar) and, on the same seeds, in the training grammar.
The goal stays the sampled one (`set_instruction(..., keep_goal=True)`), so success is known.

    python benchmarks/validate_phrasing.py CHECKPOINT [--episodes 40] [--out results.json] [--failures failed.jsonl]

Prints per task: success with validation phrasings / with training phrasings (same scenes), with 95%
Wilson intervals; one process, CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.api import make_env, make_planner
from agent.eval_metrics import wilson_interval
from agent.loop import Agent
from envs.tasks.independent_instructions import IndependentInstructions

VAL_FILE = ROOT / "benchmarks" / "data" / "validation_instructions.json"
VAL_SEED_START = 950_000  # training range [0, 1e6); collections use seeds from 0, 100000 and 200000 up


def run(checkpoint: str, episodes: int, image_size: int, tasks: list[str] | None = None,
        failed: list[dict] | None = None) -> dict[str, dict[str, list[int]]]:
    """task -> {"validation": successes, "training": successes} (0/1 per episode, same seeds).

    `failed`, when given, receives the trace (EpisodeTrace.to_dict, plus "kind") of every failed episode: what the
    recipe is diagnosed on, since these phrasings may steer it and the test set's may not.
    """
    phrasings = IndependentInstructions.load(VAL_FILE)
    planner = make_planner("palme", checkpoint=checkpoint)
    agent = Agent(planner)
    out: dict[str, dict[str, list[int]]] = {}
    for task in tasks or sorted(phrasings.tasks):
        env = make_env("pickplace", task, split="train", image_size=(image_size, image_size))
        res = out.setdefault(task, {"validation": [], "training": []})
        for k in range(episodes):
            seed = VAL_SEED_START + k
            for kind in ("training", "validation"):
                env.reset(seed=seed)
                u = env.unwrapped
                if kind == "validation":
                    text = phrasings.render(task, u.goal, u.instance.objects, np.random.default_rng(seed))
                    if text is None:
                        continue
                    u.set_instruction(text, keep_goal=True)
                trace = agent.run(env, seed=seed)
                res[kind].append(int(bool(trace.success)))
                if failed is not None and not trace.success:
                    failed.append({"kind": kind, **trace.to_dict()})
        env.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--episodes", type=int, default=40, help="scenes per task")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--tasks", nargs="*", default=None, help="default: every task of the file")
    ap.add_argument("--out", type=Path, default=None, help="write the per-task counts here (JSON)")
    ap.add_argument("--failures", type=Path, default=None, help="write the failed episodes' traces here (JSON lines)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    failed: list[dict] | None = [] if args.failures else None
    res = run(args.checkpoint, args.episodes, args.image_size, args.tasks, failed)
    rows = []
    for task, r in res.items():
        cells = []
        for kind in ("validation", "training"):
            s, n = sum(r[kind]), len(r[kind])
            lo, hi = wilson_interval(s, n)
            cells.append(f"{kind} {100 * s / max(n, 1):5.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] of {n}")
        rows.append(f"{task:14s} " + " | ".join(cells))
    total = {k: [x for r in res.values() for x in r[k]] for k in ("validation", "training")}
    rows.append("all            " + " | ".join(f"{k} {100 * np.mean(v):5.1f}% of {len(v)}" for k, v in total.items()))
    print("\n".join(rows))
    print(f"{time.perf_counter() - t0:.0f} s")
    if args.out:
        args.out.write_text(json.dumps({"checkpoint": args.checkpoint, "results": res}, indent=1))
    if failed is not None:
        args.failures.write_text("".join(json.dumps(t) + "\n" for t in failed))


if __name__ == "__main__":
    main()
