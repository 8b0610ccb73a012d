"""The closed loop: observe -> prompt -> planner.next_step -> parse -> run the skill -> record -> repeat.

Model text is untrusted: a step that does not parse, names a missing object or breaks a
precondition is recorded as a failed step with the parser's reason, and the reason goes back into
the planner's history ("failed: there is no pink cube in the scene") so it can replan, in the
spirit of Inner Monologue. Skill failures are fed back the same way. Nothing ends an episode by
raising: an exception in the planner or a skill ends it as a failure with the traceback stored.

With state=estimated or noisy a planner that is not `privileged` writes its step in the scene its rows show: the
step is parsed there and carried onto the simulator's objects (`agent.grounding.read_step`); the record's `call`
is the simulator's, `seen_call` the call as read, `step` (the history) the step in the planner's own names.

Failure taxonomy (`EpisodeTrace.failure`, set when the episode did not succeed):
- parse_error / invalid_reference / precondition / skill_failure: the episode hit the limit of
  consecutive failed steps and all of them were of that kind (steps record their own kind);
- consecutive_failures: the limit of consecutive failed steps was hit with mixed kinds;
- step_budget: the planner used all its steps (default: 2x the oracle plan length at the start + 2);
- premature_done: the planner said `done` while the goal did not hold;
- physics: the simulation blew up (an object left the table, NaN pose);
- exception: the planner or a skill raised (traceback in `EpisodeTrace.traceback`).
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from agent.grounding import read_step
from agent.parser import PlanError, SceneContext, planning_scene
from agent.planners import PlanContext, Planner
from agent.prompts import format_feedback
from envs.state_sources import naming_rows
from envs.vocab import SkillCall
from policies.base import SkillResult, run_skill

FAILURE_KINDS: tuple[str, ...] = (
    "parse_error", "invalid_reference", "precondition", "skill_failure", "consecutive_failures",
    "step_budget", "premature_done", "physics", "exception",
)
# PlanError kind -> failure kind of the step
_ERROR_TO_FAILURE = {
    "parse_error": "parse_error", "unknown_skill": "parse_error",
    "unknown_object": "invalid_reference", "ambiguous_reference": "invalid_reference",
    "precondition": "precondition",
}
DEFAULT_MAX_CONSECUTIVE_FAILURES = 3
OPEN_ENDED_STEP_BUDGET = 20  # steps for an instruction the task cannot parse (no oracle plan to size it by)
MAX_HISTORY_TEXT = 100  # a step that did not parse enters the history truncated to this many characters

Executor = Callable[[Any, SkillCall], SkillResult]


@dataclass
class StepRecord:
    """One decision of the loop: what the planner wrote, what it became, how it ended."""

    index: int  # 0-based
    text: str  # the planner's text, as written
    step: str  # the text that enters the history: canonical text of the call in the names of the scene it was read
    # against (the planner's rows' scene, see agent.grounding), or the raw text when it failed to parse
    call: dict[str, Any] | None  # the SkillCall on the simulator's objects as a dict (None when it cannot run)
    error: dict[str, str] | None  # the PlanError as a dict (kind, reason, text), when the text did not parse
    success: bool
    reason: str  # the skill's or the parser's reason
    feedback: str  # "ok" or "failed: <reason>", as it appears in the next prompt
    failure: str | None  # failure kind of this step (see FAILURE_KINDS) or None
    start_t: int  # env control step when the step started
    end_t: int  # env control step when it ended
    prompt: str | None = None  # the planning prompt text (without arrays), when the planner used one
    # the call as read against the scene the planner's rows show (their indices), when that is not the simulator's
    # scene (state=estimated, noisy; agent.grounding): `call` is it mapped onto the simulator's objects
    seen_call: dict[str, Any] | None = None


@dataclass
class StepStart:
    """Passed to `on_step_start`: the observation the planner saw and what it decided (before execution)."""

    index: int
    obs: dict[str, Any]
    text: str
    call: SkillCall | None
    error: PlanError | None
    t: int


@dataclass
class EpisodeTrace:
    """Everything about one instruction's episode; `to_json()` is what palme-run writes as trace.json."""

    instruction: str
    seed: int | None
    task: str
    world: str
    planner: str
    phrasing: str = ""  # the template the env said the goal in ("independent: ..." in L4), or "given" (user text)
    restated: str = ""  # the planner's restatement its prompts held instead of the instruction (prompt.restate)
    success: bool | None = None  # None when success is unknown (the task could not parse the instruction)
    success_known: bool = True
    failure: str | None = None  # see FAILURE_KINDS; None on success (or unknown success that ended cleanly)
    reason: str = ""
    ended_by: str = ""  # done | step_budget | consecutive_failures | physics | exception
    steps: list[StepRecord] = field(default_factory=list)
    n_replans: int = 0  # planner calls that followed a failed step
    control_steps: int = 0
    step_budget: int = 0
    oracle_plan_length: int | None = None  # at the start, when the goal is known
    wall_s: float = 0.0
    traceback: str | None = None

    @property
    def outcome(self) -> str:
        """"success", "failure" or "success unknown"."""
        return "success unknown" if self.success is None else ("success" if self.success else "failure")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; `success` is a boolean (False when unknown, with success_known False)."""
        d = asdict(self)
        d["success"] = bool(self.success)
        d["outcome"] = self.outcome
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


class Agent:
    """Runs a planner in closed loop on an env until `done`, the step budget, or too many failures in a row."""

    def __init__(
        self,
        planner: Planner,
        executor: Executor = run_skill,
        max_steps: int | None = None,
        max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        render: bool = False,
        on_step_start: Callable[[StepStart], None] | None = None,
        on_step_end: Callable[[StepRecord], None] | None = None,
        on_control: Callable[[Any], None] | None = None,
    ) -> None:
        if max_consecutive_failures < 1:
            raise ValueError(f"max_consecutive_failures must be >= 1, got {max_consecutive_failures}")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None (2x oracle plan + 2), got {max_steps}")
        self.planner = planner
        self.executor = executor
        self.max_steps = max_steps
        self.max_consecutive_failures = max_consecutive_failures
        self.render = render  # render a frame at each decision point even if the planner does not look
        self.on_step_start = on_step_start
        self.on_step_end = on_step_end
        self.on_control = on_control  # called after every control step (env.step_hooks), e.g. to log env.last_action

    def episode(self, env: Any, seed: int | None = None, instruction: str | None = None) -> EpisodeTrace:
        """Reset `env` with `seed` (and a user instruction, if given) and run the loop."""
        options = {"instruction": instruction} if instruction is not None else None
        env.reset(seed=seed, options=options)
        return self.run(env, seed=seed)

    def run(self, env: Any, seed: int | None = None) -> EpisodeTrace:
        """Run the loop on the env's current scene and instruction (no reset; `seed` is only recorded in the trace).

        Raises ValueError when `env` was never reset (use `episode(env, seed=...)`, which resets it).
        """
        u = env.unwrapped
        if getattr(u, "instance", None) is None:
            raise ValueError("env was never reset: call env.reset(seed=...) first, or use Agent.episode(env, "
                             "seed=...), which resets it and runs the loop")
        trace = EpisodeTrace(
            instruction=u.task_description, seed=seed, task=u.task_name, world=u.world,
            phrasing=str(u.instance.extras.get("template", "")),
            planner=getattr(self.planner, "name", type(self.planner).__name__),
            success_known=u.goal is not None,
        )
        start_t, t0 = u.t, time.perf_counter()
        if self.on_control is not None:
            u.step_hooks.append(self.on_control)
        try:
            trace.oracle_plan_length, trace.step_budget = self._budget(u)
            self._loop(u, trace)
        except BaseException as err:  # the planner or a skill raised: the episode fails, the run goes on
            if not isinstance(err, Exception) and type(err).__name__ != "PanicException":  # a Rust panic: caught
                raise
            trace.ended_by, trace.failure = "exception", "exception"
            trace.reason = f"{type(err).__name__}: {err}"
            trace.traceback = traceback.format_exc()
        finally:
            if self.on_control is not None and self.on_control in u.step_hooks:
                u.step_hooks.remove(self.on_control)
        self._judge(u, trace)
        trace.control_steps = u.t - start_t
        trace.wall_s = time.perf_counter() - t0
        return trace

    # ---- internals ----------------------------------------------------------------------------
    def _budget(self, u: Any) -> tuple[int | None, int]:
        """(oracle plan length at the start or None, step budget)."""
        length = None
        if u.goal is not None:
            try:
                length = len(u.task.oracle_plan(u, u.goal))
            except Exception:  # noqa: BLE001 - sizing the budget must not end the episode; fall back to the open-ended budget
                length = None
        if self.max_steps is not None:
            return length, self.max_steps
        return length, (2 * length + 2 if length is not None else OPEN_ENDED_STEP_BUDGET)

    def _loop(self, u: Any, trace: EpisodeTrace) -> None:
        planner = self.planner
        planner.reset(u, trace.instruction)
        history: list[tuple[str, str]] = []
        failed_kinds: list[str] = []  # kinds of the current run of consecutive failures
        while True:
            if u.failure is not None:
                trace.ended_by, trace.reason = "physics", u.failure
                return
            if len(trace.steps) >= trace.step_budget:
                trace.ended_by = "step_budget"
                trace.reason = f"used all {trace.step_budget} steps without finishing"
                return
            record, call = self._step(u, trace, history)
            if failed_kinds and len(trace.steps) > 0:
                trace.n_replans += 1
            trace.steps.append(record)
            history.append((record.step, record.feedback))
            if self.on_step_end is not None:
                self.on_step_end(record)
            if call is not None and call.skill == "done":
                trace.ended_by, trace.reason = "done", "the planner said done"
                return
            failed_kinds = failed_kinds + [record.failure] if record.failure else []
            if len(failed_kinds) >= self.max_consecutive_failures:
                kinds = set(failed_kinds)
                trace.ended_by = "consecutive_failures"
                trace.failure = kinds.pop() if len(kinds) == 1 else "consecutive_failures"
                trace.reason = f"{len(failed_kinds)} failed steps in a row; last: {record.feedback}"
                return

    def _step(self, u: Any, trace: EpisodeTrace, history: list[tuple[str, str]]) -> tuple[StepRecord, SkillCall | None]:
        """Observe, plan, parse, execute one step."""
        planner = self.planner
        obs = u.observe(render=self.render or planner.needs_image)
        scene = SceneContext.from_env(u)
        words = planner.words(obs, trace.instruction)
        if words != trace.instruction:
            trace.restated = words
        example = None
        if planner.prompts is not None:
            example = planner.prompts.for_obs("plan", obs, instruction=words, history=list(history))
        ctx = PlanContext(u, obs, words, list(history), scene, example, len(trace.steps),
                          seen=planning_scene(u, obs, scene))
        text = planner.next_step(ctx)
        if planner.privileged or ctx.seen is scene:  # the simulator's names (and always so with state=privileged)
            read = read_step(text, scene)
        else:  # the names and `obj j` of the scene its rows show, then onto the simulator's objects
            read = read_step(text, scene, ctx.seen, obs["objects"], u.object_rows())
        call, error = read.call, read.error
        start = u.t
        if self.on_step_start is not None:
            self.on_step_start(StepStart(len(trace.steps), obs, str(text), call, error, start))
        if error is not None:
            success, reason, failure = False, error.reason, _ERROR_TO_FAILURE[error.kind]
        elif call is not None and call.skill == "done":
            success, reason, failure = True, "done", None
        else:
            assert call is not None
            with naming_rows(u, read.named):
                result = self.executor(u, call)
            success, reason = result.success, result.reason
            failure = None if success else ("physics" if u.failure is not None else "skill_failure")
        record = StepRecord(
            index=len(trace.steps), text=str(text)[:500], step=read.step or _history_text(text),
            call=asdict(call) if call is not None else None,
            error=error.to_dict() if error is not None else None,
            success=success, reason=reason, feedback=printable(format_feedback(success, reason)), failure=failure,
            start_t=start, end_t=u.t, prompt=example.prompt if example is not None else None,
            seen_call=asdict(read.seen_call) if read.seen_call is not None else None,
        )
        return record, call

    def _judge(self, u: Any, trace: EpisodeTrace) -> None:
        """Success from the env (None when unknown) and the episode's failure kind."""
        if u.failure is not None and trace.ended_by != "exception":
            trace.ended_by, trace.failure, trace.reason = "physics", "physics", u.failure
        if trace.success_known:
            trace.success = trace.ended_by != "exception" and bool(u.is_success)
        else:
            trace.success = None
        if trace.success:
            trace.failure = None
            if trace.ended_by != "done":
                trace.reason = f"goal holds, but the episode ended by {trace.ended_by}: {trace.reason}"
            return
        if trace.failure is None and trace.ended_by in ("step_budget", "consecutive_failures", "physics"):
            trace.failure = trace.ended_by
        if trace.failure is None and trace.ended_by == "done" and trace.success_known:
            trace.failure, trace.reason = "premature_done", "the planner said done but the goal does not hold"
        if trace.success is None and trace.ended_by == "done":
            trace.reason = "success unknown: the task could not parse the instruction; the planner said done"


