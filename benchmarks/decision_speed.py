"""Closed-loop planning decisions per second of one checkpoint against a baseline checkpoint, in one run.

A decision is one `Planner.next_step` call inside the agent loop (prompt building, the encoders, constrained
decoding of the step; a model reading instructions also encodes each new instruction once). Both
planners run the same L1 episodes of every pick-and-place task; episodes alternate between the two, so
a busy machine slows both alike. Reports decisions/s of each and the ratio NEW / BASE (issue #19: >= 0.5).

    python benchmarks/decision_speed.py BASE_CHECKPOINT NEW_CHECKPOINT [--episodes 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.api import make_env, make_planner
from agent.loop import Agent
from envs.tasks.base import seed_range, task_names


class Timed:
    """A planner whose `next_step` calls are counted and timed (seconds of wall time inside them)."""

    def __init__(self, planner) -> None:
        self.planner, self.calls, self.seconds = planner, 0, 0.0

    def __getattr__(self, name):
        return getattr(self.planner, name)

    def next_step(self, ctx):
        t0 = time.perf_counter()
        try:
            return self.planner.next_step(ctx)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base")
    ap.add_argument("new")
    ap.add_argument("--episodes", type=int, default=4, help="L1 episodes per task and checkpoint")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    timed = {name: Timed(make_planner("palme", checkpoint=ckpt)) for name, ckpt in (("base", args.base), ("new", args.new))}
    lo, _ = seed_range("L1")
    from envs import load_world

    load_world("pickplace")
    for task in task_names("pickplace"):
        env = make_env("pickplace", task, split="L1", image_size=(64, 64))
        for k in range(args.episodes):
            for name in (("base", "new") if k % 2 == 0 else ("new", "base")):
                Agent(timed[name]).episode(env, seed=lo + k)
        env.close()
    rate = {name: t.calls / t.seconds for name, t in timed.items()}
    for name, t in timed.items():
        print(f"{name}: {t.calls} decisions in {t.seconds:.1f} s = {rate[name]:.2f} decisions/s")
    print(f"ratio new/base: {rate['new'] / rate['base']:.2f} (torch threads {args.threads})")


if __name__ == "__main__":
    main()
