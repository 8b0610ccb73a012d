"""Issue #20: a step the planner writes in the scene its rows show is read there and carried onto the simulator's
objects (agent.grounding): its names and `obj j` mean what it saw; a phantom fails the step; privileged as before."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pybullet as p
import pytest

from agent.grounding import match_rows, read_step
from agent.loop import Agent
from agent.parser import PlanError, PlanParser, SceneContext, planning_scene
from agent.planners import PlanContext, Planner
from envs import make_env
from envs.catalogue import ObjectDesc, object_row
from envs.state_sources import (
    STATE_SOURCES,
    NamedRows,
    StateSource,
    naming_rows,
    perceive,
    register_state_source,
)
from envs.vocab import SkillCall, render_step
from policies.base import run_skill, skill_executor
from policies.estimated import _lookup

SEED = 1_000_003  # L1: a small orange cube (slot 0), a large orange cube (1), a green cube (2); perception's rows
# come sorted by x then y: green, small orange, large orange


class Writes(Planner):
    """Writes the given steps in turn (then done), keeping each context."""

    name = "writes"

    def __init__(self, *steps: str) -> None:
        self.steps, self.ctxs = list(steps), []

    def next_step(self, ctx: PlanContext) -> str:
        self.ctxs.append(ctx)
        return self.steps.pop(0) if self.steps else "done"


def _env(state: str = "estimated", task: str = "grasp"):
    return make_env("pickplace", task, split="L1", obs_type="state", state=state)


def _run(env, planner: Planner, skills_use: str = "privileged", steps: int = 1):
    """The loop on `env`'s current scene (no reset), recording the executor's `env.named_rows`."""
    named: list[NamedRows | None] = []
    execute = skill_executor(skills_use)

    def executor(e, call):
        named.append(e.named_rows)
        return execute(e, call)

    trace = Agent(planner, executor=executor, max_steps=steps).run(env, seed=SEED)
    return trace, named


@pytest.mark.parametrize("skills_use", ["privileged", "estimated"])
def test_the_seen_name_without_its_size_word_picks_the_cube_the_planner_sees(skills_use):
    env = _env()
    try:
        env.reset(seed=SEED)
        u = env.unwrapped
        assert u.names == ["small orange cube", "large orange cube", "green cube"]
        # paint the small orange cube black: the camera sees one orange cube, named without its size word
        p.changeVisualShape(u.object_ids[0], -1, rgbaColor=[0.05, 0.05, 0.05, 1.0], physicsClientId=u.client)
        perceive(u, fresh=True)
        scene = SceneContext.from_env(u)
        seen = planning_scene(u, u.observe(), scene)
        assert seen.names == ("green cube", "orange cube")
        assert PlanParser(scene).parse("pick up the orange cube").kind == "ambiguous_reference"  # the old reading
        trace, named = _run(env, Writes("pick up the orange cube"), skills_use)
        (step,) = trace.steps
        assert step.success, step.reason
        assert step.call == asdict(SkillCall("pick", obj=1)) and step.seen_call == asdict(SkillCall("pick", obj=1))
        assert step.step == "pick up the orange cube" and step.error is None
        assert u.held_object() == 1  # the large orange cube: the one the camera showed
        assert named[0] is not None and dict(named[0].of) == {1: 1} and u.named_rows is None  # set while it ran
    finally:
        env.close()


@pytest.mark.parametrize("skills_use", ["privileged", "estimated"])
def test_obj_j_is_the_jth_row_the_planner_read_not_the_jth_simulator_slot(skills_use):
    env = _env()
    try:
        obs, _ = env.reset(seed=SEED)
        u = env.unwrapped
        seen = planning_scene(u, obs, SceneContext.from_env(u))
        assert seen.names == ("green cube", "small orange cube", "large orange cube")  # not the slots' order
        trace, _ = _run(env, Writes("pick up obj 1"), skills_use)
        (step,) = trace.steps
        assert step.success, step.reason
        assert step.seen_call["obj"] == 0 and step.call["obj"] == 2 and step.step == "pick up the green cube"
        assert u.held_object() == 2
    finally:
        env.close()


def test_estimated_skills_act_on_the_row_the_planner_named():
    """The round trip seen row -> simulator object -> estimate row lands on the named row, even where a lookup of
    the simulator's name would not (the estimate gives that row no size word)."""
    env = _env()
    try:
        obs, _ = env.reset(seed=SEED)
        u = env.unwrapped
        est = perceive(u)
        est.objects[1, 7] = 0.045  # the small orange cube's row: an edge between the sizes, so no size word
        obs = u.observe()
        scene = SceneContext.from_env(u)
        seen = planning_scene(u, obs, scene)
        assert seen.names == ("green cube", "obj 2", "large orange cube")
        read = read_step("pick up obj 2", scene, seen, obs["objects"], u.object_rows())
        assert read.call == SkillCall("pick", obj=0) and read.seen_call == SkillCall("pick", obj=1)
        assert dict(read.named.of) == {0: 1}
        with naming_rows(u, read.named):
            assert _lookup(u, read.call, est) == ({"obj": 1}, {1: "small orange cube"}, "", False)
        assert u.named_rows is None
        mapped, _, why, retry = _lookup(u, read.call, est)  # by the simulator's name: no row fits
        assert not mapped and why.startswith("the camera's estimate holds no small orange cube") and retry
        u.named_rows = NamedRows(np.zeros_like(est.objects), {0: 1})  # rows that are not this estimate: ignored
        assert _lookup(u, read.call, est)[0] == {}
        u.named_rows = None
    finally:
        env.close()


