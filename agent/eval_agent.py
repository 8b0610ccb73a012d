"""The evaluation's use of the agent loop: build the planner once per worker, play one seeded episode, flatten its trace.

Per-episode determinism: a planner that draws random numbers (`rng` attribute, e.g. the random
baseline) gets a generator seeded from (its seed, the episode's seed) before every episode, so
an episode's outcome does not depend on which worker ran it or what ran before.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np

from agent.loop import DEFAULT_MAX_CONSECUTIVE_FAILURES, Agent, EpisodeTrace, StepRecord, StepStart
from agent.planners import Planner, PlannerOptions, planner_from_options
from agent.state_options import StateOptions
from envs.video import VideoRecorder, caption

FINAL_FRAMES_S = 1.0  # the last frame, captioned with the verdict, is held this long in a video


def build_planner(settings: dict[str, Any]) -> Planner:
    """The planner of a run (a model planner loads its checkpoint here, once per worker)."""
    return planner_from_options(settings["planner"], PlannerOptions(**settings["planner_options"]))


def build_state_options(settings: dict[str, Any]) -> StateOptions:
    """The run's state keys (env state source, skill executor) from worker settings; the defaults when they carry none."""
    return StateOptions(**settings.get("state_options", {}))


def play_episode(
    planner: Planner, env: Any, seed: int, video: Path | None, settings: dict[str, Any]
) -> dict[str, Any]:
    """One episode of the agent on `env` from `seed`; returns the record fields (see agent.eval_metrics)."""
    u = env.unwrapped
    if isinstance(getattr(planner, "rng", None), np.random.Generator):
        planner.rng = np.random.default_rng([settings["planner_options"]["planner_seed"], seed])
    recorder: VideoRecorder | None = None
    rewards: list[float] = []

    def on_start(s: StepStart) -> None:
        if recorder is not None:
            recorder.text = f"{s.index + 1}. {s.text}"[:80]
            recorder.capture()

    def on_end(rec: StepRecord) -> None:
        if not (rec.call and rec.call.get("skill") == "done"):
            rewards.append(float(u.is_success))  # per executed step: 1 while the goal holds

    agent = Agent(
        planner, executor=build_state_options(settings).executor(), max_steps=settings.get("max_steps"),
        on_step_start=on_start, on_step_end=on_end,
        max_consecutive_failures=settings.get("max_consecutive_failures", DEFAULT_MAX_CONSECUTIVE_FAILURES),
    )
    if video is not None:
        recorder = VideoRecorder(u, fps=settings.get("video_fps"))
    try:
        trace = agent.episode(env, seed=seed)
        if recorder is not None:
            _save_video(recorder, trace, video)
    finally:
        if recorder is not None:
            recorder.detach()
    return trace_fields(trace, rewards)


def _save_video(recorder: VideoRecorder, trace: EpisodeTrace, path: Path) -> None:
    """Write the episode's mp4 (ending on the verdict) and its first frame as the report's poster."""
    verdict = "success" if trace.success else f"failed: {trace.failure}"
    last = caption(recorder.frame(), verdict)  # the same size as the recorded frames
    recorder.frames.extend([last] * max(1, round(FINAL_FRAMES_S * recorder.fps)))
    recorder.save(path)
    imageio.imwrite(path.with_suffix(".jpg"), recorder.frames[0], quality=85)


def trace_fields(trace: EpisodeTrace, rewards: list[float]) -> dict[str, Any]:
    """The flat per-episode record fields from an EpisodeTrace."""
    steps = trace.steps
    planned = [s for s in steps if not (s.call and s.call.get("skill") == "done")]
    return {
        "instruction": trace.instruction,
        "success": bool(trace.success),
        "failure": trace.failure,
        "reason": trace.reason,
        "ended_by": trace.ended_by,
        "n_steps": len(steps),
        "plan_length": len(planned),  # steps the planner wrote, without the final `done` (the oracle's plan has none)
        "oracle_plan_length": trace.oracle_plan_length,
        "n_replans": trace.n_replans,
        "n_parse_errors": sum(s.failure == "parse_error" for s in steps),
        "n_invalid_references": sum(s.failure == "invalid_reference" for s in steps),
        "n_skill_failures": sum(s.failure == "skill_failure" for s in steps),
        "n_planner_calls": len(steps),
        "sum_reward": float(sum(rewards)),
        "max_reward": float(max(rewards, default=0.0)),
        "control_steps": trace.control_steps,
        "step_budget": trace.step_budget,
        "traceback": trace.traceback,
        "steps": [_step_dict(s) for s in steps],
    }


def _step_dict(s: StepRecord) -> dict[str, Any]:
    d = asdict(s)
    d.pop("prompt", None)  # the prompt is rebuilt from the history; keeping it would bloat the traces
    return d
