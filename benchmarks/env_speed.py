"""Env overhead against raw PyBullet, for every world that can be loaded.

Prints, per world:
  physics  control-step throughput without rendering (`env.control`), in physics steps per second,
           divided by raw `stepSimulation` throughput on the same client, scene and substeps (goal >= 0.85)
  render   `env.render()` frames per second at 128x128 and 224x224 divided by raw `getCameraImage`
           at the same size and camera (goal >= 0.9)
Both sides of each ratio are timed in the same run, interleaved step by step (physics) or
round by round (render), best of several rounds.

    python benchmarks/env_speed.py [--steps 300] [--frames 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib
import time

import numpy as np
import pybullet as p

from envs import WORLDS, load_world
from envs.base import TabletopEnv
from envs.tasks.base import task_names


def try_world(world: str) -> type[TabletopEnv] | None:
    """The env class of a world, or None when its modules do not exist yet."""
    module, cls = WORLDS[world][1].split(":")
    try:
        load_world(world)
        return getattr(importlib.import_module(module), cls)
    except (ModuleNotFoundError, AttributeError) as err:
        print(f"{world}: skipped ({err})")
        return None


def best_rate(fn, count: int, rounds: int) -> float:
    """Highest calls-per-second of `fn` (called `count` times) over `rounds` rounds."""
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(count):
            fn()
        best = max(best, count / (time.perf_counter() - start))
    return best


def physics_ratio(env: TabletopEnv, steps: int, rounds: int) -> tuple[float, float, float]:
    """(env physics steps/s, raw stepSimulation steps/s, ratio) with a small back-and-forth action.

    Each control step is timed next to `substeps` raw stepSimulation calls made right after it, in the
    same state (the robot still moving toward the same targets), so both sides simulate alike and the
    ratio isolates what the env adds (action checks, IK, motor commands, blow-up checks).
    """
    dim = env.action_space.shape[0]
    ratios, env_rates, raw_rates = [], [], []
    k = 0
    for _ in range(rounds):
        t_env = t_raw = 0.0
        for _ in range(steps):
            k += 1
            a = np.zeros(dim, np.float32)
            a[0] = 0.3 * np.sin(k / 10)  # keep the robot moving so the controller does real work
            t0 = time.perf_counter()
            env.control(a)
            t1 = time.perf_counter()
            for _ in range(env.substeps):
                p.stepSimulation(physicsClientId=env.client)
            t2 = time.perf_counter()
            t_env += t1 - t0
            t_raw += t2 - t1
        env_rates.append(steps * env.substeps / t_env)
        raw_rates.append(steps * env.substeps / t_raw)
        ratios.append(t_raw / t_env)
    best = int(np.argmax(ratios))  # the round least disturbed by other load on the machine
    return env_rates[best], raw_rates[best], ratios[best]


def render_ratio(env: TabletopEnv, frames: int, rounds: int) -> tuple[float, float, float]:
    """(env.render fps, raw getCameraImage fps, ratio) at the env's image size."""
    h, w = env.image_size

    def raw() -> None:
        p.getCameraImage(w, h, env._view, env._proj, renderer=p.ER_TINY_RENDERER, physicsClientId=env.client)

    env_rates, raw_rates = [], []
    for _ in range(rounds):
        env_rates.append(best_rate(env.render, frames, 1))
        raw_rates.append(best_rate(raw, frames, 1))
    return max(env_rates), max(raw_rates), max(env_rates) / max(raw_rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300, help="control steps per timing round")
    ap.add_argument("--frames", type=int, default=30, help="frames per timing round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"{'world':<11}{'measure':<16}{'env':>12}{'raw':>12}{'ratio':>8}  goal")
    for world in WORLDS:
        cls = try_world(world)
        if cls is None:
            continue
        task = task_names(world)[0]
        env = cls(task=task, obs_type="state")
        env.reset(seed=0)
        e, r, ratio = physics_ratio(env, args.steps, args.rounds)
        print(f"{world:<11}{'physics steps/s':<16}{e:>12.0f}{r:>12.0f}{ratio:>8.3f}  >= 0.85", flush=True)
        env.close()
        for size in (128, 224):
            env = cls(task=task, image_size=(size, size))
            env.reset(seed=0)
            e, r, ratio = render_ratio(env, args.frames, args.rounds)
            print(
                f"{world:<11}{f'render {size} fps':<16}{e:>12.1f}{r:>12.1f}{ratio:>8.3f}  >= 0.9", flush=True
            )
            env.close()


if __name__ == "__main__":
    main()
