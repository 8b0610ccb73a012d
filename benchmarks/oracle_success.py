"""Oracle success of the pick-and-place world: oracle planner + scripted skills over seeded episodes.

Modes:
  tasks      every task over N seeded episodes with 3-5 cubes (split L1) and with 8 cubes (split L3,
             cube count fixed to 8); success rate, mean skill calls, oracle episodes per minute of one
             core's CPU time (and per wall-clock minute, which other load on the machine slows)
  pickplace  isolated pick-then-place: a random clear cube to a random free table spot, N trials;
             success = the cube rests flat on the table within 1.5 cm of the spot and no other cube
             moved more than 1 cm

    python benchmarks/oracle_success.py tasks --episodes 100 --out outputs/oracle_success.json
    python benchmarks/oracle_success.py pickplace --trials 200 --out outputs/pick_place.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import envs.tasks.pickplace  # noqa: F401 -- registers the tasks
from envs.pickplace import PickPlaceEnv
from envs.tasks.base import TEST_SEED_START, make_task, task_names
from envs.vocab import SkillCall
from policies.base import Skill, SkillResult, make_skill, run_skill


def oracle_episode(env: PickPlaceEnv, seed: int, max_calls: int = 60) -> dict:
    """One episode of the oracle planner: replan from the current state, run the first step, repeat."""
    env.reset(seed=seed)
    calls, failed_calls = 0, 0
    while calls < max_calls and env.failure is None:
        plan = env.task.oracle_plan(env, env.goal)
        if not plan:
            break
        res = run_skill(env, plan[0])
        calls += 1
        failed_calls += int(not res.success)
    return {
        "seed": seed,
        "success": env.is_success,
        "calls": calls,
        "failed_calls": failed_calls,
        "control_steps": env.t,
        "failure": env.failure,
        "instruction": env.task_description,
    }


def measure_task(task: str, split: str, episodes: int, n_objects: int | None, seed0: int) -> dict:
    """Success rate and oracle episodes per minute of one task on one split."""
    env = PickPlaceEnv(task, obs_type="state", render_mode=None, split=split)
    env.task = make_task("pickplace", task, n_objects=n_objects)
    start, cpu_start = time.perf_counter(), time.process_time()
    runs = []
    for k in range(episodes):
        runs.append(oracle_episode(env, seed0 + k))
        if (k + 1) % 10 == 0:  # progress, so a run cut short by a timeout still says something
            ok = sum(r["success"] for r in runs)
            print(f"  {task} ({split}, {n_objects or '3-5'} cubes): {ok}/{k + 1}", flush=True)
    minutes = (time.perf_counter() - start) / 60
    cpu_minutes = (
        time.process_time() - cpu_start
    ) / 60  # one core's time: robust to other load on the machine
    env.close()
    ok = sum(r["success"] for r in runs)
    return {
        "task": task,
        "split": split,
        "n_objects": n_objects or "3-5",
        "episodes": episodes,
        "successes": ok,
        "success_rate": ok / episodes,
        "episodes_per_cpu_minute": episodes / cpu_minutes,
        "episodes_per_wall_minute": episodes / minutes,
        "mean_calls": float(np.mean([r["calls"] for r in runs])),
        "failed_seeds": [r for r in runs if not r["success"]],
    }


def execute(env: PickPlaceEnv, skill: Skill, call: SkillCall) -> SkillResult:
    """Run a skill instance to the end (run_skill for a skill built with non-default arguments)."""
    early = skill.reset(env, call)
    if early is not None:
        return early
    start = env.t
    while env.t - start < skill.max_steps and env.failure is None:
        action = skill.act(env)
        if action is None:
            break
        env.control(action)
    return skill.result(env)


def pick_place_trial(env: PickPlaceEnv, seed: int) -> dict:
    """Pick a random clear cube and place it on a random free table spot; judge spot, pose and neighbours."""
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    graph = env.support_graph()
    clear = [i for i in range(len(env.object_ids)) if not any(s == i for s in graph)]
    i = int(rng.choice(clear))
    size = env.object_sizes[i]
    spot = env.free_spot(size, near=rng.uniform([0.28, -0.36], [0.66, 0.36]), exclude=(i,))
    before = [env.object_pose(j)[0] for j in range(len(env.object_ids))]
    pick = run_skill(env, SkillCall("pick", obj=i))
    place = execute(
        env, make_skill("pickplace", "place", spot=tuple(spot)), SkillCall("place", obj=i, location="table")
    )
    pos = env.object_pose(i)[0]
    moved = [
        env.names[j]
        for j in range(len(env.object_ids))
        if j != i and np.linalg.norm(env.object_pose(j)[0] - before[j]) > 0.01
    ]
    on_spot = bool(np.linalg.norm(pos[:2] - spot) < 0.015)
    success = pick.success and place.success and on_spot and not moved and env.failure is None
    return {
        "seed": seed,
        "success": success,
        "cube": env.names[i],
        "pick": pick.reason,
        "place": place.reason,
        "on_spot": on_spot,
        "moved_neighbours": moved,
        "failure": env.failure,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["tasks", "pickplace"])
    ap.add_argument("--episodes", type=int, default=100, help="episodes per task and setting")
    ap.add_argument("--trials", type=int, default=200, help="pick-then-place trials")
    ap.add_argument("--tasks", default=",".join(task_names("pickplace")), help="comma-separated task names")
    ap.add_argument("--settings", default="3-5,8", help="'3-5' (split L1) and/or '8' (split L3, 8 cubes)")
    ap.add_argument("--seed", type=int, default=TEST_SEED_START, help="first seed")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.mode == "pickplace":
        env = PickPlaceEnv("put_in_zone", obs_type="state", render_mode=None, split="L1")
        start = time.perf_counter()
        runs = [pick_place_trial(env, args.seed + k) for k in range(args.trials)]
        ok = sum(r["success"] for r in runs)
        report = {
            "trials": args.trials,
            "successes": ok,
            "success_rate": ok / args.trials,
            "trials_per_minute": args.trials / ((time.perf_counter() - start) / 60),
            "failures": [r for r in runs if not r["success"]],
        }
        print(f"pick-then-place: {ok}/{args.trials} = {ok / args.trials:.1%}")
    else:
        rows = []
        print(
            f"{'task':<15}{'cubes':>6}{'success':>10}{'rate':>8}{'calls':>7}{'ep/cpu-min':>11}{'ep/wall-min':>12}"
        )
        for setting in args.settings.split(","):
            split, n = ("L1", None) if setting == "3-5" else ("L3", int(setting))
            for task in args.tasks.split(","):
                r = measure_task(task, split, args.episodes, n, args.seed)
                rows.append(r)
                args.out.write_text(
                    json.dumps({"results": rows}, indent=1, default=str)
                )  # partial results survive a timeout
                print(
                    f"{task:<15}{r['n_objects']!s:>6}{r['successes']:>6}/{r['episodes']:<4}{r['success_rate']:>7.1%}"
                    f"{r['mean_calls']:>7.1f}{r['episodes_per_cpu_minute']:>11.1f}{r['episodes_per_wall_minute']:>12.1f}",
                    flush=True,
                )
        report = {"results": rows}
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
