"""`palme-collect`: demonstration logs from the oracle planner and scripted skills, in parallel workers.

    palme-collect env=pickplace task=stack episodes=1000 workers=2 out=data/stack
    palme-collect env=pickplace task=stack episodes=200 planner=palme checkpoint=CKPT keep_failures=true \
        image_size=[64,64] out=data/stack_dagger      # the model acts, the oracle labels every step (DAgger)

With `planner=palme` a trained model chooses the steps and the oracle's step from the same state is
logged beside each one (`plan_steps[i].label`): the training examples then teach the oracle's
choice in the states the model itself reaches, after its own mistakes included (DAgger, Ross et
al. 2011). Keep failures: those episodes hold the corrections.

Each worker process owns one env and runs the agent loop (`agent.loop.Agent` + `OraclePlanner`)
with an `EpisodeRecorder`, then PNG-encodes the episode. The parent is the only writer: it appends
each finished episode to the LeRobot v3.0 folder as soon as it arrives, so a killed run keeps every
episode it finished, and re-running into the same folder skips the (task, seed) pairs already there.

Why worker processes and not gymnasium's AsyncVectorEnv: an episode here is a skill loop of
hundreds of control steps with planner decisions in between, and its length differs per seed;
a vector env steps all envs in lockstep, one action each, which would need the whole agent loop
turned inside out. A process pool (forkserver context: PyBullet clients must not be forked from a
parent that already touched them) gives each worker a whole episode at a time.

Set-up is checked in the parent before the first episode: the task, the block set (push only), the seeds
(both ends of the seeds the run may try inside the split's range), the env (built once, before `out` is made),
the `out` folder (writable; new, empty or a dataset, never a folder of other files:
training.recorder.check_dataset_folder) and, with `planner=palme`, the model (loaded once with the loader,
whose message stops the run). A worker that still cannot set itself up stops the run with its message
(exit 2), and workers end when the parent dies (agent.workers).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from agent.planners import PlannerOptions, planner_from_options
from agent.state_options import StateOptions
from agent.workers import exit_with_parent, parent_watch, setup_error
from envs.tasks.base import SPLITS, check_seeds, seed_range
from training.recorder import (
    ROBOT_TYPES,
    check_dataset_folder,
    dataset_features,
    open_dataset_writer,
    palme_block,
)

__all__ = ["ROBOT_TYPES", "CollectConfig", "collect", "dataset_features", "dataset_palme_block", "main"]

_WORKER: dict[str, Any] = {}  # per-process env, agent and recorder (set by _init_worker)
COLLECT_PLANNERS = ("oracle", "palme")


@dataclass
class CollectConfig(StateOptions, PlannerOptions):
    """Schema of `palme-collect` (unknown keys fail at start).

    The planner keys (checkpoint, mode, constrained, check_done, max_new_tokens, max_plan_tokens,
    device, planner_seed, blank_frames) are agent.planners.PlannerOptions', the state keys (state,
    state_noise_m, skills_use) agent.state_options.StateOptions', both shared with palme-run and palme-eval;
    the planner keys shape the acting model with planner=palme. `blank_frames=true` blanks the camera for the
    model and for perception (the envs' `blank_perception`: state=estimated and skills_use=estimated see no
    objects); the recorded frames stay as rendered.
    """

    planner: str = "oracle"  # who acts: oracle (demonstrations) | palme (a model; the oracle labels each step: DAgger)
    env: str = "pickplace"  # world: pickplace | push
    task: str = "stack"  # task of the world
    episodes: int = 100  # episodes to add to the folder (successful ones, unless keep_failures)
    workers: int = 2  # worker processes, one env each
    out: str = "data/${task}"  # dataset folder (LeRobot v3.0 layout); appended to when it exists
    split: str = "train"  # seed range: train seeds [0, 1e6) or held-out test seeds [1e6, 2e6) for L1-L4
    seed_start: int | None = None  # first seed tried; None: the start of the split's range
    max_attempts: int | None = None  # seeds tried at most; None: 3x episodes
    fps: int = 2  # recorded frames per second of simulated time (plus every plan step's start)
    image_size: list[int] | None = None  # camera (H, W); None: the world's default
    keep_failures: bool = False  # also keep episodes whose task failed (labelled success=false)
    progress: bool = True  # tqdm progress bar (episodes/s, success ratio)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}; expected one of {list(SPLITS)}")
        if self.fps < 1:
            raise ValueError(f"fps must be >= 1, got {self.fps}")
        if self.image_size is not None and len(self.image_size) != 2:
            raise ValueError(f"image_size must be [height, width], got {self.image_size}")
        if self.planner not in COLLECT_PLANNERS:
            raise ValueError(f"planner must be one of {list(COLLECT_PLANNERS)}, got {self.planner!r}")
        if self.checkpoint is not None and self.planner != "palme":
            raise ValueError(f"checkpoint is for planner=palme; planner={self.planner!r} takes none")


def register_configs() -> None:
    """Put the schema into hydra's ConfigStore (configs/collect.yaml builds on it)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="collect_schema", node=CollectConfig)


