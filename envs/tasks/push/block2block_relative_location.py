"""block2block_relative_location (Language-Table): push a block to one side of another."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from envs.tasks.base import register_task
from envs.tasks.push.base import PushTask, choice, occupied, pairs
from envs.tasks.push.block2block import BlockGoal
from envs.tasks.push.geometry import DRAG_DIST, REL_OFFSET, RELATION_VECTORS, inside_bounds, relation_ok
from envs.vocab import SkillCall


@register_task
class Block2BlockRelativeLocation(PushTask):
    name = "block2block_relative_location"
    templates = tuple(
        f"{v} the {{obj}} {{rel}} the {{target}}" for v in ("move", "push", "put", "bring", "slide")
    )
    heldout_templates = (
        "nudge the {obj} {rel} the {target}",
        "place the {obj} {rel} the {target} by pushing it",
    )
    success_doc = (
        "the block is within 0.04 m of the line from 0.04 to 0.088 m (0.5x to 1.1x the 0.08 m offset) "
        "beside the reference block in the named direction, and the reference block has not been "
        "dragged more than 0.05 m"
    )

    def draw_goal(self, rng, objects, xy):
        i, j = choice(rng, pairs(len(objects)))
        rel = choice(rng, sorted(RELATION_VECTORS))
        point = xy[j] + REL_OFFSET * RELATION_VECTORS[rel]
        if not inside_bounds(point) or relation_ok(xy[i], xy[j], rel) or occupied(point, xy, (i, j)):
            return None
        return BlockGoal(i, j, rel)

    def slots_for(self, template, goal, objects):
        return {"obj": goal.obj, "target": goal.target, "rel": goal.relation}

    def goal_from_slots(self, template, slots, objects):
        if slots["obj"] == slots["target"]:
            return None
        return BlockGoal(slots["obj"], slots["target"], slots["rel"])

    def bind(self, env, goal):
        if goal.anchor is not None:
            return goal
        a = env.block_xy(goal.target)
        return replace(goal, anchor=(float(a[0]), float(a[1])))

    def is_success(self, env, goal):
        ref = env.block_xy(goal.target)
        dragged = goal.anchor is not None and np.linalg.norm(ref - np.asarray(goal.anchor)) > DRAG_DIST
        return relation_ok(env.block_xy(goal.obj), ref, goal.relation) and not dragged

    def oracle_plan(self, env, goal):
        if self.is_success(env, goal):
            return []
        return [SkillCall("push", obj=goal.obj, target=goal.target, relation=goal.relation)]
