"""The shared base of the pushing tasks: scene sampling (Language-Table's reset), phrasing, goal binding.

Every oracle plan is a list of push steps computed from the CURRENT scene, so the oracle planner
can call it again after any step (failed, partial or successful) and continue correctly.
Goals that refer to the scene at the moment the instruction is given (the start of a relative
push, the block closest to a corner, the blocks on one side) are fixed by `bind(env, goal)`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from envs.catalogue import ObjectDesc
from envs.language import Grammar, TemplatePhrasing
from envs.push import EFFECTOR_START, WORKSPACE_BUFFER, X_MAX, X_MIN, Y_MAX, Y_MIN
from envs.push_blocks import sample_blocks
from envs.tasks.base import Task, TaskInstance
from envs.tasks.push.geometry import ARM_CLEARANCE, LOCATION_POINTS, MIN_CENTRE_DIST, in_location
from envs.tasks.push.language import PUSH_GRAMMAR
from envs.vocab import SkillCall

if TYPE_CHECKING:
    from envs.push import PushEnv

PLACED_MARGIN = 0.005  # a block counts as placed by the oracle only this far inside a success region


def sample_layout(
    rng: np.random.Generator, n: int, tries: int = 2000
) -> list[tuple[float, float, float]] | None:
    """Language-Table reset: blocks uniform in the buffered board, random yaw, footprints >= 0.0175 m apart,
    away from the effector; None if the blocks do not fit."""
    lo = np.array([X_MIN + WORKSPACE_BUFFER, Y_MIN + WORKSPACE_BUFFER])
    hi = np.array([X_MAX - WORKSPACE_BUFFER, Y_MAX - WORKSPACE_BUFFER])
    placed: list[np.ndarray] = []
    for _ in range(tries):
        xy = rng.uniform(lo, hi)
        if np.linalg.norm(xy - EFFECTOR_START) < ARM_CLEARANCE:
            continue
        if all(np.linalg.norm(xy - q) >= MIN_CENTRE_DIST for q in placed):
            placed.append(xy)
            if len(placed) == n:
                yaws = rng.uniform(-np.pi, np.pi, size=n)
                return [(float(q[0]), float(q[1]), float(a)) for q, a in zip(placed, yaws)]
    return None


class PushTask(TemplatePhrasing, Task):
    """A pushing task: draws a goal for a Language-Table scene; instructions through `PUSH_GRAMMAR`.

    A task implements `draw_goal`, `slots_for` (when its templates have slots), `goal_from_slots`,
    `is_success`, `oracle_plan` and, for goals that refer to the scene as it is, `bind`.
    """

    world: ClassVar[str] = "push"
    grammar: ClassVar[Grammar] = PUSH_GRAMMAR
    random_phrases: ClassVar[bool] = True  # Language-Table draws a synonym for every slot
    block_set: str = "N_CHOOSE_K"  # set by PushEnv

    def sample(self, rng: np.random.Generator, split: str = "train") -> TaskInstance:
        for _ in range(200):
            objects = sample_blocks(rng, split, self.block_set)
            layout = sample_layout(rng, len(objects))
            if layout is None:
                continue
            xy = np.array([(x, y) for x, y, _ in layout])
            goal = self.draw_goal(rng, objects, xy)
            if goal is None:
                continue
            template, text = self.say(rng, goal, objects, split)
            return TaskInstance(text, goal, objects, layout, {"block_set": self.block_set, "template": template})
        raise RuntimeError(f"{self.name}: could not sample a valid scene from block set {self.block_set!r}")

    @abstractmethod
    def draw_goal(self, rng: np.random.Generator, objects: list[ObjectDesc], xy: np.ndarray) -> Any | None:
        """A goal for this scene (blocks at `xy`, shape (n, 2) in m), or None if the scene does not suit."""

    def bind(self, env: PushEnv, goal: Any) -> Any:
        """Fix the parts of a goal that refer to the scene as it is now (default: nothing to fix)."""
        return goal


@dataclass(frozen=True)
class NoArgGoal:
    """A goal with no parameters (the task says everything)."""

    kind: str


def pairs(n: int) -> list[tuple[int, int]]:
    """Ordered pairs of distinct block indices."""
    return [(i, j) for i in range(n) for j in range(n) if i != j]


def occupied(point: np.ndarray, xy: np.ndarray, ignore: Sequence[int]) -> bool:
    """Whether another block sits where a block should go (Language-Table rejects layouts its oracle cannot
    solve; a target covered by a third block is one)."""
    return any(np.linalg.norm(point - q) < MIN_CENTRE_DIST for k, q in enumerate(xy) if k not in ignore)


def choice(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    """One element of `seq`, drawn with one `rng.integers` call."""
    return seq[int(rng.integers(len(seq)))]


def location_pushes(env: PushEnv, blocks: Sequence[int], location_of: dict[int, str]) -> list[SkillCall]:
    """Push each listed block that is not yet well inside its location; farthest from its location first.

    Farthest first, so that a planner imitating it can always take the block farthest from where it belongs: a
    block just pushed in is then the last candidate, never the next (nearest first made it the nearest again,
    and the model pushed it again and again). Oracle success is the same (training seeds, results/palme_tiny_recipe).
    """
    xy = env.blocks_xy()
    todo = [k for k in blocks if not in_location(xy[k], location_of[k], PLACED_MARGIN)]
    todo.sort(key=lambda k: float(np.linalg.norm(xy[k] - LOCATION_POINTS[location_of[k]])), reverse=True)
    return [SkillCall("push", obj=k, location=location_of[k]) for k in todo]
