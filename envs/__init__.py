"""Simulated tabletop worlds, their tasks and the plan vocabulary.

Gymnasium ids are registered on import: `palme/PickPlace-v0` and `palme/PushBlocks-v0`
(the task is chosen with the `task=` kwarg; `gym.make(id)` alone builds the world's default task:
`stack`, `block2block`).
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym

# world name -> (gymnasium id, entry point, module that registers the world's tasks, max_episode_steps)
WORLDS: dict[str, tuple[str, str, str, int]] = {
    "pickplace": ("palme/PickPlace-v0", "envs.pickplace:PickPlaceEnv", "envs.tasks.pickplace", 2000),
    "push": ("palme/PushBlocks-v0", "envs.push:PushEnv", "envs.tasks.push", 200),
}
DEFAULT_TASKS: dict[str, str] = {"pickplace": "stack", "push": "block2block"}  # what gym.make(id) builds

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
