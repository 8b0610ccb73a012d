"""unstack: every cube rests directly on the table."""

from __future__ import annotations

from dataclasses import dataclass

from envs.geometry import REST_TOL
from envs.tasks.base import register_task
from envs.tasks.pickplace.base import PickPlaceTask
from envs.tasks.pickplace.planning import Blocks
from envs.tasks.pickplace.scene import decor_zones, focus_objects, n_objects, random_towers, sample_objects


@dataclass(frozen=True)
class UnstackGoal:
    """Every listed cube rests directly on the table."""

    blocks: tuple[int, ...]


@register_task
class UnstackTask(PickPlaceTask):
    name = "unstack"
    templates = (
        "unstack the tower",
        "unstack (the tower|the towers|the stack|the stacks|all the blocks|all the cubes|everything|the blocks|the cubes)",
        "take the (tower|towers|stack|stacks) apart",
        "(put|place|set) (every|each) (block|cube) (on|onto|down on) the table",
        "(put|place|set) all the (blocks|cubes) (on|onto|down on) the table",
        "make sure no (block|cube) is (on top of|on) another (block|cube)",
        "(break up|take down|undo) the (tower|towers|stack|stacks)",
    )
    goal_templates = (
        "(every|each) (block|cube) <should> (be|rest|sit|lie) (on|directly on) the table",
        "(all the|all) (blocks|cubes) <should> be on the table",
        "no (block|cube) <should> (be|rest|sit) on (another|another block|another cube|top of another)",
        "<want> (every|each) (block|cube) on the table",
        "<want> (no towers|no stacks)( left|)",
    )
    heldout_templates = ("dismantle the stack", "spread the cubes out so that each one rests on the table")
    success_doc = (
        f"every cube rests directly on the table: flat, bottom within {REST_TOL * 100:g} cm of the table top, "
        "not held."
    )

    def draw_scene(self, rng, split):
        n = n_objects(rng, split, self.n_objects)
        objects = sample_objects(rng, split, n)
        first = focus_objects(rng, objects, 1)
        lengths = (3, 4) if split == "L3" else (2, 3)
        count = 2 if split == "L3" else 1
        towers = random_towers(rng, n, count, lengths)
        if split == "L2" and not any(first[0] in t for t in towers):
            towers[0][-1] = first[0]  # the held-out cube takes part in the tower
        return objects, UnstackGoal(tuple(range(n))), towers, decor_zones(rng)

    def goal_from_slots(self, template, slots, objects):
        return UnstackGoal(tuple(range(len(objects))))

    def is_success(self, env, goal):
        graph = env.support_graph()
        return all(graph[i] == -1 for i in goal.blocks)

    def goal_places(self, goal, names):
        return dict.fromkeys(goal.blocks, "on the table")

    def oracle_plan(self, env, goal):
        b = Blocks(env)
        if b.held is not None:
            b.move(b.held)
        for i in goal.blocks:
            if b.parent[i] == -1:
                b.clear(i)
            elif b.parent[i] is None:  # loose or tilted on the table: set it down flat
                b.clear(i)
                b.move(i)
        return b.plan
