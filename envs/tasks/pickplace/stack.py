"""stack: build a tower of the named cubes in the named order (bottom cube anywhere)."""

from __future__ import annotations

from dataclasses import dataclass

from envs.geometry import ALIGN_FRACTION, REST_TOL
from envs.language import LIST_SEP, ObjectList
from envs.tasks.base import register_task
from envs.tasks.pickplace.base import PickPlaceTask
from envs.tasks.pickplace.language import CUBE_GRAMMAR, THE_CUBE
from envs.tasks.pickplace.planning import Blocks
from envs.tasks.pickplace.scene import decor_zones, focus_objects, n_objects, random_towers, sample_objects


@dataclass(frozen=True)
class StackGoal:
    """A tower: `order[0]` at the bottom, each next cube resting on the previous one."""

    order: tuple[int, ...]


# Chains name the tower top-down: "the a on the b on the c" (c at the bottom).
CHAINS: dict[str, str] = {
    "chain_on": " on ",
    "chain_onto": " onto ",
    "chain_ontop": " on top of ",
    "chain_resting": " rests on ",
}


@register_task
class StackTask(PickPlaceTask):
    name = "stack"
    templates = (
        "stack {chain_on}",
        "(put|place|set|stack|move) {chain_onto}",
        "<place> {chain_on}",
        "(put|place|set|stack) {chain_ontop}",
        "<make> a (tower|stack|pile) with {bottom} at the bottom, {rest_then}",
        ("<make> a (tower|stack|pile) (of|from|out of|using) {bu_list}, (from bottom to top|bottom to top|bottom first|"
        "starting from the bottom)"),
    )
    goal_templates = (
        "<want> {chain_on}",
        "{chain_ontop} (is the goal|is what i want)",
        "(i want|i'd like|i need) a (tower|stack) of {bu_list}, (from bottom to top|bottom first)",
    )
    heldout_templates = (
        "pile up {bu_list} in that order, starting at the bottom",
        "i want a tower where {chain_resting}",
    )
    success_doc = (
        "each cube of the order rests on the previous one: flat, its bottom within "
        f"{REST_TOL * 100:g} cm of the top of the one below and their centres closer than {ALIGN_FRACTION:g} "
        "x the mean edge; not held. "
        "The bottom cube may rest anywhere."
    )
    grammar = CUBE_GRAMMAR.extend(
        **{key: ObjectList(THE_CUBE, sep=sep) for key, sep in CHAINS.items()},
        bottom=THE_CUBE,
        rest_then=ObjectList(THE_CUBE, sep=", ", lead="then ", read_sep=LIST_SEP),
        bu_list=ObjectList(THE_CUBE),
    )

    def draw_scene(self, rng, split):
        n = n_objects(rng, split, self.n_objects)
        objects = sample_objects(rng, split, n)
        k = int(rng.integers(3, 5)) if split == "L3" else int(rng.integers(2, 4))
        order = focus_objects(rng, objects, k)
        order = [order[j] for j in rng.permutation(k)]
        towers = random_towers(rng, n, 1, (2, 3)) if rng.random() < 0.4 else []
        return objects, StackGoal(tuple(order)), towers, decor_zones(rng)

    def slots_for(self, template, goal, objects):
        order = list(goal.order)
        return {
            **dict.fromkeys(CHAINS, order[::-1]),
            "bottom": order[0],
            "rest_then": order[1:],
            "bu_list": order,
        }

    def goal_from_slots(self, template, slots, objects):
        chain = [key for key in CHAINS if key in slots]
        if chain:
            order = slots[chain[0]][::-1]
        elif "bu_list" in slots:
            order = slots["bu_list"]
        else:
            order = [slots["bottom"], *slots["rest_then"]]
        ok = len(order) >= 2 and len(set(order)) == len(order)
        return StackGoal(tuple(order)) if ok else None

    def is_success(self, env, goal):
        graph = env.support_graph()
        return all(graph[up] == down for down, up in zip(goal.order, goal.order[1:]))

    def goal_places(self, goal, names):
        places = {goal.order[0]: "at the bottom of the tower"}
        places.update({up: f"on the {names[down]}" for down, up in zip(goal.order, goal.order[1:])})
        return places

    def goal_supports(self, goal):
        return {up: down for down, up in zip(goal.order, goal.order[1:])}

    def oracle_plan(self, env, goal):
        b = Blocks(env)
        order = goal.order
        # The bottom cube may stand anywhere, except on a cube that has to go above it in the tower.
        base_ok = not set(b.below(order[0])) & set(order)
        done = int(base_ok)  # length of the correct prefix of the tower
        while 0 < done < len(order) and b.parent[order[done]] == order[done - 1] and b.held != order[done]:
            done += 1
        if b.held is not None:
            nxt_ok = 0 < done < len(order) and b.held == order[done] and not b.above(order[done - 1])
            b.move(b.held, target=order[done - 1] if nxt_ok else None)
            done += int(nxt_ok)
        if done == 0:
            b.clear(order[0])
            b.move(order[0])
            done = 1
        for m in range(done, len(order)):
            below, cube = order[m - 1], order[m]
            b.clear(below)
            b.clear(cube)
            b.move(cube, target=below)
        return b.plan
