"""The `Task` interface, its registry, and the generalisation splits shared by collection and evaluation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from envs.catalogue import ObjectDesc
from envs.vocab import SkillCall

if TYPE_CHECKING:
    from envs.base import TabletopEnv

# Generalisation splits (VIMA-Bench style). `train` is what collection uses; L1-L4 are for evaluation.
SPLITS: dict[str, str] = {
    "train": "training distribution (training seeds, training attribute combinations and phrasings)",
    "L1": "new placements: the training distribution on held-out seeds",
    "L2": "held-out combinations of colour / size / shape",
    "L3": "more objects than in training (6-8) and longer towers",
    "L4": "held-out instruction phrasings: the independent set (tests/data/independent_instructions.json) and each "
          "task's held-out templates, never trained on",
}
# Seeds: training episodes draw from [0, TEST_SEED_START), evaluation from [TEST_SEED_START, ...).
TEST_SEED_START = 1_000_000


def seed_range(split: str) -> tuple[int, int]:
    """Half-open seed range `[lo, hi)` that episodes of `split` draw from (train and test never meet)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    return (0, TEST_SEED_START) if split == "train" else (TEST_SEED_START, 2 * TEST_SEED_START)


def check_seeds(split: str, first: int, count: int = 1, given: str = "") -> tuple[int, int]:
    """Refuse seeds `first .. first + count - 1` unless both ends lie in `seed_range(split)`; returns (first, last).

    `given` says how the user chose them (e.g. "seed_offset=-3 with episodes=3"), for the message.
    Raises ValueError (one line naming the seeds, the split and its range) otherwise, so that an
    evaluation never runs on training seeds and a collection never on evaluation seeds.
    """
    lo, hi = seed_range(split)
    if count < 1:
        raise ValueError(f"need at least one seed, got a count of {count}")
    last = first + count - 1
    if lo <= first and last < hi:
        return first, last
    seeds = f"seed {first}" if count == 1 else f"seeds {first}..{last}"
    kind = "training" if split == "train" else "evaluation"
    raise ValueError(
        f"{given + ' gives ' if given else ''}{seeds}, not inside the {split} seed range [{lo}, {hi}) "
        f"({kind} seeds)"
    )


@dataclass
class TaskInstance:
    """One sampled episode of a task: the scene to build, the instruction and the goal it means."""

    instruction: str
    goal: Any  # task-specific, frozen dataclass; what `is_success` and `oracle_plan` read
    objects: list[ObjectDesc]  # object i of the scene is slot i of the observation
    layout: Any  # world-specific initial placement of objects (and zones)
    extras: dict[str, Any] = field(default_factory=dict)  # world-specific, e.g. target zones


_ABSTRACT = ("sample", "is_success", "oracle_plan", "parse_instruction")


class Task(ABC):
    """A task: sample an instance from a seed, judge success on simulator state, plan from privileged state."""

    name: ClassVar[str]
    world: ClassVar[str]  # "pickplace" or "push"
    templates: ClassVar[tuple[str, ...]]  # training phrasings of the instruction (see envs.language.TemplatePhrasing)
    heldout_templates: ClassVar[tuple[str, ...]] = ()  # phrasings kept for the L4 split
    success_doc: ClassVar[str] = ""  # the success predicate in one sentence, with its thresholds

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # ABCMeta sets __abstractmethods__ only after __init_subclass__ runs, so look at the methods:
        # an intermediate base that leaves an abstract method open is not checked.
        if any(getattr(getattr(cls, m, None), "__isabstractmethod__", False) for m in _ABSTRACT):
            return
        for attr in ("name", "world", "templates", "success_doc"):
            if not getattr(cls, attr, None):
                raise TypeError(f"task class {cls.__name__} must define {attr!r}")

    @abstractmethod
    def sample(self, rng: np.random.Generator, split: str = "train") -> TaskInstance:
        """Draw an instance (scene, instruction, goal) using only `rng`."""

    @abstractmethod
    def is_success(self, env: TabletopEnv, goal: Any) -> bool:
        """Whether the goal holds in the current simulator state."""

    @abstractmethod
    def oracle_plan(self, env: TabletopEnv, goal: Any) -> list[SkillCall]:
        """Shortest valid step sequence from the current state to the goal (without `done`)."""

    @abstractmethod
    def parse_instruction(self, text: str, objects: list[ObjectDesc]) -> Any | None:
        """The goal an instruction in any known phrasing means for these objects, or None."""

    def goal_places(self, goal: Any, names: Sequence[str]) -> dict[int, str]:
        """Where the goal wants each cube it names, in words ("on the red cube", "in the blue zone"); {} when not said.

        Training asks the model this about an instruction (the `goal` example source), so that it
        learns which cube goes where before it learns when to move it.
        """
        return {}

    def goal_supports(self, goal: Any) -> dict[int, int]:
        """The cube the goal puts each cube on ({up: down}, object indices); {} when it puts no cube on another.

        Training teaches it to the `instruction_support` object feature (target `support_goal`).
        """
        return {}


TASK_REGISTRY: dict[str, dict[str, type[Task]]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available to `make_task` under its world and name."""
    world = TASK_REGISTRY.setdefault(cls.world, {})
    if cls.name in world:
        raise ValueError(f"task {cls.name!r} is already registered in world {cls.world!r}")
    world[cls.name] = cls
    return cls


def task_names(world: str) -> list[str]:
    """Registered task names of a world, sorted."""
    return sorted(TASK_REGISTRY.get(world, {}))


def make_task(world: str, name: str, **kwargs: Any) -> Task:
    """Instantiate a registered task; an unknown name lists the known ones."""
    if world not in TASK_REGISTRY:
        raise ValueError(f"unknown world {world!r}; known worlds: {sorted(TASK_REGISTRY)}")
    if name not in TASK_REGISTRY[world]:
        raise ValueError(f"unknown task {name!r} for world {world!r}; known tasks: {task_names(world)}")
    return TASK_REGISTRY[world][name](**kwargs)
