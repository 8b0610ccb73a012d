"""The shared base of the pick-and-place tasks: scene sampling per split, phrasing through `CUBE_GRAMMAR`."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np

from envs.catalogue import MAX_OBJECTS, ObjectDesc
from envs.language import Grammar, TemplatePhrasing
from envs.tasks.base import Task, TaskInstance
from envs.tasks.pickplace.language import CUBE_GRAMMAR
from envs.tasks.pickplace.scene import sample_layout


class PickPlaceTask(TemplatePhrasing, Task):
    """A pick-and-place task: draws cubes, a goal, towers and zones; canonical instructions through `grammar`.

    A task implements `draw_scene`, `slots_for` (when its templates have slots), `goal_from_slots`,
    `is_success` and `oracle_plan` (usually with `planning.Blocks`).
    """

    world: ClassVar[str] = "pickplace"
    grammar: ClassVar[Grammar] = CUBE_GRAMMAR

    def __init__(self, n_objects: int | None = None) -> None:
        if n_objects is not None and not 3 <= n_objects <= MAX_OBJECTS:
            raise ValueError(f"n_objects must be in [3, {MAX_OBJECTS}], got {n_objects}")
        self.n_objects = n_objects  # fixed cube count, or None for the split's range

    def sample(self, rng: np.random.Generator, split: str = "train") -> TaskInstance:
        objects, goal, towers, zones = self.draw_scene(rng, split)
        layout = sample_layout(rng, len(objects), towers, zones)
        template, text = self.say(rng, goal, objects, split)
        return TaskInstance(text, goal, objects, layout, extras={"zones": list(zones), "template": template})

    @abstractmethod
    def draw_scene(
        self, rng: np.random.Generator, split: str
    ) -> tuple[list[ObjectDesc], Any, list[list[int]], list[str]]:
        """(objects, goal, initial towers as slot lists bottom-up, zone colours) of one instance."""
