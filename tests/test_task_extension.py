"""A new task is one class plus its registration: declared here, with no edit to any source file, it samples,
phrases, parses and is solved by the oracle planner through the agent loop in the real world."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pytest

from agent.loop import Agent
from agent.planners import make_planner
from envs import make_env
from envs.tasks.base import TASK_REGISTRY, make_task, register_task, task_names
from envs.tasks.pickplace.base import PickPlaceTask
from envs.tasks.pickplace.language import CUBE, CUBE_GRAMMAR
from envs.tasks.pickplace.planning import Blocks
from envs.tasks.pickplace.scene import decor_zones, focus_objects, n_objects, sample_objects
from envs.tasks.push.base import PushTask, choice
from envs.tasks.push.geometry import CORNERS, in_location
from envs.vocab import SkillCall


# ---- the two toy tasks: each is the whole of what a new task needs ----------------------------------
@dataclass(frozen=True)
class OnGoal:
    obj: int
    target: int


class ToyPutOn(PickPlaceTask):
    name = "toy_put_on"
    templates = ("set the {obj} down on the {target}",)
    heldout_templates = ("rest the {obj} on top of the {target}",)
    success_doc = "the cube rests on the target cube"
    grammar = CUBE_GRAMMAR.extend(target=CUBE)

    def draw_scene(self, rng, split):
        objects = sample_objects(rng, split, n_objects(rng, split, self.n_objects))
        obj, target = focus_objects(rng, objects, 2)
        return objects, OnGoal(obj, target), [], decor_zones(rng)

    def slots_for(self, template, goal, objects):
        return {"obj": goal.obj, "target": goal.target}

    def goal_from_slots(self, template, slots, objects):
        return OnGoal(slots["obj"], slots["target"]) if slots["obj"] != slots["target"] else None

    def is_success(self, env, goal):
        return env.support_graph()[goal.obj] == goal.target

    def oracle_plan(self, env, goal):
        if self.is_success(env, goal):
            return []
        b = Blocks(env)
        b.clear(goal.target)
        b.clear(goal.obj)
        b.move(goal.obj, target=goal.target)
        return b.plan


@dataclass(frozen=True)
class CornerGoal:
    obj: int
    corner: str


class ToyToCorner(PushTask):
    name = "toy_to_corner"
    templates = ("shove the {obj} into the {corner}",)
    heldout_templates = ("the {obj} belongs in the {corner}",)
    success_doc = "the block is within 0.115 m of the corner point"

    def draw_goal(self, rng, objects, xy):
        i, corner = int(rng.integers(len(objects))), choice(rng, CORNERS)
        return None if in_location(xy[i], corner) else CornerGoal(i, corner)

    def slots_for(self, template, goal, objects):
        return {"obj": goal.obj, "corner": goal.corner}

    def goal_from_slots(self, template, slots, objects):
        return CornerGoal(slots["obj"], slots["corner"])

    def is_success(self, env, goal):
        return in_location(env.block_xy(goal.obj), goal.corner)

    def oracle_plan(self, env, goal):
        return [] if self.is_success(env, goal) else [SkillCall("push", obj=goal.obj, location=goal.corner)]


@pytest.fixture
def registered(request):
    """Register a task class for one test, and take it out of the registry afterwards."""
    cls = request.param
    register_task(cls)
    yield cls
    del TASK_REGISTRY[cls.world][cls.name]


@pytest.mark.parametrize(("registered", "seed"), [(ToyPutOn, 0), (ToyToCorner, 0)], indirect=["registered"])
def test_a_task_declared_in_a_test_runs_an_oracle_episode(registered, seed):
    cls = registered
    assert cls.name in task_names(cls.world)
    task = make_task(cls.world, cls.name)
    for split in ("train", "L4"):
        inst = task.sample(np.random.default_rng(seed), split)
        template = (cls.heldout_templates if split == "L4" else cls.templates)[0]
        words = [part.strip() for part in re.split(r"\{\w+\}", template) if part.strip()]
        assert all(w in inst.instruction for w in words), (split, inst.instruction)
        assert task.parse_instruction(inst.instruction.upper() + "!", inst.objects) == inst.goal
    assert task.parse_instruction("juggle the blocks", inst.objects) is None

    env = make_env(cls.world, cls.name, obs_type="state", render_mode=None)
    try:
        trace = Agent(make_planner("oracle")).episode(env, seed=seed)
    finally:
        env.close()
    assert trace.success is True and trace.ended_by == "done", trace.reason
    assert trace.task == cls.name and trace.steps[-1].step == "done"
    first = trace.steps[0].step
    assert first.startswith("pick up the ") if cls.world == "pickplace" else first.startswith("push the ")


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_task(type("Again", (ToyToCorner,), {"name": "block2block"}))
