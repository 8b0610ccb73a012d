"""Agent-loop benchmark: does going through text cost anything, and does replanning absorb skill failures?

(a) The oracle planner through the full text loop (render -> parse -> execute, `Agent`) against
    the direct oracle (task.oracle_plan + run_skill, no text, same budgets): success per task on
    the same seeds; they must agree within 1 point.
(b) The oracle planner through the text loop with 30% of skill calls failing at random
    (`FlakySkills`): success per task (goal >= 80%), and every episode must end cleanly with a
    failure kind and reason.

    python benchmarks/agent_loop.py --world pickplace --episodes 50
    python benchmarks/agent_loop.py --world push --tasks block2block sort_corners --episodes 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.loop import DEFAULT_MAX_CONSECUTIVE_FAILURES, FAILURE_KINDS, Agent, FlakySkills
from agent.planners import make_planner
from envs import load_world, make_env
from envs.tasks.base import task_names
from policies.base import run_skill


def direct_oracle(env: Any, seed: int, max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES) -> bool:
    """The oracle without text: at each decision point the first call of a fresh oracle plan goes to run_skill."""
    env.reset(seed=seed)
    u = env.unwrapped
    budget = 2 * len(u.task.oracle_plan(u, u.goal)) + 2  # the agent's default budget ("done" counts as a step)
    fails = 0
    for _ in range(budget):
        if u.failure is not None:
            break
        plan = u.task.oracle_plan(u, u.goal)
        if not plan:
            break
        fails = 0 if run_skill(u, plan[0]).success else fails + 1
        if fails >= max_consecutive_failures:
            break
    return bool(u.is_success)


def bench_task(
    world: str, task: str, seeds: list[int], fault_rate: float, fault_mode: str,
    max_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
) -> dict[str, Any]:
    """Direct oracle, text-loop oracle and text-loop oracle with faults on the same seeds."""
    env = make_env(world, task, obs_type="state")
    try:
        t0 = time.perf_counter()
        direct = [direct_oracle(env, s, max_failures) for s in seeds]
        t1 = time.perf_counter()
        agent = Agent(make_planner("oracle"), max_consecutive_failures=max_failures)
        text = [agent.episode(env, seed=s) for s in seeds]
        t2 = time.perf_counter()
        faulty_traces, injected = [], 0
        for s in seeds:
            flaky = FlakySkills(fault_rate, np.random.default_rng(10_000 + s), mode=fault_mode)
            faulty_traces.append(Agent(make_planner("oracle"), executor=flaky, max_consecutive_failures=max_failures).episode(env, seed=s))
            injected += flaky.injected
        t3 = time.perf_counter()
    finally:
        env.close()
    text_ok = [bool(t.success) for t in text]
    faulty_ok = [bool(t.success) for t in faulty_traces]
    clean = [t.success is True or (t.failure in FAILURE_KINDS and bool(t.reason)) for t in faulty_traces]
    n = len(seeds)
    return {
        "task": task, "world": world, "episodes": n, "max_consecutive_failures": max_failures,
        "direct_pc": 100 * np.mean(direct), "text_pc": 100 * np.mean(text_ok),
        "gap_pts": 100 * (np.mean(text_ok) - np.mean(direct)),
        "episodes_disagreeing": int(sum(a != b for a, b in zip(direct, text_ok))),
        "text_failures": _count(t.failure for t in text if not t.success),
        "fault_rate": fault_rate, "fault_mode": fault_mode, "faults_injected": injected,
        "faulty_pc": 100 * np.mean(faulty_ok),
        # on the seeds the direct oracle solves: what replanning recovers from the injected faults alone
        "faulty_pc_where_oracle_solves": 100 * float(np.mean([f for f, d in zip(faulty_ok, direct) if d] or [0.0])),
        "faulty_clean_pc": 100 * np.mean(clean),
        "faulty_failure_kinds": _count(t.failure for t in faulty_traces if not t.success),
        "faulty_replans_per_ep": float(np.mean([t.n_replans for t in faulty_traces])),
        "direct_s_per_ep": (t1 - t0) / n, "text_s_per_ep": (t2 - t1) / n, "faulty_s_per_ep": (t3 - t2) / n,
    }


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in items:
        out[str(k)] = out.get(str(k), 0) + 1
    return out


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the results."""
    head = ("| world | task | n | direct % | text loop % | gap (pts) | disagree | 30% faults % | faults % where oracle solves | clean % | "
            "replans/ep | s/ep (direct, text) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['world']} | {r['task']} | {r['episodes']} | {r['direct_pc']:.1f} | {r['text_pc']:.1f} | "
            f"{r['gap_pts']:+.1f} | {r['episodes_disagreeing']} | {r['faulty_pc']:.1f} | "
            f"{r['faulty_pc_where_oracle_solves']:.1f} | {r['faulty_clean_pc']:.0f} | "
            f"{r['faulty_replans_per_ep']:.2f} | {r['direct_s_per_ep']:.2f}, {r['text_s_per_ep']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default="pickplace", help="pickplace | push")
    ap.add_argument("--tasks", nargs="*", default=None, help="task names (default: every task of the world)")
    ap.add_argument("--episodes", type=int, default=50, help="episodes per task (seeds first-seed ... + n-1)")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--fault-rate", type=float, default=0.3)
    ap.add_argument("--fault-mode", default="skip", choices=["skip", "interrupt"])
    ap.add_argument("--max-consecutive-failures", type=int, default=DEFAULT_MAX_CONSECUTIVE_FAILURES)
    ap.add_argument("--out", default="outputs/benchmarks/agent_loop.json")
    args = ap.parse_args()
    load_world(args.world)
    tasks = args.tasks or task_names(args.world)
    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    rows = []
    for task in tasks:
        rows.append(bench_task(args.world, task, seeds, args.fault_rate, args.fault_mode,
                               args.max_consecutive_failures))
        r = rows[-1]
        _write(args, rows)  # after every task, so a long run interrupted later keeps what it measured
        print(f"{task}: direct {r['direct_pc']:.1f}% text {r['text_pc']:.1f}% faults {r['faulty_pc']:.1f}% "
              f"(clean {r['faulty_clean_pc']:.0f}%)", flush=True)
    print(table(rows))
    ok_gap = all(abs(r["gap_pts"]) <= 1.0 for r in rows)
    ok_faults = all(r["faulty_pc"] >= 80.0 for r in rows)
    overall_faulty = float(np.mean([r["faulty_pc"] for r in rows]))
    ok_clean = all(r["faulty_clean_pc"] == 100.0 for r in rows)
    print(f"text loop within 1 point of the direct oracle on every task: {ok_gap}")
    print(f"with {args.fault_rate:.0%} random skill failures ({args.fault_mode}) >= 80% on every task: {ok_faults}")
    print(f"mean over tasks with faults: {overall_faulty:.1f}%")
    print(f"every fault-injection episode ended cleanly with a reason: {ok_clean}")
    out = _write(args, rows, within_1pt=ok_gap, faults_ge_80=ok_faults, faulty_mean_pc=overall_faulty, all_clean=ok_clean)
    print(f"wrote {out}")


def _write(args: argparse.Namespace, rows: list[dict[str, Any]], **summary: Any) -> Path:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, **summary}, indent=2, default=float))
    return out


if __name__ == "__main__":
    main()
