"""`EpisodeRecorder`: hooks into the agent loop and records frames at a fixed rate plus every plan step's start.

Rendering is the main cost of collection, so frames are taken only on the fixed grid
(`t % every == 0`, `every = control_hz / fps`), at each plan step's start (the frame the planner
decides on, which the agent renders anyway) and at the end. Each frame's action is the next
control action applied after it (LeRobot's convention: observation, then the action taken from it).
Timestamps are simulated time (t / control_hz), so step-start frames between grid points keep
their true time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.loop import EpisodeTrace, StepRecord, StepStart
from envs.vocab import render_plan, render_step
from training.dataset.episode import EpisodeData, Frame, PlanStep


class EpisodeRecorder:
    """Collects one episode's frames and plan; pass its hooks to `agent.loop.Agent`."""

    def __init__(self, env: Any, fps: int, label_steps: bool = False) -> None:
        self.u = env.unwrapped
        self.label_steps = label_steps  # log the oracle's step at every decision (another planner acts: DAgger)
        self.labels: dict[int, str] = {}
        if fps < 1 or fps > self.u.control_hz:
            raise ValueError(f"fps must be in [1, {self.u.control_hz}] (the control rate), got {fps}")
        self.every = max(1, round(self.u.control_hz / fps))
        self.frames: list[Frame] = []
        self.plans: list[tuple[int, list[str]]] = []
        self._last_failed = False

    def reset(self) -> None:
        """Forget the previous episode."""
        self.frames, self.plans, self._last_failed, self.labels = [], [], False, {}

    # ---- agent hooks ----------------------------------------------------------------------
    def on_control(self, env: Any) -> None:
        """After every control step: give the previous frame its action; record on the fps grid."""
        u = self.u
        if self.frames and self.frames[-1].action is None and self.frames[-1].t == u.t - 1:
            self.frames[-1].action = np.asarray(u.last_action, np.float32).copy()
        if u.t % self.every == 0:
            self.capture()

    def on_step_start(self, s: StepStart) -> None:
        """The planner's decision frame is always recorded; the oracle's plan is logged at the start and after failures."""
        self.capture(s.obs if "rgb" in s.obs else None)
        if (s.index == 0 or self._last_failed) and self.u.goal is not None:
            plan = render_plan(self.u.task.oracle_plan(self.u, self.u.goal), self.u.names)
            self.plans.append((self.u.t, [*plan, "done"]))
        if self.label_steps:
            self.labels[s.index] = self.oracle_step()

    def oracle_step(self) -> str:
        """The oracle's next step from the current state ("" when there is no goal or the oracle cannot plan)."""
        u = self.u
        if u.goal is None:
            return ""
        try:
            plan = u.task.oracle_plan(u, u.goal)
        except Exception:  # noqa: BLE001 - a state the oracle cannot plan from gives no label, not a lost episode
            return ""
        return render_step(plan[0], u.names) if plan else "done"

    def on_step_end(self, r: StepRecord) -> None:
        self._last_failed = not r.success

    def hooks(self) -> dict[str, Any]:
        """Keyword arguments for `Agent(...)`."""
        return {"on_control": self.on_control, "on_step_start": self.on_step_start, "on_step_end": self.on_step_end}

    # ---- frames ---------------------------------------------------------------------------
    def capture(self, obs: dict[str, Any] | None = None) -> None:
        """Record the current state (once per control step)."""
        u = self.u
        if self.frames and self.frames[-1].t == u.t:
            return
        obs = obs if obs is not None else u.observe(render=True)
        self.frames.append(Frame(
            t=int(u.t), rgb=np.asarray(obs["rgb"], np.uint8), robot=np.asarray(obs["robot"], np.float32).copy(),
            objects=np.asarray(obs["objects"], np.float32).copy(), zones=np.asarray(obs["zones"], np.float32).copy(),
            success=bool(u.is_success),
        ))

    def finish(self, trace: EpisodeTrace, split: str) -> EpisodeData:
        """The recorded episode, with the final frame and the executed steps from the trace."""
        self.capture()
        u = self.u
        steps = [PlanStep(r.step, r.start_t, r.end_t, r.success, r.reason, r.call, self.labels.get(r.index))
                 for r in trace.steps]  # label None unless label_steps (the oracle acted)
        return EpisodeData(
            world=u.world, task=u.task_name, seed=int(trace.seed), split=split, instruction=trace.instruction,
            control_hz=u.control_hz, frames=self.frames, steps=steps, plans=self.plans,
            success=bool(trace.success), failure=trace.failure, reason=trace.reason,
            objects=[{"color": o.color, "shape": o.shape, "size": o.size} for o in u.objects],
            names=list(u.names), wall_s=trace.wall_s,
        )
