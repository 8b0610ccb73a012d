"""Training example sources: one registry of what a mixture draws from, and how held-out evaluation scores it.

A source writes examples about moments of a logged episode. It declares, once, in an `ExampleSource`:
- `name`: the key of a mixture's weights (`data.weights`) and of its held-out metric (`<name>_acc`);
- `kind`: what its answers are: "plan" (plan steps; capped by `data.max_plan_examples`), "vqa",
  "caption", "success" (success detection), "goal";
- `frames`: which moments of an episode it is asked about, as (frame index, step index or None) pairs
  (`step_starts`, `step_ends`, `first_frame`, `question_frames`, `success_frames`, or any function of
  the episode);
- `build(moment, rng) -> Draft | None`: the prompt and answer about one `Moment` (None: nothing to ask
  there); the moment gives the episode, the frame's `scene`, and `question(text)`, a question's prompt;
- `every_episode`: also failed episodes (the negatives of success detection) instead of those to learn
  from (successful ones, failed ones with `data.include_failed`, and every labelled DAgger one);
- `vqa`: whether held-out evaluation counts it in `vqa_acc`; `metric`: how a held-out generation is
  scored (a key of `METRICS`); `long_answer`: held-out generation gets `eval.max_long_tokens`;
  `headline`: another name its held-out accuracy is reported under (plan: `plan_exact`).

Random draws: a source's `rng` at a moment is a numpy Generator seeded by (base seed, crc32 of the
source's name, episode index, frame[, step]) (`source_rng`), never shared with another source and never
Python's salted `hash`: adding, removing or reordering sources cannot change another source's examples.

Add a source with one build function and `register_source(ExampleSource(...))`; nothing else lists it.
The built-in sources are registered at the bottom of this module:
- `plan`: the frame at the start of step k + instruction + steps 1..k-1 with their feedback -> step k;
- `plan_full`: the first frame + instruction -> the whole plan (PaLM-E p1/p2 style);
- `vqa_color` (q1), `vqa_table` (q2), `vqa_relation` (q3), `vqa_feasibility` (q4), `vqa_count`, `vqa_zone`,
  `caption`, `vqa_support`: questions about a question frame, answered from its logged object states
  (training/vqa.py);
- `success`: "was the task completed?" on every frame a planner sees (the first one too);
- `skill_success`: "was <step> successful?" on the frame where the step ended;
- `goal`: "where should the <X> go? Task: <instruction>" -> "on the red cube" / "in the blue zone" /
  "anywhere", answered from the goal the instruction means (`Task.goal_places`);
- `refer`: "Which object is the pentagon?" -> "the green pentagon": words the episode's task grammar may say an
  object in (`ObjectRef.names` of its `obj` slot: shape or colour alone when they single it out, synonyms, sizes),
  answered with the object's scene name (referring-expression grounding, which instructions that name a block by
  one word need);
- `restate`: "Restate the task. Task: <instruction>" on the first frame -> the same goal in the task's canonical
  template (`TemplatePhrasing.canonical`); with `prompt.restate` the planning, success and goal prompts hold that
  restatement instead of the given words (`words`), and the planner writes it once per episode;
- `vqa_side` (push world): "Which blocks are on the left side?" -> "the yellow pentagon and the blue cube" (nearest the
  side's edge first) or "none"; on side_together episodes half the time "Which blocks does the task gather? Task:
  <instruction>", so the instruction's side is bound to the blocks it means;
- `task_objects`: "Which objects does the task name? Task: <instruction>" -> "the yellow pentagon and the green cube":
  the blocks the goal names by scene name, the instruction read as planning prompts read it (a block named by one
  word, "the pentagon", bound to its object token through the planner's own route; `refer` asks in text).
Question frames are the ones a planner sees: every step start and the final frame.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.planners import first_step
from agent.prompts import (
    format_feedback,
    render_whole_plan,
    restate_question,
    split_whole_plan,
    success_question,
)
from envs import load_world
from envs.catalogue import MAX_OBJECTS, ObjectDesc
from envs.language import SLOT, ObjectList, ObjectRef, and_list
from envs.tasks.base import make_task
from envs.tasks.push.geometry import SIDE_MARGIN
from envs.tasks.push.side_together import SideGoal, edge_first, on_side
from training.vqa import (
    QA,
    Scene,
    goal_question,
    q_caption,
    q_color,
    q_count,
    q_feasibility,
    q_relation,
    q_support,
    q_table,
    q_zone,
    skill_question,
)

if TYPE_CHECKING:
    from training.dataset.reader import EpisodeLog
    from training.examples import ExampleBuilder

KINDS = ("plan", "vqa", "caption", "success", "goal")

# ---- held-out scoring -------------------------------------------------------------------------


def normalize(text: str) -> str:
    """Case, whitespace and trailing punctuation do not count in exact match."""
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(" .").strip()


def exact_match(prediction: str, answer: str) -> bool:
    """The generation is the answer (up to `normalize`)."""
    return normalize(prediction) == normalize(answer)


def first_step_match(prediction: str, answer: str) -> bool:
    """A next-step prediction is cut at its first step (as the planner does), then matched exactly."""
    return exact_match(first_step(prediction), answer)


METRICS: dict[str, Callable[[str, str], bool]] = {"exact": exact_match, "first_step": first_step_match}


# ---- moments of an episode --------------------------------------------------------------------
Anchors = Iterable[tuple[int, int | None]]  # (frame index, step index or None)


def step_starts(ep: EpisodeLog) -> Anchors:
    """The frame where each step starts, with the step."""
    return [(ep.frame_at(s["start_t"]), k) for k, s in enumerate(ep.steps)]


def step_ends(ep: EpisodeLog) -> Anchors:
    """The frame where each step other than "done" ended, with the step."""
    return [(ep.frame_at(s["end_t"]), k) for k, s in enumerate(ep.steps) if s["text"] != "done"]


def first_frame(ep: EpisodeLog) -> Anchors:
    return [(0, None)]


def question_frame_indices(ep: EpisodeLog) -> list[int]:
    """Frames a planner sees: every step start and the last frame, in order."""
    return sorted({ep.frame_at(s["start_t"]) for s in ep.steps} | {ep.length - 1})


def question_frames(ep: EpisodeLog) -> Anchors:
    return [(i, None) for i in question_frame_indices(ep)]


def success_frames(ep: EpisodeLog) -> Anchors:
    """The question frames and the first frame (success detection also learns "nothing done yet")."""
    return [(i, None) for i in sorted({0, *question_frame_indices(ep)})]


def source_rng(seed: int, name: str, episode: int, frame: int, step: int | None = None) -> np.random.Generator:
    """The Generator of source `name` at one moment: seeded by (seed, crc32(name), episode index, frame[, step])."""
    key = [seed, zlib.crc32(name.encode()), episode, frame]
    return np.random.default_rng(np.random.SeedSequence(key if step is None else [*key, step]))


@dataclass(frozen=True)
class Draft:
    """What a source writes about a moment: the prompt (from the PromptBuilder) and the answer."""

    prompt: str
    answer: str
    prompt_loss: bool = True  # False: the prompt's history has steps the oracle would not take (no prompt loss)
    # The words `<instr>` reads, as the agent gives them at this prompt (planning prompts: the words they hold;
    # questions: the instruction the environment gave); None: the episode's logged instruction.
    instruction: str | None = None


@dataclass(frozen=True)
class Moment:
    """One moment a source is asked about: frame `index` of the episode at position `pos` (and a step)."""

    builder: ExampleBuilder
    pos: int  # position in the dataset's episodes
    index: int  # frame index within the episode
    step: int | None = None  # index into the episode's steps, for step-anchored moments

    @property
    def episode(self) -> EpisodeLog:
        return self.builder.ds.episodes[self.pos]

    @property
    def prompts(self) -> Any:
        """The run's PromptBuilder (every prompt is written by it)."""
        return self.builder.prompts

    @property
    def scene(self) -> Scene:
        """The frame's objects and their relations (built once per frame)."""
        return self.builder.scene(self.pos, self.index)

    def counts(self) -> tuple[int, int]:
        """(objects, zones) in this frame: the scene a prompt is written for."""
        return self.builder.scene_counts(self.pos, self.index)

    def question(self, text: str) -> str:
        """The prompt of a question about this frame."""
        return self.prompts.question(text, *self.counts())

    def memo(self, key: Any, make: Callable[[], Any]) -> Any:
        """A value computed once per builder (e.g. an episode's goal), keyed by `key`."""
        return self.builder.memo(key, make)


