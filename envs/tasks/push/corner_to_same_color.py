"""corner_to_same_color (PaLM-E T1): the block closest to a corner goes to the other block of its colour."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from envs.catalogue import ObjectDesc
from envs.tasks.base import register_task
from envs.tasks.push.base import PushTask, choice
from envs.tasks.push.geometry import BLOCK2BLOCK_DIST, CORNERS, LOCATION_POINTS, relation_ok
from envs.vocab import SkillCall


@dataclass(frozen=True)
class CornerColorGoal:
    """T1: the block closest to `corner` goes next to the other block of its colour."""

    corner: str
    obj: int | None = None  # fixed by bind()
    partner: int | None = None


def closest_to(xy: np.ndarray, point: np.ndarray) -> int:
    """Index of the block (rows of `xy`, m) nearest to `point`."""
    return int(np.argmin(np.linalg.norm(xy - point, axis=1)))


def partner(objects: Sequence[ObjectDesc], i: int) -> int | None:
    """The other block of block i's colour, or None unless there is exactly one."""
    same = [j for j, o in enumerate(objects) if j != i and o.color == objects[i].color]
    return same[0] if len(same) == 1 else None


@register_task
class CornerToSameColor(PushTask):
    name = "corner_to_same_color"
    templates = (
        (
            "there is a block that is closest to the {corner}. "
            "push that block to the other block of the same color"
        ),
        "push the block closest to the {corner} to the other block of the same color",
        "find the block nearest to the {corner} and push it to the other block of its color",
        "move the block that is closest to the {corner} next to the other block of the same color",
        "take the block closest to the {corner} and slide it to the other block with the same color",
    )
    heldout_templates = (
        "which block is nearest to the {corner}? bring it next to the block that shares its color",
        "the block closest to the {corner} belongs beside its same colored partner",
    )
    success_doc = (
        "the block that was closest to the corner point when the instruction was given is less than "
        "0.05 m from the other block of its colour (scenes have exactly one such block)"
    )

    def draw_goal(self, rng, objects, xy):
        corner = choice(rng, CORNERS)
        i = closest_to(xy, LOCATION_POINTS[corner])
        j = partner(objects, i)
        if j is None or np.linalg.norm(xy[i] - xy[j]) < BLOCK2BLOCK_DIST + 0.01:
            return None
        # The closest block must be clearly closest, or "closest" would be ambiguous to a viewer.
        d = np.sort(np.linalg.norm(xy - LOCATION_POINTS[corner], axis=1))
        if len(d) > 1 and d[1] - d[0] < 0.02:
            return None
        return CornerColorGoal(corner)

    def slots_for(self, template, goal, objects):
        return {"corner": goal.corner}

    def goal_from_slots(self, template, slots, objects):
        return CornerColorGoal(slots["corner"])

    def bind(self, env, goal):
        if goal.obj is not None:
            return goal
        i = closest_to(env.blocks_xy(), LOCATION_POINTS[goal.corner])
        return replace(goal, obj=i, partner=partner(env.objects, i))

    def is_success(self, env, goal):
        return goal.partner is not None and relation_ok(
            env.block_xy(goal.obj), env.block_xy(goal.partner), "next to"
        )

    def oracle_plan(self, env, goal):
        if goal.partner is None or self.is_success(env, goal):
            return []
        return [SkillCall("push", obj=goal.obj, target=goal.partner, relation="next to")]
