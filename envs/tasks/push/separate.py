"""separate (Language-Table): push a block away from the one block it touches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.tasks.base import register_task
from envs.tasks.push.base import PushTask, choice
from envs.tasks.push.geometry import (
    JOINED_DIST,
    RELATION_VECTORS,
    SEPARATE_OFFSET,
    inside_bounds,
    on_board_target,
    separated,
    unit,
)
from envs.vocab import SkillCall


@dataclass(frozen=True)
class SeparateGoal:
    """Push block `obj` away from block `avoid`."""

    obj: int
    avoid: int


@register_task
class Separate(PushTask):
    name = "separate"
    templates = (
        "pull the {obj} apart from the {target}",
        "move the {obj} away from the {target}",
        "separate the {obj} from the {target}",
        "push the {obj} away from the {target}",
        "slide the {obj} away from the {target}",
    )
    heldout_templates = (
        "get the {obj} away from the {target}",
        "put some space between the {obj} and the {target}",
    )
    success_doc = (
        "the block is within 0.025 m of the point 0.1 m from the avoided block on the line from it "
        "through the block (i.e. 0.075-0.125 m from the avoided block); scenes have the block closer "
        "than 0.08 m to exactly one other block, the one to avoid"
    )

    def draw_goal(self, rng, objects, xy):
        n = len(objects)
        close = [
            (i, [j for j in range(n) if j != i and np.linalg.norm(xy[i] - xy[j]) < JOINED_DIST])
            for i in range(n)
        ]
        touching = [(i, js[0]) for i, js in close if len(js) == 1]
        touching = [
            (i, j)
            for i, j in touching
            if inside_bounds(xy[j] + SEPARATE_OFFSET * unit(xy[i] - xy[j])) and not separated(xy[i], xy[j])
        ]
        if not touching:
            return None
        i, j = choice(rng, touching)
        return SeparateGoal(i, j)

    def slots_for(self, template, goal, objects):
        return {"obj": goal.obj, "target": goal.avoid}

    def goal_from_slots(self, template, slots, objects):
        return SeparateGoal(slots["obj"], slots["target"]) if slots["obj"] != slots["target"] else None

    def is_success(self, env, goal):
        return separated(env.block_xy(goal.obj), env.block_xy(goal.avoid))

    def oracle_plan(self, env, goal):
        if self.is_success(env, goal):
            return []
        # The plan language pushes beside a block along a board axis; the skill aims 0.095 m out, which is
        # inside both this task's ring (0.075-0.125 m) and Language-Table's relative-location region.
        xy, ref = env.block_xy(goal.obj), env.block_xy(goal.avoid)
        away = unit(xy - ref)
        ok = [r for r in sorted(RELATION_VECTORS) if on_board_target(ref + 0.095 * RELATION_VECTORS[r])]
        rel = max(ok or sorted(RELATION_VECTORS), key=lambda r: float(RELATION_VECTORS[r] @ away))
        return [SkillCall("push", obj=goal.obj, target=goal.avoid, relation=rel)]
