"""block2absolutelocation (Language-Table): push a block to one of the 9 board locations."""

from __future__ import annotations

from dataclasses import dataclass

from envs.tasks.base import register_task
from envs.tasks.push.base import PushTask, choice
from envs.tasks.push.geometry import LOCATION_POINTS, in_location
from envs.tasks.push.language import PUSH_VERBS
from envs.vocab import SkillCall


@dataclass(frozen=True)
class LocationGoal:
    """Push block `obj` to a board location."""

    obj: int
    location: str


@register_task
class Block2AbsoluteLocation(PushTask):
    name = "block2absolutelocation"
    templates = (
        *(f"{v} the {{obj}} to the {{loc}}" for v in PUSH_VERBS),
        "push the {obj} towards the {loc}",
        "move the {obj} over to the {loc}",
    )
    heldout_templates = (
        "nudge the {obj} into the {loc}",
        "bring the {obj} to the {loc}",
        "the {obj} should go to the {loc}",
    )
    success_doc = (
        "the block's centre is within 0.115 m (0.1 m for the center) of the location point; "
        "location points are the board's corners, edge midpoints and centre, shifted 0.025 m in -x"
    )

    def draw_goal(self, rng, objects, xy):
        i = int(rng.integers(len(objects)))
        loc = choice(rng, sorted(LOCATION_POINTS))
        if in_location(xy[i], loc):
            return None
        return LocationGoal(i, loc)

    def slots_for(self, template, goal, objects):
        return {"obj": goal.obj, "loc": goal.location}

    def goal_from_slots(self, template, slots, objects):
        return LocationGoal(slots["obj"], slots["loc"])

    def is_success(self, env, goal):
        return in_location(env.block_xy(goal.obj), goal.location)

    def oracle_plan(self, env, goal):
        return [] if self.is_success(env, goal) else [SkillCall("push", obj=goal.obj, location=goal.location)]
