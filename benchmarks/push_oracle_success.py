"""Oracle success of the pushing world: oracle planner + scripted push skill over seeded episodes.

Single-step families get 100 episodes each within 200 control steps (Language-Table's 20 s at
10 Hz); long-horizon tasks get 50 episodes each within 1500 control steps. Episodes use test
seeds (split L1) unless --split says otherwise.

    python benchmarks/push_oracle_success.py --out outputs/push_oracle_success.json
    python benchmarks/push_oracle_success.py --block-set BLOCK_8 --single 50 --long 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from envs.push import PushEnv
from envs.tasks.base import seed_range
from envs.tasks.push import LONG_HORIZON_TASKS, SINGLE_STEP_TASKS
from policies.base import run_skill


def oracle_episode(env: PushEnv, seed: int, budget: int, max_calls: int = 30) -> dict:
    """One episode: replan from the current state, run the first step within the budget left, repeat."""
    env.reset(seed=seed)
    calls = failed = 0
    while calls < max_calls and env.failure is None and env.t < budget and not env.is_success:
        plan = env.task.oracle_plan(env, env.goal)
        if not plan:
            break
        res = run_skill(env, plan[0], max_steps=min(200, budget - env.t))
        calls += 1
        failed += int(not res.success)
    ok = bool(env.is_success and env.t <= budget)
    return {
        "seed": seed,
        "success": ok,
        "calls": calls,
        "failed_calls": failed,
        "control_steps": env.t,
        "failure": env.failure,
        "instruction": env.task_description,
    }


def measure(task: str, episodes: int, budget: int, split: str, block_set: str | None) -> dict:
    """Success rate, mean steps and calls of one task."""
    env = PushEnv(task, obs_type="state", render_mode=None, split=split, block_set=block_set)
    seed0 = seed_range(split)[0]
    start = time.perf_counter()
    runs = [oracle_episode(env, seed0 + k, budget) for k in range(episodes)]
    seconds = time.perf_counter() - start
    env.close()
    ok = sum(r["success"] for r in runs)
    return {
        "task": task,
        "split": split,
        "block_set": block_set or "N_CHOOSE_K",
        "episodes": episodes,
        "budget_steps": budget,
        "successes": ok,
        "success_rate": ok / episodes,
        "mean_control_steps": float(np.mean([r["control_steps"] for r in runs])),
        "mean_calls": float(np.mean([r["calls"] for r in runs])),
        "seconds": seconds,
        "failed": [r for r in runs if not r["success"]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--single", type=int, default=100, help="episodes per single-step family")
    ap.add_argument("--long", type=int, default=50, help="episodes per long-horizon task")
    ap.add_argument("--single-budget", type=int, default=200, help="control steps per single-step episode")
    ap.add_argument("--long-budget", type=int, default=1500, help="control steps per long-horizon episode")
    ap.add_argument("--split", default="L1")
    ap.add_argument("--block-set", default=None, help="None (n-choose-k by split), BLOCK_4 or BLOCK_8")
    ap.add_argument("--tasks", nargs="*", default=None, help="subset of tasks")
    ap.add_argument("--out", default="outputs/push_oracle_success.json")
    args = ap.parse_args()
    plan = [(t, args.single, args.single_budget) for t in SINGLE_STEP_TASKS]
    plan += [(t, args.long, args.long_budget) for t in LONG_HORIZON_TASKS]
    if args.tasks:
        plan = [row for row in plan if row[0] in args.tasks]
    print(
        f"{'task':<32}{'episodes':>9}{'budget':>8}{'success':>9}{'steps':>8}{'calls':>7}{'sec':>7}",
        flush=True,
    )
    results = []
    for task, episodes, budget in plan:
        r = measure(task, episodes, budget, args.split, args.block_set)
        results.append(r)
        print(
            f"{task:<32}{episodes:>9}{budget:>8}{r['success_rate']:>9.1%}{r['mean_control_steps']:>8.1f}"
            f"{r['mean_calls']:>7.1f}{r['seconds']:>7.0f}",
            flush=True,
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"split": args.split, "block_set": args.block_set, "results": results}, indent=1)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
