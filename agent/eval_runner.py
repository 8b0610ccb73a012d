"""Running evaluation episodes: one env per worker process, an exception is a failed episode, never a crash.

`EpisodeRunner.run(job)` plays one seeded episode with the agent loop and returns its flat
record (see agent.eval_metrics); `run_jobs` spreads jobs over worker processes (forkserver or
spawn context, one env and one planner per worker) and hands each record to a callback as soon
as it is finished, so the caller can write results incrementally.

Set-up is not an episode: a worker builds its planner (loads its model) once, in its initializer;
if that fails, every job sent to it raises `WorkerSetupError` and the run stops with that message
(see agent.workers), so a checkpoint that cannot be loaded is never scored as failed episodes.
Workers end when the parent process dies.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.workers import WorkerSetupError, exit_with_parent, parent_watch, setup_error

MAX_WORKER_RETRIES = 1  # a job whose worker process died is run once more, then recorded as an exception


@dataclass(frozen=True)
class Job:
    """One evaluation episode: which task and split, its index among the task's episodes, its seed."""

    split: str
    task: str
    episode: int
    seed: int
    video: bool  # record a video of this episode

    @property
    def video_rel(self) -> str:
        """LeRobot's layout: videos/<group>_<task>/eval_episode_<n>.mp4 (the group is the split)."""
        return f"videos/{self.split}_{self.task}/eval_episode_{self.episode}.mp4"


def empty_record(job: Job) -> dict[str, Any]:
    """The record of an episode before it ran: a failure with no steps (filled in by the runner)."""
    return {
        "split": job.split, "task": job.task, "episode": job.episode, "seed": job.seed,
        "instruction": None, "success": False, "failure": None, "reason": None,
        "n_steps": 0, "plan_length": 0, "oracle_plan_length": None, "n_replans": 0,
        "n_parse_errors": 0, "n_invalid_references": 0, "n_skill_failures": 0, "n_planner_calls": 0,
        "ended_by": None, "control_steps": 0, "step_budget": 0, "sum_reward": 0.0, "max_reward": 0.0,
        "video_path": None, "poster_path": None, "traceback": None, "wall_s": 0.0, "steps": [],
    }


def exception_record(job: Job, exc: BaseException, tb: str, wall_s: float = 0.0) -> dict[str, Any]:
    """A failed record of kind `exception` keeping the traceback."""
    rec = empty_record(job)
    rec.update(failure="exception", reason=f"{type(exc).__name__}: {exc}"[:500], traceback=tb, wall_s=wall_s)
    return rec


class EpisodeRunner:
    """Holds one planner and one env (rebuilt when the task or split changes) and plays jobs on them.

    `planner`: one already built from `settings` (the parent's, checked before the run), else it is
    built at the first job; a failure to build it is raised, never recorded as an episode.
    """

    def __init__(self, settings: dict[str, Any], out_dir: str | Path, planner: Any = None) -> None:
        self.settings = settings
        self.out_dir = Path(out_dir)
        self.env: Any = None
        self.env_key: tuple[str, str] | None = None
        self.planner: Any = planner
        if planner is not None:
            set_torch_threads(settings.get("torch_threads", 1))  # as when the runner builds it

    def _env_for(self, task: str, split: str) -> Any:
        from agent.eval_agent import build_state_options
        from envs import make_env

        if self.env_key != (task, split):
            self.close()
            blank = self.settings.get("planner_options", {}).get("blank_frames", False)  # blank for perception too
            kw = build_state_options(self.settings).env_kwargs(self.settings["env"], split, blank)
            if self.settings.get("image_size"):
                kw["image_size"] = tuple(self.settings["image_size"])
            self.env = make_env(self.settings["env"], task, **kw)
            self.env_key = (task, split)
        return self.env

    def _planner(self) -> Any:
        """The planner, built once (a model planner loads its checkpoint here); set-up errors propagate."""
        if self.planner is None:
            from agent.eval_agent import build_planner

            self.planner = build_planner(self.settings)
            set_torch_threads(self.settings.get("torch_threads", 1))  # after a model planner has loaded torch
        return self.planner

    def close(self) -> None:
        """Close the env (after an exception the env's state is not trusted, so it is rebuilt)."""
        if self.env is not None:
            self.env.close()
        self.env, self.env_key = None, None

    def run(self, job: Job) -> dict[str, Any]:
        """Play one episode; any exception in it (a Rust library's panic, pyo3's PanicException, included)
        becomes a failed record with its traceback.

        Building the planner is set-up, not the episode: its errors are raised (once per runner).
        """
        from agent.eval_agent import play_episode

        planner = self._planner()
        t0 = time.perf_counter()
        try:
            env = self._env_for(job.task, job.split)
            rec = empty_record(job)
            video = self.out_dir / job.video_rel if job.video else None
            rec.update(play_episode(planner, env, job.seed, video, self.settings))
            if video is not None and video.exists():
                rec["video_path"] = job.video_rel
                poster = video.with_suffix(".jpg")
                rec["poster_path"] = str(Path(job.video_rel).with_suffix(".jpg")) if poster.exists() else None
        except BaseException as exc:  # an episode must never abort the run; a Rust panic is a BaseException
            if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
                raise  # KeyboardInterrupt, SystemExit: the run's business
            self.close()
            rec = exception_record(job, exc, traceback.format_exc())
        rec["wall_s"] = time.perf_counter() - t0
        return rec


