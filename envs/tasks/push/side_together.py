"""side_together (PaLM-E T3): gather the blocks of one board half without bringing any over from the other."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from envs.tasks.base import register_task
from envs.tasks.push.base import PLACED_MARGIN, PushTask, choice
from envs.tasks.push.geometry import JOINED_DIST, SIDE_MARGIN
from envs.vocab import SkillCall


@dataclass(frozen=True)
class SideGoal:
    """T3: gather the blocks on one side (y < 0 is left) without bringing blocks over from the other."""

    side: str
    members: tuple[int, ...] | None = None  # fixed by bind()


def on_side(xy: np.ndarray, side: str) -> bool:
    """Whether a block at `xy` is on a board half ("left": y < 0, "right": y > 0)."""
    return bool(xy[1] < 0) if side == "left" else bool(xy[1] > 0)


def clusters(xy: np.ndarray, members: Sequence[int], link: float = JOINED_DIST) -> list[list[int]]:
    """Connected groups of `members` where blocks closer than `link` are connected."""
    groups: list[list[int]] = []
    left = list(members)
    while left:
        group = [left.pop(0)]
        grew = True
        while grew:
            grew = False
            for k in list(left):
                if any(np.linalg.norm(xy[k] - xy[g]) < link for g in group):
                    group.append(k)
                    left.remove(k)
                    grew = True
        groups.append(group)
    return groups


def edge_first(xy: np.ndarray, members: Sequence[int]) -> list[int]:
    """`members` ordered by distance from the midline y = 0, farthest (nearest the side's edge) first."""
    return sorted(members, key=lambda k: -abs(float(xy[k][1])))


def useful_push(xy: np.ndarray, goal: SideGoal, obj: int, target: int) -> bool:
    """Whether "push block `obj` next to block `target`" is a push toward T3's goal from block positions `xy` (N, 2),
    m: two different blocks, both on the goal's side, not yet in one group (`clusters` at the oracle's link distance,
    JOINED_DIST - PLACED_MARGIN). The oracle's pushes are such pushes; so are others (the side's blocks may be joined
    in any order)."""
    if obj == target or not (on_side(xy[obj], goal.side) and on_side(xy[target], goal.side)):
        return False
    members = [k for k in range(len(xy)) if on_side(xy[k], goal.side)]
    return not any(obj in g and target in g for g in clusters(xy, members, JOINED_DIST - PLACED_MARGIN))


@register_task
class SideTogether(PushTask):
    name = "side_together"
    templates = (
        (
            "push all the blocks that are on the {side} side together, "
            "without bringing over any of the blocks that are on the {other} side"
        ),
        (
            "how to push all the blocks that are on the {side} side together, "
            "without bringing over any of the blocks that are on the {other} side?"
        ),
        "push the blocks on the {side} side together without bringing over blocks from the {other} side",
        (
            "gather all the blocks on the {side} side into one group, "
            "leaving the blocks on the {other} side there"
        ),
        "bring together every block on the {side} side without moving any block over from the {other} side",
    )
    heldout_templates = (
        "cluster the blocks of the {side} half together, keeping the {other} half out of it",
        "collect every block on the {side} side into a group and leave the {other} side alone",
    )
    success_doc = (
        "the blocks that were on the side (y < 0 is left) when the instruction was given form one "
        "group (each within 0.08 m of another, Language-Table's 'together' distance) and every block "
        "is still on the side of the midline it started on"
    )

    def draw_goal(self, rng, objects, xy):
        if np.any(np.abs(xy[:, 1]) < SIDE_MARGIN):
            return None
        side = choice(rng, ("left", "right"))
        members = [k for k in range(len(objects)) if on_side(xy[k], side)]
        if len(members) < 2:
            return None
        return SideGoal(side)

    def slots_for(self, template, goal, objects):
        return {"side": goal.side, "other": "right" if goal.side == "left" else "left"}

    def goal_from_slots(self, template, slots, objects):
        return SideGoal(slots["side"]) if slots["side"] != slots["other"] else None

    def bind(self, env, goal):
        if goal.members is not None:
            return goal
        xy = env.blocks_xy()
        return replace(goal, members=tuple(k for k in range(len(xy)) if on_side(xy[k], goal.side)))

    def is_success(self, env, goal):
        if not goal.members:
            return False
        xy = env.blocks_xy()
        other = "right" if goal.side == "left" else "left"
        sides_kept = all(on_side(xy[k], goal.side if k in goal.members else other) for k in range(len(xy)))
        return sides_kept and len(clusters(xy, goal.members)) == 1

    def oracle_plan(self, env, goal):
        """Edge first: every member not yet joined to the member nearest the side's edge (largest |y|) is pushed
        next to that member, the one nearest the edge first. Both choices read one coordinate per block, and
        every push heads for a block farther from the midline than the pushed one, so pushes lead away from it."""
        if not goal.members or self.is_success(env, goal):
            return []
        xy = env.blocks_xy()
        order = edge_first(xy, goal.members)
        core = next(g for g in clusters(xy, goal.members, JOINED_DIST - PLACED_MARGIN) if order[0] in g)
        return [SkillCall("push", obj=k, target=order[0], relation="next to") for k in order if k not in core]
