"""color_to_location: push every block of one colour to a board location."""

from __future__ import annotations

from dataclasses import dataclass

from envs.push_blocks import color_counts
from envs.tasks.base import register_task
from envs.tasks.push.base import PushTask, choice, location_pushes
from envs.tasks.push.geometry import CORNERS, LOCATION_POINTS, in_location


@dataclass(frozen=True)
class ColorLocationGoal:
    """Push every block of `color` to `location`."""

    color: str
    location: str


@register_task
class ColorToLocation(PushTask):
    name = "color_to_location"
    templates = (
        "put the {color} blocks in the {loc}",
        "push the {color} blocks to the {loc}",
        "move all the {color} blocks to the {loc}",
        "slide the {color} blocks to the {loc}",
        "gather the {color} blocks at the {loc}",
    )
    heldout_templates = ("bring every {color} block to the {loc}", "the {color} blocks belong at the {loc}")
    success_doc = (
        "every block of the colour is at the location (block2absolutelocation's test: within 0.115 m, "
        "0.1 m for the center); scenes have 2 or more blocks of the colour, and at most 2 for a corner"
    )

    def draw_goal(self, rng, objects, xy):
        counts = color_counts(objects)
        colours = sorted(c for c, n in counts.items() if n >= 2)
        if not colours:
            return None
        colour = choice(rng, colours)
        locs = sorted(LOCATION_POINTS) if counts[colour] <= 2 else sorted(set(LOCATION_POINTS) - set(CORNERS))
        loc = choice(rng, locs)
        return ColorLocationGoal(colour, loc)

    def slots_for(self, template, goal, objects):
        return {"color": goal.color, "loc": goal.location}

    def goal_from_slots(self, template, slots, objects):
        return (
            ColorLocationGoal(slots["color"], slots["loc"])
            if slots["color"] in {o.color for o in objects}
            else None
        )

    def _blocks(self, env, goal) -> list[int]:
        return [k for k, o in enumerate(env.objects) if o.color == goal.color]

    def is_success(self, env, goal):
        xy = env.blocks_xy()
        return all(in_location(xy[k], goal.location) for k in self._blocks(env, goal))

    def oracle_plan(self, env, goal):
        if self.is_success(env, goal):
            return []
        ks = self._blocks(env, goal)
        return location_pushes(env, ks, dict.fromkeys(ks, goal.location))