Build = Callable[[Moment, np.random.Generator], Draft | None]


@dataclass(frozen=True)
class ExampleSource:
    """A registered example source (see the module docstring for each field)."""

    name: str
    kind: str
    build: Build
    frames: Callable[[EpisodeLog], Anchors] = question_frames
    every_episode: bool = False
    vqa: bool = False
    metric: str = "exact"
    long_answer: bool = False
    headline: str | None = None

    def score(self, prediction: str, answer: str) -> bool:
        """Whether a held-out generation counts as right."""
        return METRICS[self.metric](prediction, answer)


SOURCES: dict[str, ExampleSource] = {}


def register_source(source: ExampleSource) -> ExampleSource:
    """Add a source to the registry; ValueError for a taken name, an unknown kind or metric."""
    if source.name in SOURCES:
        raise ValueError(f"example source {source.name!r} is already registered; registered: {sorted(SOURCES)}")
    if source.kind not in KINDS:
        raise ValueError(f"example source {source.name!r}: unknown kind {source.kind!r}; expected one of {list(KINDS)}")
    if source.metric not in METRICS:
        raise ValueError(f"example source {source.name!r}: unknown metric {source.metric!r}; "
                         f"expected one of {sorted(METRICS)}")
    SOURCES[source.name] = source
    return source