def test_with_privileged_state_steps_are_read_and_run_exactly_as_before():
    texts = ["pick up obj 3", "pick up the orange cube", "place the small orange cube on the green cube",
             "place it on the large orange cube", "put the green cube on the table", "pick up the purple cube",
             "place the green cube in the blue zone", "pick up the small orange cube",
             "place the small orange cube on the large orange cube"]
    env = _env("privileged", task="stack")
    scenes: list[SceneContext] = []
    try:
        env.reset(seed=SEED)
        u = env.unwrapped
        planner = Writes(*texts)
        trace = Agent(planner, executor=_no_naming(run_skill), max_steps=len(texts),
                      max_consecutive_failures=len(texts),
                      on_step_start=lambda s: scenes.append(SceneContext.from_env(u))).run(env, seed=SEED)
    finally:
        env.close()
    assert len(trace.steps) == len(texts)
    assert all(ctx.seen is ctx.scene for ctx in planner.ctxs)
    for text, step, scene in zip(texts, trace.steps, scenes, strict=True):
        before = PlanParser(scene).parse(text)
        assert step.seen_call is None
        if isinstance(before, PlanError):
            assert step.call is None and step.error == asdict(before)
        else:
            assert step.call == asdict(before) and step.step == render_step(before, scene.names)
    assert sum(s.call is not None for s in trace.steps) >= 4 and any(s.success for s in trace.steps)


def _no_naming(execute):
    def executor(env, call):
        assert env.named_rows is None
        return execute(env, call)

    return executor


class _Phantom(StateSource):
    """The simulator's rows in reverse slot order, with a purple cube the table does not hold put first."""

    name = "phantom_test"

    def rows(self, env):
        objects, zones = env.object_rows(), env.zone_rows()
        n = len(env.object_ids)
        phantom = object_row((0.45, 0.15, 0.02), (0, 0, 0, 1), 0.04, ObjectDesc("purple", "cube", "small"))
        out = np.zeros_like(objects)
        out[0], out[1:n + 1] = phantom, objects[:n][::-1]
        return out, zones


@pytest.fixture
def phantom_source():
    register_state_source(_Phantom)
    yield
    del STATE_SOURCES["phantom_test"]


def test_a_phantom_fails_its_step_with_a_reason_and_the_episode_goes_on(phantom_source):
    env = _env("phantom_test")
    try:
        env.reset(seed=SEED)
        u = env.unwrapped
        planner = Writes("pick up the purple cube", "pick up obj 2")
        trace, _ = _run(env, planner, steps=2)
        assert planner.ctxs[0].seen.names == ("purple cube", "green cube", "large orange cube", "small orange cube")
        first, second = trace.steps
        assert not first.success and first.failure == "invalid_reference" and first.call is None
        assert first.reason == "the state estimate shows a purple cube that the table does not hold"
        assert first.feedback == f"failed: {first.reason}" and first.error["kind"] == "unknown_object"
        assert first.seen_call == asdict(SkillCall("pick", obj=0)) and first.step == "pick up the purple cube"
        assert second.success and second.call["obj"] == 2 and u.held_object() == 2  # obj 2: the green cube, reversed
        assert trace.failure != "exception" and trace.traceback is None
    finally:
        env.close()


def test_match_rows_pairs_by_kind_and_distance_one_to_one():
    def rows(items):
        out = np.zeros((8, 11), np.float32)
        for k, (desc, x, edge) in enumerate(items):
            out[k] = object_row((x, 0.0, 0.02), (0, 0, 0, 1), edge, desc)
        return out

    small, large = ObjectDesc("orange", "cube", "small"), ObjectDesc("orange", "cube", "large")
    green = ObjectDesc("green", "cube", "small")
    sim = rows([(small, 0.5, 0.04), (large, 0.6, 0.05), (green, 0.3, 0.04)])
    seen_rows = rows([(green, 0.31, 0.04), (large, 0.52, 0.05), (small, 0.59, 0.04), (small, 0.7, 0.04)])
    scene = SceneContext((small, large, green))
    seen = SceneContext((green, large, small, small))
    # sizes first: the large row near the small cube is the large cube; the second small row is a phantom
    assert match_rows(seen, seen_rows, scene, sim) == [2, 1, 0, None]
    # a size perception got wrong (a large cube stacked on a small one is estimated small): the cube, not a phantom
    purple = ObjectDesc("purple", "cube", "large")
    on_top = SceneContext((ObjectDesc("purple", "cube", "small"),))
    assert match_rows(on_top, rows([(on_top.objects[0], 0.31, 0.04)]), SceneContext((small, purple)),
                      rows([(small, 0.5, 0.04), (purple, 0.3, 0.05)])) == [1]
    unsized = SceneContext((green, ObjectDesc("orange", "cube")))
    assert match_rows(unsized, rows([(green, 0.3, 0.04), (small, 0.59, 0.045)]), scene, sim) == [2, 1]  # nearest