# ---- worker processes --------------------------------------------------------------------------
_RUNNER: EpisodeRunner | None = None
_SETUP_ERROR: WorkerSetupError | None = None


def _init_worker(settings: dict[str, Any], out_dir: str, parent: Any = None) -> None:
    """Worker start: end with the parent; Ctrl-C is the parent's business; build the planner (load the model) once.

    A set-up failure is kept and raised by every job (the parent stops the run with its message).
    """
    global _RUNNER, _SETUP_ERROR
    exit_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _RUNNER = EpisodeRunner(settings, out_dir)
    try:
        _RUNNER._planner()
    except Exception as exc:  # noqa: BLE001 - reported to the parent by the first job
        _SETUP_ERROR = setup_error(exc)


def _run_in_worker(job: Job) -> dict[str, Any]:
    if _SETUP_ERROR is not None:
        raise _SETUP_ERROR
    assert _RUNNER is not None, "worker not initialised"
    return _RUNNER.run(job)


def set_torch_threads(n: int) -> None:
    """Fix torch's intra-op threads if torch is in use (results then do not depend on the core count)."""
    torch = sys.modules.get("torch")
    if n > 0 and torch is not None:
        torch.set_num_threads(n)


def mp_context(world: str, planner: str = "oracle") -> mp.context.BaseContext:
    """forkserver where available (fast worker start, no inherited PyBullet/torch state), else spawn."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    from envs import WORLDS

    ctx = mp.get_context("forkserver")
    # Modules imported once in the server and inherited by every worker it forks (torch and
    # transformers too for model planners: importing them costs seconds per worker otherwise).
    world_modules = [WORLDS[world][1].split(":")[0], WORLDS[world][2], f"policies.{world}"] if world in WORLDS else []
    model_modules = ["agent.model"] if uses_model(planner) else []
    ctx.set_forkserver_preload(["agent.eval_runner", "agent.eval_agent", *world_modules, *model_modules])
    return ctx


def uses_model(planner: str) -> bool:
    """Whether a planner runs the PalmE model (and so needs torch and transformers)."""
    from agent.planners import PLANNERS, PalmEPlanner

    return planner in PLANNERS and issubclass(PLANNERS[planner], PalmEPlanner)


def run_jobs(
    jobs: Sequence[Job],
    settings: dict[str, Any],
    out_dir: str | Path,
    workers: int,
    on_result: Callable[[dict[str, Any]], None],
    planner: Any = None,
) -> None:
    """Run every job (in this process when workers <= 1), calling `on_result` with each finished record.

    `planner`: the caller's planner built from `settings`, used when running in this process (so a
    model is not loaded twice). KeyboardInterrupt propagates to the caller after the worker processes
    are stopped; so does a WorkerSetupError (a worker could not build its planner).
    """
    if workers <= 1:
        runner = EpisodeRunner(settings, out_dir, planner=planner)
        try:
            for job in jobs:
                on_result(runner.run(job))
        finally:
            runner.close()
        return
    pending = list(jobs)
    tries: dict[Job, int] = {}
    barren = 0  # pools in a row that broke before finishing any episode
    while pending:
        pending, finished = _run_pool(pending, settings, str(out_dir), workers, on_result, tries)
        barren = 0 if finished else barren + 1
        if pending and barren >= 2:
            raise RuntimeError("worker processes die before finishing any episode (see their stderr above)")


def _run_pool(
    jobs: list[Job],
    settings: dict[str, Any],
    out_dir: str,
    workers: int,
    on_result: Callable[[dict[str, Any]], None],
    tries: dict[Job, int],
) -> tuple[list[Job], int]:
    """One executor's life: keeps `2 * workers` jobs in flight; returns (jobs to rerun if a worker died, episodes finished)."""
    queue = list(reversed(jobs))
    finished = 0
    executor = ProcessPoolExecutor(workers, mp_context(settings["env"], settings["planner"]), initializer=_init_worker,
                                   initargs=(settings, out_dir, parent_watch()))
    in_flight: dict[Future, Job] = {}
    try:
        while queue or in_flight:
            while queue and len(in_flight) < 2 * workers:
                job = queue.pop()
                in_flight[executor.submit(_run_in_worker, job)] = job
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in done:
                job = in_flight.pop(fut)
                try:
                    rec = fut.result()
                except BrokenProcessPool as exc:
                    # Which in-flight job killed the worker is unknown: each is rerun once, then recorded.
                    rerun = _after_crash([job, *in_flight.values()], exc, tries, on_result)
                    return rerun + list(reversed(queue)), finished
                on_result(rec)
                finished += 1
        return [], finished
    except BaseException:
        _stop(executor)
        raise
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def _after_crash(
    jobs: Iterable[Job], exc: BaseException, tries: dict[Job, int], on_result: Callable[[dict[str, Any]], None]
) -> list[Job]:
    rerun = []
    for job in jobs:
        tries[job] = tries.get(job, 0) + 1
        if tries[job] > MAX_WORKER_RETRIES:
            on_result(exception_record(job, exc, f"worker process died while running this episode: {exc!r}"))
        else:
            rerun.append(job)
    return rerun


def _stop(executor: ProcessPoolExecutor) -> None:
    """Terminate the worker processes now (they ignore SIGINT and would finish their episode first)."""
    for proc in list((getattr(executor, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()
