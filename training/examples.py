"""Training examples from demonstration logs, written by the one `PromptBuilder`, and the mixture sampler.

Sources (the keys of a mixture's weights):
- `plan`: the frame at the start of step k + instruction + steps 1..k-1 with their feedback -> step k;
- `plan_full`: the first frame + instruction -> the whole plan (PaLM-E p1/p2 style);
- `vqa_color` (q1), `vqa_table` (q2), `vqa_relation` (q3), `vqa_feasibility` (q4), `vqa_count`,
  `vqa_zone` (which target zone an object is in; scenes with zones), `caption`, `vqa_support` (what an object
  rests on): questions about a frame, answered from its logged object states (training/vqa.py);
- `success`: "was the task completed?" on every frame a planner sees (step starts, last frame);
- `skill_success`: "was <step> successful?" on the frame where the step ended;
- `goal`: "where should the <X> go? Task: <instruction>" -> "on the red cube" / "in the blue zone" /
  "anywhere" on every question frame, answered from the goal the instruction means (`Task.goal_places`).
Question frames are the ones a planner sees: every step start and the final frame.
Examples are built as light `ExampleSpec`s (text + frame reference); arrays are attached when
an example is drawn, from the dataset's decode-once image cache.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.prompts import (
    Example,
    PromptBuilder,
    count_objects,
    format_feedback,
    render_whole_plan,
    split_whole_plan,
    success_question,
)
from envs import load_world
from envs.catalogue import ObjectDesc
from envs.tasks.base import make_task
from training.dataset.reader import LogDataset
from training.vqa import VQA_GENERATORS, Scene, camera_from_info, goal_question, skill_question

PLANNING_SOURCES = ("plan", "plan_full")
VQA_SOURCES = tuple(VQA_GENERATORS)
ALL_SOURCES = (*PLANNING_SOURCES, *VQA_SOURCES, "success", "skill_success", "goal")
# PaLM-E's "full mixture" co-trains planning with VQA/captioning; robot-only keeps the planning sources.
MIXTURES: dict[str, dict[str, float]] = {
    "full": {"plan": 0.35, "plan_full": 0.1, "vqa_color": 0.06, "vqa_table": 0.08, "vqa_relation": 0.1,
             "vqa_feasibility": 0.1, "vqa_count": 0.05, "caption": 0.06, "success": 0.05, "skill_success": 0.05},
    "planning_only": {"plan": 0.75, "plan_full": 0.25},
}


@dataclass
class MixtureConfig:
    """Which sources the training data mixes, and how often each is drawn."""

    preset: str = "full"  # a key of MIXTURES, used when `weights` is empty
    weights: dict[str, float] = field(default_factory=dict)  # source -> weight (overrides the preset)
    seed: int = 0  # sampler seed: the same seed draws the same sequence of examples
    include_failed: bool = False  # also build examples from episodes whose task failed (kept with a flag)

    def resolved(self) -> dict[str, float]:
        """The weights in force; ValueError names unknown sources or presets."""
        if not self.weights and self.preset not in MIXTURES:
            raise ValueError(f"unknown mixture preset {self.preset!r}; expected one of {sorted(MIXTURES)}")
        w = dict(self.weights) if self.weights else dict(MIXTURES[self.preset])
        unknown = sorted(set(w) - set(ALL_SOURCES))
        if unknown:
            raise ValueError(f"unknown mixture sources {unknown}; expected some of {list(ALL_SOURCES)}")
        if any(v < 0 for v in w.values()) or sum(w.values()) <= 0:
            raise ValueError(f"mixture weights must be >= 0 with a positive sum, got {w}")
        return w


@dataclass(frozen=True)
class ExampleSpec:
    """An example without its arrays: prompt text, answer, and which frame it is about."""

    source: str
    prompt: str
    answer: str
    episode: int  # position in LogDataset.episodes
    frame: int  # frame index within the episode
    prompt_loss: bool = True  # False: the prompt's history has steps the oracle would not take (no prompt loss)


class ExampleBuilder:
    """Builds every source's ExampleSpecs from a LogDataset with one PromptBuilder."""

    def __init__(self, ds: LogDataset, prompts: PromptBuilder | None = None, seed: int = 0,
                 include_failed: bool = False) -> None:
        self.ds = ds
        self.prompts = prompts or PromptBuilder()
        self.seed = seed
        self.include_failed = include_failed
        self.camera, self.table_z, self.workspace = camera_from_info(ds.info)

    def _episodes(self) -> Iterator[int]:
        """Episodes to learn from: successful ones, failed ones with include_failed, and every labelled (DAgger) one."""
        for pos, ep in enumerate(self.ds.episodes):
            if ep.success or self.include_failed or any(s.get("label") is not None for s in ep.steps):
                yield pos

    def _n(self, pos: int, i: int) -> tuple[int, int, list[str] | None]:
        """(objects, zones, object names or None) in frame i of episode pos: the scene a prompt is written for."""
        ep = self.ds.episodes[pos]
        rows = ep.env_state[i]
        return count_objects(rows), count_objects(ep.zones[i]), self.prompts.names_of(rows)

    def planning(self) -> list[ExampleSpec]:
        """Next-step examples: one per executed step (history carries earlier results, failures included).

        The target is the executed step, or its oracle `label` when another planner acted (DAgger
        logs: the history is what the model did, the answer what the oracle would do there). Once
        the history holds a step that differs from its label, the example's prompt is no longer
        oracle behaviour: it gets no auxiliary prompt loss (train.prompt_loss), so the model is not
        taught to write the mistakes it is being taught to recover from. (With a history window, only
        the steps the prompt shows count.)
        """
        out = []
        for pos in self._episodes():
            ep = self.ds.episodes[pos]
            history: list[tuple[str, str]] = []
            off: list[bool] = []  # per step so far: the oracle would have taken another step
            window = self.prompts.history_window
            for step in ep.steps:
                i = ep.frame_at(step["start_t"])
                label = step.get("label")
                target = step["text"] if label is None else label
                if target:  # "" = the oracle had no step for this state: no example
                    prompt = self.prompts.planning(ep.instruction, history, *self._n(pos, i))
                    shown = off[-window:] if window else off
                    out.append(ExampleSpec("plan", prompt, target, pos, i, prompt_loss=not any(shown)))
                off.append(label is not None and label != step["text"])
                history.append((step["text"], format_feedback(step["success"], step["reason"])))
        return out

    def whole_plans(self) -> list[ExampleSpec]:
        """Whole-plan examples from the first frame, for episodes whose plan ran without a failed step."""
        out = []
        for pos in self._episodes():
            ep = self.ds.episodes[pos]
            plans = ep.plans()
            if not plans or not all(s["success"] for s in ep.steps):
                continue
            steps = split_whole_plan(plans[0][1])
            prompt = self.prompts.whole_plan(ep.instruction, *self._n(pos, 0))
            out.append(ExampleSpec("plan_full", prompt, render_whole_plan(steps), pos, 0))
        return out

    def question_frames(self, pos: int) -> list[int]:
        """Frames a planner sees: every step start and the last frame."""
        ep = self.ds.episodes[pos]
        return sorted({ep.frame_at(s["start_t"]) for s in ep.steps} | {ep.length - 1})

    def scene(self, pos: int, i: int) -> Scene:
        ep = self.ds.episodes[pos]
        return Scene(ep.env_state[i], ep.names or None, self.camera, self.table_z, self.workspace, ee=ep.robot[i][:3],
                     zones=ep.zones[i])

    def vqa(self) -> dict[str, list[ExampleSpec]]:
        """One question per VQA source per question frame (seeded by dataset seed, episode and frame)."""
        out: dict[str, list[ExampleSpec]] = {s: [] for s in VQA_SOURCES}
        for pos in self._episodes():
            for i in self.question_frames(pos):
                scene = self.scene(pos, i)
                rng = np.random.default_rng([self.seed, self.ds.episodes[pos].index, i])
                for source, gen in VQA_GENERATORS.items():
                    if source == "vqa_table" and self.camera is None:
                        continue
                    qa = gen(scene, rng)
                    if qa is not None:
                        prompt = self.prompts.question(qa[0], *self._n(pos, i))
                        out[source].append(ExampleSpec(source, prompt, qa[1], pos, i))
        return out

    def success(self) -> list[ExampleSpec]:
        """Success detection on every frame a planner sees, and the first (labels: the logged per-frame success).

        Step starts part-way through a task are the negatives that teach "not yet" (an agent asks
        before each step whether it may stop), not only "nothing done" vs "all done".
        """
        out = []
        for pos, ep in enumerate(self.ds.episodes):  # failed episodes are useful negatives here
            for i in sorted({0, *self.question_frames(pos)}):
                prompt = self.prompts.question(success_question(ep.instruction), *self._n(pos, i))
                out.append(ExampleSpec("success", prompt, "yes" if ep.frame_success[i] else "no", pos, i))
        return out

    def skill_success(self) -> list[ExampleSpec]:
        """Was <step> successful? on the frame where it ended."""
        out = []
        for pos, ep in enumerate(self.ds.episodes):
            for step in ep.steps:
                if step["text"] == "done":
                    continue
                i = ep.frame_at(step["end_t"])
                prompt = self.prompts.question(skill_question(step["text"]), *self._n(pos, i))
                out.append(ExampleSpec("skill_success", prompt, "yes" if step["success"] else "no", pos, i))
        return out

    def goals(self) -> list[ExampleSpec]:
        """Where should X go? on every question frame, X drawn per frame: a cube the goal places (its place in
        words) or, a quarter of the time when there is one, a cube the goal leaves free ("anywhere").

        Episodes whose task says nothing of places (the pushing world) or whose instruction does not
        parse give none.
        """
        world = self.ds.info.get("palme", {}).get("world")
        if world is None:
            return []
        load_world(world)
        tasks: dict[str, Any] = {}
        out = []
        for pos in self._episodes():
            ep = self.ds.episodes[pos]
            if ep.task_name not in tasks:
                tasks[ep.task_name] = make_task(world, ep.task_name)
            task = tasks[ep.task_name]
            goal = task.parse_instruction(ep.instruction, [ObjectDesc(**o) for o in ep.objects])
            places = task.goal_places(goal, ep.names) if goal is not None else {}
            if not places:
                continue
            placed, free = sorted(places), [k for k in range(len(ep.names)) if k not in places]
            for i in self.question_frames(pos):
                rng = np.random.default_rng([self.seed, ep.index, i, len(VQA_SOURCES)])
                if free and rng.random() < 0.25:
                    k, answer = free[int(rng.integers(len(free)))], "anywhere"
                else:
                    k = placed[int(rng.integers(len(placed)))]
                    answer = places[k]
                prompt = self.prompts.question(goal_question(ep.names[k], ep.instruction), *self._n(pos, i))
                out.append(ExampleSpec("goal", prompt, answer, pos, i))
        return out

    def all_sources(self, wanted: Mapping[str, float] | None = None) -> dict[str, list[ExampleSpec]]:
        """Specs of every source (only those with weight > 0 in `wanted`, when given)."""
        want = {k for k, v in (wanted or dict.fromkeys(ALL_SOURCES, 1.0)).items() if v > 0}
        out: dict[str, list[ExampleSpec]] = {}
        if "plan" in want:
            out["plan"] = self.planning()
        if "plan_full" in want:
            out["plan_full"] = self.whole_plans()
        if want & set(VQA_SOURCES):
            out.update({k: v for k, v in self.vqa().items() if k in want})
        if "success" in want:
            out["success"] = self.success()
        if "skill_success" in want:
            out["skill_success"] = self.skill_success()
        if "goal" in want:
            out["goal"] = self.goals()
        return out

    def materialize(self, spec: ExampleSpec) -> Example:
        """The Example the model sees: the spec's text with the frame's arrays."""
        ep = self.ds.episodes[spec.episode]
        obs = self.ds.frame(spec.episode, spec.frame, image=self.prompts.use_image)
        kind = "plan" if spec.source == "plan" else ("plan_full" if spec.source == "plan_full" else spec.source)
        ex = self.prompts.example(spec.prompt, obs, answer=spec.answer, kind=kind, episode=ep.index,
                                  frame=spec.frame, task=ep.task_name, source=spec.source)
        ex.prompt_loss = spec.prompt_loss
        return ex


