"""Simulated tabletop worlds, their tasks and the plan vocabulary.

Gymnasium ids are registered on import: `palme/PickPlace-v0` and `palme/PushBlocks-v0`
(the task is chosen with the `task=` kwarg; `gym.make(id)` alone builds the world's default task:
`stack`, `block2block`), and one id per registered task, `palme/<World>-<Task>-v0`
(`palme/PickPlace-Stack-v0`, `palme/PushBlocks-Block2Block-v0`; `gym_id(world, task)` spells it).

Gymnasium 1.x has no plugin entry points (removed in 1.0), so something must import this package
before `gym.make`: `import envs`, or gymnasium's module prefix, `gym.make("envs:palme/PickPlace-v0")`.
`gym.make_vec(id, num_envs=N)` (sync, the default) batches `instruction` as a tuple of N strings;
with `vectorization_mode="async"` pass `vector_kwargs={"shared_memory": False}` (gymnasium reads a
Text space's shared memory once, at construction, so every instruction would read as blanks).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import gymnasium as gym

from envs import _pybullet  # noqa: F401  (first: imports PyBullet without its build-time banner)

# world name -> (gymnasium id, entry point, module that registers the world's tasks, max_episode_steps)
WORLDS: dict[str, tuple[str, str, str, int]] = {
    "pickplace": ("palme/PickPlace-v0", "envs.pickplace:PickPlaceEnv", "envs.tasks.pickplace", 2000),
    "push": ("palme/PushBlocks-v0", "envs.push:PushEnv", "envs.tasks.push", 200),
}
DEFAULT_TASKS: dict[str, str] = {"pickplace": "stack", "push": "block2block"}  # what gym.make(id) builds
BLOCK_SET_WORLDS: tuple[str, ...] = ("push",)  # worlds whose env takes `block_set` (envs.push_blocks.BLOCK_SETS)

for _world, (_id, _entry, _tasks, _max_steps) in WORLDS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_entry, max_episode_steps=_max_steps, kwargs={"task": DEFAULT_TASKS[_world]})


def load_world(world: str) -> None:
    """Import a world's task module so its tasks are registered; unknown worlds list the known ones."""
    if world not in WORLDS:
        raise ValueError(f"unknown env {world!r}; known envs: {sorted(WORLDS)}")
    importlib.import_module(WORLDS[world][2])


def make_env(world: str, task: str, **kwargs: Any) -> gym.Env:
    """`gym.make` for a world by short name (`pickplace`, `push`) and task name."""
    load_world(world)
    return gym.make(WORLDS[world][0], task=task, **kwargs)


def block_set_kwargs(world: str, block_set: str | None, split: str = "train") -> dict[str, Any]:
    """`make_env` kwargs for a block set: {} for None (the split decides, and nothing reaches the env), else
    {"block_set": block_set}.

    Raises ValueError (one line) for a world without block sets (only push has them), an unknown set (listing
    the known ones) or a fixed set (BLOCK_4, BLOCK_8) with a split that draws other combinations (L2, L3).
    """
    if block_set is None:
        return {}
    if world not in BLOCK_SET_WORLDS:
        load_world(world)  # an unknown world is named as such first
        raise ValueError(f"block_set={block_set} needs env=push: only env=push has block sets (env={world} has none; "
                         "leave block_set unset)")
    from envs.push_blocks import check_block_set

    check_block_set(block_set, split)
    return {"block_set": block_set}


def gym_id(world: str, task: str | None = None) -> str:
    """The gymnasium id of a world (`palme/PickPlace-v0`) or of one of its tasks (`palme/PickPlace-Stack-v0`).

    The task part is the task name in CamelCase (`put_in_zone` -> `PutInZone`, `block2block` ->
    `Block2Block`). Raises ValueError for
    an unknown world (listing the known ones); the task name is not checked (see `register_envs`).
    """
    if world not in WORLDS:
        raise ValueError(f"unknown env {world!r}; known envs: {sorted(WORLDS)}")
    base = WORLDS[world][0]
    if task is None:
        return base
    ns_name, version = base.rsplit("-", 1)
    camel = re.sub(r"(?:^|_|(?<=\d))([a-z])", lambda m: m.group(1).upper(), task)
    return f"{ns_name}-{camel}-{version}"


def register_envs() -> list[str]:
    """Register a gymnasium id for every task of every world (idempotent); returns the per-task ids, sorted.

    Runs on `import envs`; call it again after registering a task of your own (`@register_task`)
    to get its id too. Each id builds its world with `task=<name>` (other kwargs pass through).
    """
    from envs.tasks.base import task_names

    ids = []
    for world, (_, entry, _, max_steps) in WORLDS.items():
        load_world(world)
        for task in task_names(world):
            env_id = gym_id(world, task)
            if env_id not in gym.registry:
                gym.register(id=env_id, entry_point=entry, max_episode_steps=max_steps, kwargs={"task": task})
            ids.append(env_id)
    return sorted(ids)


register_envs()