def _env_kwargs(cfg: CollectConfig) -> dict[str, Any]:
    # block_set: only env=push takes one (ValueError otherwise); blank_frames blanks perception's camera too
    kw = cfg.env_kwargs(cfg.env, cfg.split, cfg.blank_frames)
    if cfg.image_size is not None:
        kw["image_size"] = tuple(cfg.image_size)
    return kw


def _make_planner(cfg: CollectConfig) -> Any:
    """The acting planner (planner=palme loads the model: a checkpoint the loader refuses raises its ValueError)."""
    return planner_from_options(cfg.planner, cfg.planner_options())


def _init_worker(cfg: CollectConfig, parent: Any = None) -> None:
    """Build this process's env, recorder and agent once (ending with the parent); a failure is raised by every job."""
    exit_with_parent(parent)
    try:
        _set_up_worker(cfg)
    except Exception as exc:  # noqa: BLE001 - reported to the parent by the first job
        _WORKER["setup_error"] = setup_error(exc)


def _set_up_worker(cfg: CollectConfig) -> None:
    from agent.loop import Agent
    from envs import make_env
    from training.recorder import EpisodeRecorder

    env = make_env(cfg.env, cfg.task, **_env_kwargs(cfg))
    if cfg.planner != "oracle":
        import torch

        torch.set_num_threads(1)  # one worker per core
    planner = _make_planner(cfg)
    recorder = EpisodeRecorder(env, cfg.fps, label_steps=cfg.planner != "oracle")
    agent = Agent(planner, executor=cfg.executor(), render=True, **recorder.hooks())
    _WORKER.update(cfg=cfg, env=env, recorder=recorder, agent=agent)
    _WORKER["features"] = dataset_features(env)


def _run_episode(seed: int) -> tuple[int, bool, Any, str]:
    """One episode in a worker: (seed, success, encoded episode or None when dropped, failure reason)."""
    from training.dataset.episode import encode_episode

    if "setup_error" in _WORKER:
        raise _WORKER["setup_error"]
    cfg, recorder = _WORKER["cfg"], _WORKER["recorder"]
    recorder.reset()
    trace = _WORKER["agent"].episode(_WORKER["env"], seed=seed)
    ok = bool(trace.success)
    if not ok and not cfg.keep_failures:
        return seed, False, None, f"{trace.failure}: {trace.reason}"
    enc = encode_episode(recorder.finish(trace, cfg.split), _WORKER["features"])
    return seed, ok, enc, "" if ok else f"{trace.failure}: {trace.reason}"


def dataset_palme_block(cfg: CollectConfig, env: Any) -> dict[str, Any]:
    """Our own info.json keys for this run (training.recorder.palme_block): world, tasks, seed ranges, camera, ..."""
    return palme_block(env, cfg.task, cfg.fps, cfg.split, cfg.keep_failures, cfg.planner)


