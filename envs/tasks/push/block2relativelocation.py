"""block2relativelocation (Language-Table): push a block a little or far in one of 8 directions."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from envs.tasks.base import register_task
from envs.tasks.push.base import PushTask, choice
from envs.tasks.push.geometry import MAGNITUDES, RELATIVE_DIST, inside_bounds, offset_point
from envs.vocab import DIRECTIONS, SkillCall

if TYPE_CHECKING:
    from envs.push import PushEnv


@dataclass(frozen=True)
class OffsetGoal:
    """Push block `obj` by an offset from where it was when the instruction was given."""

    obj: int
    direction: str
    distance: str
    target_xy: tuple[float, float] | None = None  # fixed by bind()


def is_near(template: str) -> bool:
    """Whether a template says the small distance ("slightly" or a synonym); the others say the far one."""
    return "{slightly}" in template or template.startswith("slightly ") or "small push" in template


_NEAR_TEMPLATES = (
    "slightly {verb} the {{obj}} {{dir}}",
    "{verb} the {{obj}} {{slightly}} {{dir}}",
    "{verb} the {{obj}} {{dir}} {{slightly}}",
)


@register_task
class Block2RelativeLocation(PushTask):
    name = "block2relativelocation"
    templates = (
        *(t.format(verb=v) for t in _NEAR_TEMPLATES for v in ("move", "push", "slide")),
        *(f"{v} the {{obj}} {{dir}}" for v in ("move", "push", "slide")),
    )
    heldout_templates = (
        "nudge the {obj} {slightly} {dir}",
        "shift the {obj} {dir}",
        "give the {obj} a small push {dir}",
    )
    success_doc = (
        "the block's centre is within 0.1 m of the point 0.15 m ('slightly', 'a bit', ...) or "
        "0.25 m (no qualifier) from its start position in one of 8 directions"
    )

    def draw_goal(self, rng, objects, xy):
        i = int(rng.integers(len(objects)))
        direction, distance = choice(rng, DIRECTIONS), choice(rng, ("slightly", "far"))
        if not inside_bounds(offset_point(xy[i], direction, distance)):
            return None
        return OffsetGoal(i, direction, distance)

    def slots_for(self, template, goal, objects):
        # The distance is said by the template: near ones carry "slightly" or a synonym.
        if is_near(template) != (goal.distance == "slightly"):
            return None
        return {"obj": goal.obj, "dir": goal.direction, "slightly": "slightly"}

    def goal_from_slots(self, template, slots, objects):
        return OffsetGoal(slots["obj"], slots["dir"], "slightly" if is_near(template) else "far")

    def bind(self, env, goal):
        if goal.target_xy is not None:
            return goal
        t = offset_point(env.block_xy(goal.obj), goal.direction, goal.distance)
        return replace(goal, target_xy=(float(t[0]), float(t[1])))

    def is_success(self, env, goal):
        return (
            goal.target_xy is not None
            and float(np.linalg.norm(env.block_xy(goal.obj) - np.asarray(goal.target_xy))) < RELATIVE_DIST
        )

    def oracle_plan(self, env, goal):
        if goal.target_xy is None or self.is_success(env, goal):
            return []
        return [best_offset_call(env, goal.obj, np.asarray(goal.target_xy), RELATIVE_DIST)]


def best_offset_call(env: PushEnv, i: int, point: np.ndarray, radius: float) -> SkillCall:
    """The direction/distance push whose target lands closest to `point` from where block i is now
    (after a partial push the original call would overshoot)."""
    xy = env.block_xy(i)
    calls = [SkillCall("push", obj=i, direction=d, distance=s) for d in DIRECTIONS for s in MAGNITUDES]
    return min(calls, key=lambda c: float(np.linalg.norm(offset_point(xy, c.direction, c.distance) - point)))