def get_source(name: str) -> ExampleSource:
    """The registered source `name`; ValueError listing the registered names."""
    if name not in SOURCES:
        raise ValueError(f"unknown example source {name!r}; registered: {sorted(SOURCES)}")
    return SOURCES[name]


def source_names() -> list[str]:
    """Every registered source, in registration order."""
    return list(SOURCES)


# ---- the built-in sources ---------------------------------------------------------------------


def build_plan(f: Moment, rng: np.random.Generator) -> Draft | None:
    """Next step at step k's start, after steps 1..k-1 with their results (failures included).

    The target is the executed step, or its oracle `label` when another planner acted (DAgger logs:
    the history is what the model did, the answer what the oracle would do there). Once the history
    shown holds a step that differs from its label, the prompt is no longer oracle behaviour: it gets
    no auxiliary prompt loss (train.prompt_loss). A step labelled "" (no oracle step there) gives none.
    """
    ep, k = f.episode, f.step
    assert k is not None, "plan examples are anchored at step starts"
    label = ep.steps[k].get("label")
    target = ep.steps[k]["text"] if label is None else label
    if not target:
        return None
    before = ep.steps[:k]
    history = [(s["text"], format_feedback(s["success"], s["reason"])) for s in before]
    off = [s.get("label") is not None and s["label"] != s["text"] for s in before]
    window = f.prompts.config.history_window
    shown = off[-window:] if window else off
    said = words(f, rng)[1]
    return Draft(f.prompts.planning(said, history, *f.counts()), target, prompt_loss=not any(shown), instruction=said)


def build_whole_plan(f: Moment, rng: np.random.Generator) -> Draft | None:
    """The whole plan from the first frame, for episodes whose plan ran without a failed step."""
    ep = f.episode
    plans = ep.plans()
    if not plans or not all(s["success"] for s in ep.steps):
        return None
    steps = split_whole_plan(plans[0][1])
    said = words(f, rng)[1]
    return Draft(f.prompts.whole_plan(said, *f.counts()), render_whole_plan(steps), instruction=said)


