"""block2block (Language-Table): push one block next to another."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.tasks.base import register_task
from envs.tasks.push.base import PushTask, choice, pairs
from envs.tasks.push.geometry import BLOCK2BLOCK_DIST, relation_ok
from envs.tasks.push.language import PREPOSITIONS, PUSH_VERBS
from envs.vocab import SkillCall


@dataclass(frozen=True)
class BlockGoal:
    """Push block `obj` relative to block `target` (`relation` as in the plan language)."""

    obj: int
    target: int
    relation: str = "next to"
    anchor: tuple[float, float] | None = None  # reference block's position when the instruction was given


@register_task
class Block2Block(PushTask):
    name = "block2block"
    templates = tuple(f"{v} the {{obj}} {p} the {{target}}" for v in PUSH_VERBS for p in PREPOSITIONS)
    heldout_templates = (
        "nudge the {obj} over to the {target}",
        "shove the {obj} up against the {target}",
        "bring the {obj} beside the {target}",
    )
    success_doc = "the two blocks' centres are less than 0.05 m apart"

    def draw_goal(self, rng, objects, xy):
        apart = [
            (i, j) for i, j in pairs(len(objects)) if np.linalg.norm(xy[i] - xy[j]) > BLOCK2BLOCK_DIST + 0.01
        ]
        if not apart:
            return None
        i, j = choice(rng, apart)
        return BlockGoal(i, j)

    def slots_for(self, template, goal, objects):
        return {"obj": goal.obj, "target": goal.target}

    def goal_from_slots(self, template, slots, objects):
        return BlockGoal(slots["obj"], slots["target"]) if slots["obj"] != slots["target"] else None

    def is_success(self, env, goal):
        return relation_ok(env.block_xy(goal.obj), env.block_xy(goal.target), "next to")

    def oracle_plan(self, env, goal):
        return (
            []
            if self.is_success(env, goal)
            else [SkillCall("push", obj=goal.obj, target=goal.target, relation="next to")]
        )