def _history_text(text: object) -> str:
    """A step that did not parse, as one short line for the history (untrusted text, kept inert: control characters escaped)."""
    line = printable(" ".join(str(text).split())[:MAX_HISTORY_TEXT])
    return line.rstrip(".").strip() or "(empty)"


def printable(text: str) -> str:
    """`text` with every non-printable character (control, format, line and paragraph separators, spaces
    other than " ") written as its escape (`\\x1b`, `\\n`, `\\u202e`), so it can reach a terminal or a prompt inert.

    Printable text comes back unchanged. Use it wherever planner or user text is shown.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class FlakySkills:
    """Fault injection: an executor that fails a skill call with probability `rate` (from a passed generator).

    mode "skip": the skill does not run and reports failure; "interrupt": it runs for a random
    number of control steps (1 to `max_interrupt_steps`), is cut off and reports failure, leaving
    whatever partial state it reached (a block in the air, a half-done push).
    """

    def __init__(
        self, rate: float, rng: np.random.Generator, base: Executor = run_skill, mode: str = "skip",
        max_interrupt_steps: int = 60,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        if mode not in ("skip", "interrupt"):
            raise ValueError(f"mode must be 'skip' or 'interrupt', got {mode!r}")
        self.rate, self.rng, self.base, self.mode = rate, rng, base, mode
        self.max_interrupt_steps = max_interrupt_steps
        self.injected = 0

    def __call__(self, env: Any, call: SkillCall) -> SkillResult:
        if call.skill == "done" or self.rng.random() >= self.rate:
            return self.base(env, call)
        self.injected += 1
        if self.mode == "skip":
            return SkillResult(False, "injected fault: the skill did not run", 0)
        k = int(self.rng.integers(1, self.max_interrupt_steps + 1))
        res = run_skill(env, call, max_steps=k)
        return SkillResult(False, f"injected fault: the skill was cut off after {res.steps} control steps", res.steps)