class MixtureSampler:
    """Draws examples from sources with per-source weights; seeded, so the same seed gives the same stream."""

    def __init__(self, builder: ExampleBuilder, config: MixtureConfig | None = None) -> None:
        self.builder = builder
        self.config = config or MixtureConfig()
        weights = self.config.resolved()
        self.sources = {k: v for k, v in builder.all_sources(weights).items() if v}
        active = [k for k in self.sources if weights.get(k, 0) > 0]
        if not active:
            raise ValueError(f"no examples for any source with weight > 0 ({weights}); is the dataset empty?")
        self.names = active
        w = np.array([weights[k] for k in active], np.float64)
        self.probs = w / w.sum()
        self.rng = np.random.default_rng(self.config.seed)

    def sizes(self) -> dict[str, int]:
        """Number of distinct examples per active source."""
        return {k: len(self.sources[k]) for k in self.names}

    def draw_spec(self) -> ExampleSpec:
        source = self.names[int(self.rng.choice(len(self.names), p=self.probs))]
        pool = self.sources[source]
        return pool[int(self.rng.integers(len(pool)))]

    def draw(self) -> Example:
        """One example with its arrays."""
        return self.builder.materialize(self.draw_spec())

    def batch(self, n: int) -> list[Example]:
        return [self.draw() for _ in range(n)]

    def __iter__(self) -> Iterator[Example]:
        while True:
            yield self.draw()


def load_mixture(root: str, config: MixtureConfig | None = None, prompts: PromptBuilder | None = None,
                 skip_bad: bool = False, log: Any = print) -> MixtureSampler:
    """Open a log folder and build its mixture; with `skip_bad`, bad episodes are skipped and counted."""
    ds = LogDataset(root, on_error="skip" if skip_bad else "raise")
    if ds.skipped:
        log(f"skipped {len(ds.skipped)} bad episode(s) of {root}: " + "; ".join(str(p) for p in ds.skipped[:5]))
    config = config or MixtureConfig()
    return MixtureSampler(ExampleBuilder(ds, prompts, seed=config.seed, include_failed=config.include_failed), config)