def collect(cfg: CollectConfig, log: Any = print) -> dict[str, Any]:
    """Run the collection; returns a summary (episodes written, attempts, episodes/min, MB/episode).

    Raises ValueError before the first episode for a set-up error (see the module docstring), and
    WorkerSetupError (a ValueError) when a worker cannot set itself up.
    """
    from tqdm import tqdm

    from envs import load_world, make_env
    from envs.tasks.base import task_names

    load_world(cfg.env)
    if cfg.task not in task_names(cfg.env):
        raise ValueError(f"unknown task {cfg.task!r} for env {cfg.env!r}; known tasks: {task_names(cfg.env)}")
    env_kw = _env_kwargs(cfg)  # a block set the world or the split cannot take stops the run before `out` is made
    lo, hi = seed_range(cfg.split)
    first = lo if cfg.seed_start is None else cfg.seed_start
    max_attempts = cfg.max_attempts or 3 * cfg.episodes
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1 or None (3x episodes), got {cfg.max_attempts}")
    # Both ends of the seeds the run may try (more when seeds already in `out` are skipped; then the range's end stops it).
    check_seeds(cfg.split, first, max_attempts, given=f"seed_start={first} with max_attempts={max_attempts}")
    probe = make_env(cfg.env, cfg.task, **env_kw)  # an env refused (a task its block set cannot draw): `out` is not made
    try:
        check_dataset_folder(cfg.out, "out folder")  # writable; new, empty or a dataset (never a folder of other files)
        if cfg.planner != "oracle":
            _make_planner(cfg)  # the model loads here once, so a broken checkpoint stops the run before any worker starts
        # the folder's lock, its checks (or a new dataset), this run's features and info.json keys
        writer = open_dataset_writer(cfg.out, probe, cfg.task, cfg.fps, cfg.split, cfg.keep_failures, cfg.planner)
    finally:
        probe.close()
    seeds = (s for s in range(first, hi) if not writer.has(cfg.task, s))
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.episodes, unit="ep", disable=not cfg.progress, dynamic_ncols=True)
    try:
        with ProcessPoolExecutor(cfg.workers, mp_context=get_context("forkserver"), initializer=_init_worker,
                                 initargs=(cfg, parent_watch())) as pool:
            pending: set[Future] = set()
            try:
                written, tried, succeeded = _drive(cfg, pool, pending, writer, seeds, bar, log, max_attempts, t0)
            except KeyboardInterrupt:  # keep what is written; running episodes are dropped
                for fut in pending:
                    fut.cancel()
                log(f"interrupted: {writer.total_episodes} episodes in {cfg.out}")
                raise
    finally:
        bar.close()
        writer.close()
    wall = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in Path(cfg.out).rglob("*.parquet")) / 2**20
    total = int(writer.info["total_episodes"])
    summary = {  # successes: episodes whose task the acting planner (oracle or model) completed
        "out": cfg.out, "written": written, "attempts": tried, "successes": succeeded,
        "success_ratio": succeeded / max(tried, 1), "wall_s": round(wall, 1),
        "episodes_per_min": round(60 * written / max(wall, 1e-9), 2), "total_episodes": total,
        "mb_per_episode": round(size / max(total, 1), 3),
    }
    if written < cfg.episodes:
        log(f"warning: only {written} of {cfg.episodes} episodes after {tried} attempts (max_attempts)")
    log(" ".join(f"{k}={v}" for k, v in summary.items()))
    return summary


def _drive(cfg, pool, pending, writer, seeds, bar, log, max_attempts, t0) -> tuple[int, int, int]:
    """Keep 2 episodes per worker in flight; write each finished one at once. Returns (written, tried, succeeded)."""
    written = tried = succeeded = 0
    while True:
        while len(pending) < 2 * cfg.workers and written + len(pending) < cfg.episodes and tried < max_attempts:
            seed = next(seeds, None)
            if seed is None:  # the split's seed range is used up (seeds already in `out` are skipped)
                max_attempts = tried
                break
            pending.add(pool.submit(_run_episode, seed))
            tried += 1
        if not pending:
            return written, tried, succeeded
        done, still = wait(pending, return_when=FIRST_COMPLETED)
        pending.clear()
        pending.update(still)
        for fut in done:
            seed, ok, enc, why = fut.result()
            succeeded += ok
            if enc is not None and written < cfg.episodes and writer.add(enc) is not None:
                written += 1
                bar.update(1)
            elif not ok and not cfg.progress:
                log(f"seed {seed}: dropped ({why})")
            done_n = tried - len(pending)
            rate = done_n / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix_str(f"{rate:.2f} ep/s, success {succeeded}/{done_n}")


def main() -> None:
    """Console entry point (hydra)."""
    import hydra
    from omegaconf import OmegaConf

    register_configs()

    from agent.cli.common import run_cli, user_errors

    @hydra.main(config_path="pkg://configs", config_name="collect", version_base="1.3")
    @user_errors("palme-collect")
    def _app(dcfg) -> None:
        cfg = OmegaConf.to_object(dcfg)  # typed: a wrong type or a bad value names its key
        assert isinstance(cfg, CollectConfig)
        try:
            collect(cfg)
        except KeyboardInterrupt:  # Ctrl-C: every finished episode is already in `out` (collect said how many)
            sys.exit(130)

    run_cli("palme-collect", _app)  # user errors: one line, exit 2; bugs keep their traceback


if __name__ == "__main__":
    main()
