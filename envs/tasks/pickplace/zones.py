"""put_in_zone and sort_by_color: cubes go into coloured zones (one shared oracle and success test)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envs.pickplace import ZONE_SIDE
from envs.tasks.base import register_task
from envs.tasks.pickplace.base import PickPlaceTask
from envs.tasks.pickplace.planning import Blocks
from envs.tasks.pickplace.scene import (
    HELDOUT_COMBOS,
    focus_objects,
    n_objects,
    random_towers,
    sample_objects,
    zone_colors,
)


@dataclass(frozen=True)
class ZoneGoal:
    """Each (cube, zone colour) pair: the cube lies in that zone."""

    assign: tuple[tuple[int, str], ...]


class ZoneGoalMixin:
    """Shared oracle and success predicate of the tasks that put cubes in zones (a mixin, not a task)."""

    def is_success(self, env, goal):
        graph = env.support_graph()
        return all(env.in_zone(i, z, graph) for i, z in goal.assign)

    def goal_places(self, goal, names):
        return {i: f"in the {z} zone" for i, z in goal.assign}

    def oracle_plan(self, env, goal):
        want = dict(goal.assign)
        b = Blocks(env)
        graph = env.support_graph()
        placed = {i for i in want if env.in_zone(i, want[i], graph)}

        def dest(c: int) -> dict[str, Any]:
            # A blocker that belongs in a zone goes straight there: one move instead of two.
            if c in want and c not in placed:
                placed.add(c)
                return {"zone": want[c]}
            return {}

        if b.held is not None:
            b.move(b.held, **dest(b.held))
        for i, _ in goal.assign:
            if i in placed:
                continue
            b.clear(i, dest)
            b.move(i, **dest(i))
        return b.plan


@register_task
class PutInZoneTask(ZoneGoalMixin, PickPlaceTask):
    name = "put_in_zone"
    templates = (
        "put all the {color} blocks in the {zone} zone",
        "move every {color} cube into the {zone} zone",
        "<bring> (all the|all|all of the) {color} (blocks|cubes|ones) <into> the {zone} (zone|area|region)",
        "<bring> (every|each) {color} (block|cube) <into> the {zone} (zone|area|region)",
        "put {blocks} in the {zone} zone",
        "<bring> {blocks} <into> the {zone} (zone|area|region)",
        "place {blocks} inside the {zone} area",
    )
    goal_templates = (
        "{blocks} <should> (be|end up|go) in the {zone} (zone|area)",
        "the {zone} zone <should> (hold|contain|have) {blocks}",
        "<want> {blocks} in the {zone} (zone|area)",
        "(all the|the) {color} (blocks|cubes) <should> (be|go) in the {zone} zone",
    )
    heldout_templates = (
        "gather all {color} cubes in the {zone} square",
        "the {zone} zone should end up holding {blocks}",
    )
    success_doc = (
        f"every goal cube lies in the zone: its centre within the zone's {ZONE_SIDE * 100:g} cm square, flat and resting "
        "(on the table or on a cube), not held."
    )

    def draw_scene(self, rng, split):
        n = n_objects(rng, split, self.n_objects)
        zones = zone_colors(rng, int(rng.integers(2, 5)))
        objects = sample_objects(rng, split, n)
        zone = zones[int(rng.integers(len(zones)))]
        if rng.random() < 0.5:  # by colour: all cubes of the colour of one (focus) cube
            color = objects[focus_objects(rng, objects, 1)[0]].color
            blocks = [i for i, o in enumerate(objects) if o.color == color]
        else:
            blocks = sorted(focus_objects(rng, objects, int(rng.integers(1, 4))))
        towers = random_towers(rng, n, 1, (2, 3)) if rng.random() < 0.4 else []
        return objects, ZoneGoal(tuple((i, zone) for i in blocks)), towers, zones

    def slots_for(self, template, goal, objects):
        blocks = [i for i, _ in goal.assign]
        zone = goal.assign[0][1]
        colors = {objects[i].color for i in blocks}
        by_color = len(colors) == 1 and blocks == [i for i, o in enumerate(objects) if o.color in colors]
        if "color" in self.grammar.slot_names(template):
            return {"color": colors.pop(), "zone": zone} if by_color else None
        return {"blocks": blocks, "zone": zone}

    def goal_from_slots(self, template, slots, objects):
        if "color" in slots:
            blocks = [i for i, o in enumerate(objects) if o.color == slots["color"]]
        else:
            blocks = sorted(slots["blocks"])
        return ZoneGoal(tuple((i, slots["zone"]) for i in blocks)) if blocks else None


@register_task
class SortByColorTask(ZoneGoalMixin, PickPlaceTask):
    name = "sort_by_color"
    templates = (
        "sort the blocks by color",
        "sort the (blocks|cubes) (by color|by their color|into the zones by color|by color into the zones)",
        "put (every|each) (block|cube) in the zone of its color",
        "<bring> (every|each) (block|cube) (to|into) the zone (of its color|of the same color|that matches its color)",
        "sort the (cubes|blocks) into the zones (matching|that match) their colors",
        "place each cube in the zone with the same color",
    )
    goal_templates = (
        "(every|each) (block|cube) <should> (be|end up|go) in the zone of its( own|) color",
        "<want> (every|each) (block|cube) in the zone of its( own|) color",
        "(all the |the |)(blocks|cubes) <should> be sorted by color",
    )
    heldout_templates = (
        "match every cube to the zone painted like it",
        "group the blocks into their color zones",
    )
    success_doc = (
        "every cube lies in the zone of its own colour "
        f"(centre within the {ZONE_SIDE * 100:g} cm square, flat, resting, not held)."
    )

    def draw_scene(self, rng, split):
        n = n_objects(rng, split, self.n_objects)
        k = max(int(rng.integers(2, 5)), (n + 1) // 2)  # at most 2-3 cubes per zone
        must = []
        if split == "L2":
            must = [sorted(HELDOUT_COMBOS)[int(rng.integers(len(HELDOUT_COMBOS)))][0]]
        zones = zone_colors(rng, min(k, 4), must)
        objects = sample_objects(rng, split, n, colors=zones)
        towers = random_towers(rng, n, 1, (2, 3)) if rng.random() < 0.4 else []
        goal = ZoneGoal(tuple((i, o.color) for i, o in enumerate(objects)))
        return objects, goal, towers, zones

    def goal_from_slots(self, template, slots, objects):
        return ZoneGoal(tuple((i, o.color) for i, o in enumerate(objects)))