def build_success(f: Moment, rng: np.random.Generator) -> Draft | None:
    """Was the task completed? labelled with the logged per-frame success (step starts part-way are "not yet")."""
    ep = f.episode
    given, said = words(f, rng)
    return Draft(f.question(success_question(f.prompts.task(said))), "yes" if ep.frame_success[f.index] else "no",
                 instruction=given)


def build_skill_success(f: Moment, rng: np.random.Generator) -> Draft | None:
    """Was <step> successful? on the frame where it ended."""
    assert f.step is not None, "skill_success examples are anchored at step ends"
    step = f.episode.steps[f.step]
    return Draft(f.question(skill_question(step["text"])), "yes" if step["success"] else "no")


def _task_goal(f: Moment) -> tuple[Any, Any]:
    """(the episode's task, the goal its instruction means), memoised per episode; (None, None) when the dataset
    names no world, and (task, None) when the instruction does not parse."""
    def parse() -> tuple[Any, Any]:
        ep = f.episode
        world = f.builder.ds.info.get("palme", {}).get("world")
        if world is None:
            return None, None
        load_world(world)
        task = f.memo(("task", world, ep.task_name), lambda: make_task(world, ep.task_name))
        return task, task.parse_instruction(ep.instruction, [ObjectDesc(**o) for o in ep.objects])
    return f.memo(("task_goal", f.pos), parse)


def _goal_places(f: Moment) -> dict[int, str]:
    """Where the episode's goal wants each cube it places ({} when the task says nothing of places)."""
    task, goal = _task_goal(f)
    return task.goal_places(goal, f.episode.names) if goal is not None else {}


def support_goal_target(f: Moment) -> np.ndarray | None:
    """(MAX_OBJECTS,) int64 target `support_goal`: the object each of the episode's objects goes on by its goal
    (`Task.goal_supports`), -1 for none, -100 past its objects; None when the dataset names no world or the
    instruction does not parse (no target)."""
    task, goal = _task_goal(f)
    if goal is None:
        return None
    out = np.full(MAX_OBJECTS, -100, np.int64)
    out[:len(f.episode.objects)] = -1
    for up, down in task.goal_supports(goal).items():
        out[up] = down
    return out


# the per-object training targets of the object features (`ObjectFeature.targets`): key -> target of a moment
OBJECT_TARGETS: dict[str, Callable[[Moment], np.ndarray | None]] = {"support_goal": support_goal_target}


def canonical_instruction(f: Moment) -> str | None:
    """The episode's goal in its task's canonical words (`TemplatePhrasing.canonical`), None if it has none."""
    task, goal = _task_goal(f)
    return task.canonical(goal, [ObjectDesc(**o) for o in f.episode.objects]) \
        if goal is not None and hasattr(task, "canonical") else None


def phrasing(f: Moment, j: int) -> str:
    """Phrasing j of the episode's goal: j = 0 the logged words, j >= 1 a training phrasing drawn from its task's
    grammar (`TemplatePhrasing.say`, split L1) with a generator seeded by (builder seed, episode index, j), so the
    same phrasing on every run; the logged words when the task has no grammar or the instruction does not parse."""
    def draw() -> str:
        ep = f.episode
        task, goal = _task_goal(f)
        if j == 0 or goal is None or not hasattr(task, "say"):
            return ep.instruction
        rng = np.random.default_rng(np.random.SeedSequence([f.builder.seed, zlib.crc32(b"rephrase"), ep.index, j]))
        return task.say(rng, goal, [ObjectDesc(**o) for o in ep.objects], "L1")[1]
    return f.memo(("phrasing", f.pos, j), draw)


def given_words(f: Moment, rng: np.random.Generator) -> str:
    """The words a prompt says the task in: the logged instruction or, with `data.rephrase` = K > 0, one of it
    and K other training phrasings of the same goal (`phrasing`), drawn with the source's `rng` (instruction
    augmentation: each moment of an episode may see the goal in other words)."""
    k = f.builder.rephrase
    return phrasing(f, int(rng.integers(k + 1))) if k > 0 else f.episode.instruction


