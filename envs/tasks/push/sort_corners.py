"""sort_corners (PaLM-E T2): sort the blocks by colour into the corners, one corner per colour."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

from envs.push import X_MAX, X_MIN, Y_MAX, Y_MIN
from envs.push_blocks import BLOCK_COLORS, color_counts
from envs.tasks.base import register_task
from envs.tasks.push.base import NoArgGoal, PushTask, location_pushes
from envs.tasks.push.geometry import CORNERS, LOCATION_POINTS, in_location

if TYPE_CHECKING:
    from envs.push import PushEnv


# Each colour's own corner (BLOCK_COLORS' order against CORNERS'), so that a planner can read a block's corner off its
# colour; a colour leaves it only when one of its blocks is held against an edge the corner is not on.
HOME_CORNERS: dict[str, str] = dict(zip(BLOCK_COLORS, CORNERS))
EDGE_HOLD = 0.03  # m: a block centre this close to an edge cannot be pushed away from it


def reachable_corners(xy: np.ndarray) -> set[str]:
    """The corners a block at `xy` can be pushed to: all four, less those off an edge the block is held against.

    A block whose centre lies within `EDGE_HOLD` of an edge can be pushed along that edge but not away from it
    (the pusher cannot get behind it), so only the corners on that edge stay reachable.
    """
    out = set(CORNERS)
    held = {
        "top": xy[0] < X_MIN + EDGE_HOLD,
        "bottom": xy[0] > X_MAX - EDGE_HOLD,
        "left": xy[1] < Y_MIN + EDGE_HOLD,
        "right": xy[1] > Y_MAX - EDGE_HOLD,
    }
    for edge, on in held.items():
        if on:
            out &= {c for c in CORNERS if edge in c.split()}
    return out


def color_corner_assignment(env: PushEnv) -> dict[str, str]:
    """Colour -> corner for sort_corners: each colour's `HOME_CORNERS` corner unless that strands a block.

    Over every assignment of the scene's colours to distinct corners, the least (blocks sent to a corner they
    cannot reach, colours away from their home corner, total block-to-corner distance in m), in that order.
    """
    xy = env.blocks_xy()
    reach = [reachable_corners(xy[k]) for k in range(len(env.objects))]
    colours = sorted({o.color for o in env.objects})
    best, best_cost = {}, (np.inf,)
    for corners in itertools.permutations(CORNERS, len(colours)):
        assign = dict(zip(colours, corners))
        stranded = sum(assign[o.color] not in reach[k] for k, o in enumerate(env.objects))
        away = sum(assign[c] != HOME_CORNERS.get(c) for c in colours)
        dist = sum(float(np.linalg.norm(xy[k] - LOCATION_POINTS[assign[o.color]])) for k, o in enumerate(env.objects))
        cost = (stranded, away, dist)
        if cost < best_cost:
            best, best_cost = assign, cost
    return best


@register_task
class SortCorners(PushTask):
    name = "sort_corners"
    templates = (
        "sort the blocks by colors into corners",
        "how to sort the blocks by colors into corners?",
        "sort the blocks into corners by color",
        "put the blocks of each color into their own corner",
        "push the blocks so that each color is in a different corner",
    )
    heldout_templates = (
        "group the blocks by color, one corner per color",
        "arrange the blocks so every color gets its own corner",
    )
    success_doc = (
        "every block is within 0.115 m of a corner point, blocks of one colour share a corner and "
        "different colours use different corners; scenes have at most 2 blocks per colour"
    )

    def draw_goal(self, rng, objects, xy):
        if max(color_counts(objects).values()) > 2:
            return None
        return NoArgGoal("sort")

    def goal_from_slots(self, template, slots, objects):
        return NoArgGoal("sort")

    def is_success(self, env, goal):
        xy = env.blocks_xy()
        corner_of: dict[str, str] = {}
        for k, o in enumerate(env.objects):
            inside = [c for c in CORNERS if in_location(xy[k], c)]
            if not inside or corner_of.setdefault(o.color, inside[0]) != inside[0]:
                return False
        return len(set(corner_of.values())) == len(corner_of)

    def oracle_plan(self, env, goal):
        if self.is_success(env, goal):
            return []
        assign = color_corner_assignment(env)
        location_of = {k: assign[o.color] for k, o in enumerate(env.objects)}
        xy = env.blocks_xy()
        # Blocks sitting in a corner that belongs to another colour leave first, to free its spots.
        intruders = [
            k for k in location_of if any(in_location(xy[k], c) for c in CORNERS if c != location_of[k])
        ]
        rest = [k for k in location_of if k not in intruders]
        return location_pushes(env, intruders, location_of) + location_pushes(env, rest, location_of)
