"""grasp (PaLM-E p1): hold one cube in the gripper above the table, often from under a tower."""

from __future__ import annotations

from dataclasses import dataclass

from envs.tasks.base import register_task
from envs.tasks.pickplace.base import PickPlaceTask
from envs.tasks.pickplace.planning import Blocks
from envs.tasks.pickplace.scene import decor_zones, focus_objects, n_objects, sample_objects
from envs.vocab import SkillCall

LIFT_HEIGHT = 0.02  # grasp success: the held cube's bottom is at least this far above the table


@dataclass(frozen=True)
class GraspGoal:
    """Hold cube `obj` in the gripper above the table."""

    obj: int


@register_task
class GraspTask(PickPlaceTask):
    name = "grasp"
    templates = (
        "pick up the {obj}",
        "<take> the {obj}",
        "grasp the {obj}",
        "(lift|raise|pick up) the {obj}( off the table| up| into the air| from the table|)",
        "get the {obj} (into|in) (the|your) (gripper|hand)",
        "hold the {obj}( in the gripper| in your gripper| in the hand| up|)",
        "(go and |go |)(grab|get|fetch|pick up) the {obj}",
    )
    goal_templates = (
        "the {obj} <should> be (in the gripper|held|lifted|in your hand|off the table)",
        "<want> the {obj}( in the gripper| lifted| held| in your hand| picked up|)",
        "(the goal is|your goal is) to (hold|lift|pick up|grasp) the {obj}",
    )
    heldout_templates = ("take hold of the {obj} and keep it up", "i need you to grab the {obj}")
    success_doc = (
        f"both finger pads touch the cube and its bottom is at least {LIFT_HEIGHT * 100:.0f} cm "
        "above the table top."
    )

    def draw_scene(self, rng, split):
        n = n_objects(rng, split, self.n_objects)
        objects = sample_objects(rng, split, n)
        target = focus_objects(rng, objects, 1)[0]
        towers: list[list[int]] = []
        if rng.random() < 0.7:  # PaLM-E's p1: the cube is often under others
            depth = int(rng.integers(1, 4 if split == "L3" else 3))
            others = [i for i in rng.permutation(n).tolist() if i != target][:depth]
            towers = [[target, *others]]
        return objects, GraspGoal(target), towers, decor_zones(rng)

    def slots_for(self, template, goal, objects):
        return {"obj": goal.obj}

    def goal_from_slots(self, template, slots, objects):
        return GraspGoal(slots["obj"])

    def is_success(self, env, goal):
        if not all(env.touches_finger(goal.obj)):
            return False
        pos, _ = env.object_pose(goal.obj)
        return bool(pos[2] - env.object_sizes[goal.obj] / 2 >= LIFT_HEIGHT)

    def goal_places(self, goal, names):
        return {goal.obj: "in the gripper"}

    def oracle_plan(self, env, goal):
        if self.is_success(env, goal):
            return []
        b = Blocks(env)
        if b.held is not None and b.held != goal.obj:
            b.move(b.held)
        b.clear(goal.obj)
        b.plan.append(SkillCall("pick", obj=goal.obj))
        return b.plan