def words(f: Moment, rng: np.random.Generator) -> tuple[str, str]:
    """(given, planning) words of a moment: `given_words`, the instruction as the environment would give it (what
    question prompts' `<instr>` reads), and what planning, success and goal prompts hold: its canonical restatement
    with `prompt.restate` (when the task has one), else the given words."""
    given = given_words(f, rng)
    if f.prompts.config.restate:
        return given, canonical_instruction(f) or given
    return given, given


def build_refer(f: Moment, rng: np.random.Generator) -> Draft | None:
    """Which object is <words>? An object drawn per frame, said in one of its task grammar's phrases for this scene
    other than its scene name (`ObjectRef.names`); the answer is "the <scene name>". None when the task has no object
    slot or the object has no other phrase."""
    ep = f.episode
    task, _ = _task_goal(f)
    slot = getattr(task, "grammar", None) and task.grammar.slots.get("obj")
    if not isinstance(slot, ObjectRef) or not ep.names:
        return None
    objects = f.memo(("objects", f.pos), lambda: [ObjectDesc(**o) for o in ep.objects])
    k = int(rng.integers(len(objects)))
    phrases = [p for p in slot.names(k, objects) if p != ep.names[k]]
    if not phrases:
        return None
    words = phrases[int(rng.integers(len(phrases)))]
    return Draft(f.question(f"Which object is the {words}?"), f"the {ep.names[k]}")


def build_restate(f: Moment, rng: np.random.Generator) -> Draft | None:
    """Restate the task: the given words -> the same goal in the task's canonical template (`prompt.restate`)."""
    canonical = canonical_instruction(f)
    if canonical is None:
        return None
    given = given_words(f, rng)
    return Draft(f.question(restate_question(f.prompts.task(given))), canonical, instruction=given)


def build_goal(f: Moment, rng: np.random.Generator) -> Draft | None:
    """Where should X go? X drawn per frame: a cube the goal places (its place in words) or, a quarter of the
    time when there is one, a cube the goal leaves free ("anywhere"). None when the goal places nothing
    (the pushing world) or the instruction does not parse."""
    ep = f.episode
    places = f.memo(("goal_places", f.pos), lambda: _goal_places(f))
    if not places:
        return None
    placed, free = sorted(places), [k for k in range(len(ep.names)) if k not in places]
    if free and rng.random() < 0.25:
        k, answer = free[int(rng.integers(len(free)))], "anywhere"
    else:
        k = placed[int(rng.integers(len(placed)))]
        answer = places[k]
    given, said = words(f, rng)
    return Draft(f.question(goal_question(ep.names[k], f.prompts.task(said))), answer, instruction=given)


def _named_objects(f: Moment) -> list[int]:
    """The objects the episode's goal names, in the order its task's first imperative template that can say the goal
    names them (`ObjectRef` and `ObjectList` slots; each once), memoised per episode; [] when the instruction does not
    parse or the goal names no object (a corner, a side, "every block")."""
    def named() -> list[int]:
        task, goal = _task_goal(f)
        if goal is None or not hasattr(task, "slots_for"):
            return []
        objects = [ObjectDesc(**o) for o in f.episode.objects]
        for template in task.templates:
            slots = task.slots_for(template, goal, objects)
            if slots is None:
                continue
            out: list[int] = []
            for name in SLOT.findall(template):
                kind, value = task.grammar.slots.get(name), slots.get(name)
                if isinstance(kind, ObjectRef) and isinstance(value, int):
                    out.append(value)
                elif isinstance(kind, ObjectList) and value is not None:
                    out.extend(int(i) for i in value)
            return list(dict.fromkeys(out))
        return []
    return f.memo(("named_objects", f.pos), named)


def build_task_objects(f: Moment, rng: np.random.Generator) -> Draft | None:
    """Which objects does the task name? Task: <instruction> -> "the yellow pentagon and the green cube": the objects
    its goal names, by scene name, in the canonical template's order (`_named_objects`), with the instruction in the
    planning prompts' words, so that a block the instruction names by one word ("the pentagon") is bound to its
    object token through the same route the planner reads the instruction by. None when the goal names no object."""
    named = _named_objects(f)
    if not named or not f.episode.names:
        return None
    given, said = words(f, rng)
    question = f"Which objects does the task name? Task: {f.prompts.task(said).strip().rstrip('.')}."
    return Draft(f.question(question), name_list([f.episode.names[k] for k in named]), instruction=given)


