"""The Python API in four calls: an env, a planner, one episode, an evaluation.

    from agent.api import evaluate, make_env, make_planner, run_episode

    env = make_env("pickplace", "stack", split="L1")
    trace = run_episode(env, make_planner("oracle"), seed=3)     # an EpisodeTrace
    info = evaluate("oracle", world="pickplace", tasks=["grasp"], episodes=2, split="L1")

Each call wraps what the CLIs run (envs.make_env, agent.planners.planner_from_options,
agent.loop.Agent.episode, agent.evaluate.evaluate), with the same names, keys and defaults as
palme-run / palme-eval; errors are the same one-line ValueErrors (an unknown name lists the known ones).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from agent.loop import DEFAULT_MAX_CONSECUTIVE_FAILURES, Agent, EpisodeTrace
from agent.planners import Planner, PlannerOptions, planner_from_options
from policies.base import skill_executor

__all__ = ["EpisodeTrace", "evaluate", "make_env", "make_planner", "run_episode"]


def make_env(world: str = "pickplace", task: str = "stack", split: str = "train", seed: int | None = None,
             block_set: str | None = None, **kwargs: Any) -> Any:
    """A gymnasium env of `world` (`pickplace`, `push`) running `task`, drawing scenes from `split`.

    `split`: train | L1 | L2 | L3 | L4. `seed`: when given, the env is reset with it (ready for
    `Agent.run`); `run_episode` resets it anyway. `block_set` (push only): N_CHOOSE_K | BLOCK_4 | BLOCK_8
    (Language-Table's fixed sets; not with L2, L3); None: the split decides. Other kwargs go to the env
    (`image_size=(H, W)`, `obs_type="state"`, `render_mode=None`, `state="estimated"`, `state_noise_m=0.01`:
    envs.state_sources; `blank_perception=True`: perception's camera is blank, what palme-eval's `blank_frames`
    adds to the model's blank frame). Raises ValueError for an unknown world, task, split, state source or
    block set (listing the known ones), and for a block set with a world that has none or a split it does not fit.
    """
    from envs import block_set_kwargs
    from envs import make_env as _make_env

    env = _make_env(world, task, split=split, **block_set_kwargs(world, block_set, split), **kwargs)
    if seed is not None:
        env.reset(seed=seed)
    return env


def make_planner(name: str = "palme", checkpoint: str | Path | None = None, **options: Any) -> Planner:
    """A planner by name (`palme`, `oracle`, `text_only`, `random`), built as palme-run builds it.

    `checkpoint`: the model folder of `palme` / `text_only` (None: the shipped checkpoints/palme-tiny).
    `options`: the other planner keys of the CLIs (agent.planners.PlannerOptions: `mode`, `constrained`,
    `check_done`, `max_new_tokens`, `max_plan_tokens`, `device`, `planner_seed`, `blank_frames`: the model's
    frame only; give the env `blank_perception=True` to blank perception's too). Raises ValueError for an
    unknown name, an unknown or bad option, or a checkpoint the loader refuses.
    """
    known = {f for f in PlannerOptions.__dataclass_fields__ if f != "checkpoint"}
    bad = sorted(set(options) - known)
    if bad:
        raise ValueError(f"unknown planner option(s) {bad}; known options: ['checkpoint', {str(sorted(known))[1:]}")
    ckpt = str(checkpoint) if checkpoint is not None else None
    return planner_from_options(name, PlannerOptions(checkpoint=ckpt, **options))


def run_episode(env: Any, planner: Planner | str, seed: int | None = None, instruction: str | None = None,
                max_steps: int | None = None,
                max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
                skills_use: str = "privileged") -> EpisodeTrace:
    """Reset `env` with `seed` (and `instruction`, if given) and run `planner` in closed loop until it says
    `done`, runs out of steps (`max_steps`; None: 2x the oracle plan + 2) or fails too often in a row.

    `planner`: a Planner or a name for `make_planner`. `skills_use`: what the skills act on, privileged (the
    simulator's poses) or estimated (the camera's estimate: policies.estimated). Returns the EpisodeTrace
    (`success`, `failure`, `steps`, `to_json()`); an exception inside the loop ends the episode as a failure,
    it is not raised.
    Raises ValueError for an instruction the env refuses, bad limits or an unknown `skills_use`.
    """
    executor = skill_executor(skills_use)
    if isinstance(planner, str):
        planner = make_planner(planner)
    agent = Agent(planner, executor=executor, max_steps=max_steps, max_consecutive_failures=max_consecutive_failures)
    return agent.episode(env, seed=seed, instruction=instruction)


def evaluate(planner: str = "palme", world: str = "pickplace", tasks: list[str] | None = None, episodes: int = 50,
             split: str = "L1", out_dir: str | Path | None = None, workers: int = 1, videos_per_task: int = 0,
             **options: Any) -> dict[str, Any]:
    """Success rates as palme-eval measures them (same seeds: evaluation seeds of each split); returns eval_info.

    `planner`: a planner name (each worker builds its own); `tasks`: None for every task of `world`;
    `split`: L1 | L2 | L3 | L4 | all. `out_dir`: where eval_info.json, episodes.jsonl and report.html
    go (None: a temporary folder, deleted afterwards). `options`: other palme-eval keys (`checkpoint`,
    `seed_offset`, `max_steps`, `image_size`, `state`, `skills_use`, `block_set` (push only), ... see
    agent.evaluate.EvalConfig). The dict holds `overall` (pc_success, ci95, n_episodes, failures, ...),
    `per_task`, `per_group`, `config`. Raises ValueError before any episode for bad names, numbers, seeds, a
    block set the world or a split cannot take, or a checkpoint that cannot be loaded.
    """
    from agent.evaluate import EvalConfig
    from agent.evaluate import evaluate as _evaluate

    cfg = EvalConfig(planner=planner, env=world, tasks=list(tasks or []), split=split, episodes=episodes,
                     workers=workers, videos_per_task=videos_per_task, progress=False, **options)
    if out_dir is not None:
        return _evaluate(cfg, out_dir)
    with tempfile.TemporaryDirectory(prefix="palme-eval-") as tmp:
        return _evaluate(cfg, Path(tmp) / "run")