def name_list(names: list[str]) -> str:
    """"the A", "the A and the B", "the A, the B and the C"; "none" for no names."""
    return and_list([f"the {n}" for n in names]) if names else "none"


def build_side(f: Moment, rng: np.random.Generator) -> Draft | None:
    """Which blocks are on the left (y < 0) / right side of the push board? The blocks of that half by name, the one
    nearest the side's edge first (`edge_first`: the order side_together's oracle gathers them in), or "none". On a
    side_together episode, half the time the side is the task's ("Which blocks does the task gather? Task: ..." with
    the instruction in the planning prompts' words, as the `goal` source asks), so the answer binds the instruction's
    side to names. None outside the push world and when a block is within `SIDE_MARGIN` of the midline."""
    if f.builder.ds.info.get("palme", {}).get("world") != "push":
        return None
    objects = f.scene.objects
    xy = np.array([o.pos[:2] for o in objects])
    if not objects or np.any(np.abs(xy[:, 1]) < SIDE_MARGIN):
        return None
    _, goal = _task_goal(f)
    if isinstance(goal, SideGoal) and rng.random() < 0.5:
        given, said = words(f, rng)
        side, instruction = goal.side, given
        question = f"Which blocks does the task gather? Task: {f.prompts.task(said).strip().rstrip('.')}."
    else:
        side, instruction = ("left", "right")[int(rng.integers(2))], None
        question = f"Which blocks are on the {side} side?"
    members = [k for k in range(len(objects)) if on_side(xy[k], side)]
    answer = name_list([objects[k].name for k in edge_first(xy, members)])
    return Draft(f.question(question), answer, instruction=instruction)


def asks(question: Callable[[Scene, np.random.Generator], QA | None], camera: bool = False) -> Build:
    """The build function of a question about the frame's scene (`camera`: it needs the camera matrices)."""

    def build(f: Moment, rng: np.random.Generator) -> Draft | None:
        scene = f.scene
        if camera and scene.camera is None:
            return None
        qa = question(scene, rng)
        return None if qa is None else Draft(f.question(qa[0]), qa[1])

    build.__doc__ = question.__doc__
    return build


register_source(ExampleSource("plan", "plan", build_plan, frames=step_starts, metric="first_step",
                              headline="plan_exact"))
register_source(ExampleSource("plan_full", "plan", build_whole_plan, frames=first_frame, long_answer=True))
register_source(ExampleSource("vqa_color", "vqa", asks(q_color), vqa=True))
register_source(ExampleSource("vqa_table", "vqa", asks(q_table, camera=True), vqa=True))
register_source(ExampleSource("vqa_relation", "vqa", asks(q_relation), vqa=True))
register_source(ExampleSource("vqa_feasibility", "vqa", asks(q_feasibility), vqa=True))
register_source(ExampleSource("vqa_count", "vqa", asks(q_count), vqa=True))
register_source(ExampleSource("vqa_zone", "vqa", asks(q_zone), vqa=True))
register_source(ExampleSource("caption", "caption", asks(q_caption), vqa=True, long_answer=True))
register_source(ExampleSource("vqa_support", "vqa", asks(q_support), vqa=True))
register_source(ExampleSource("success", "success", build_success, frames=success_frames, every_episode=True,
                              vqa=True))
register_source(ExampleSource("skill_success", "success", build_skill_success, frames=step_ends,
                              every_episode=True, vqa=True))
register_source(ExampleSource("goal", "goal", build_goal, vqa=True))
register_source(ExampleSource("refer", "vqa", build_refer, vqa=True))
register_source(ExampleSource("vqa_side", "vqa", build_side, vqa=True))
register_source(ExampleSource("task_objects", "vqa", build_task_objects, vqa=True))
register_source(ExampleSource("restate", "goal", build_restate, frames=first_frame, long_answer=True))
