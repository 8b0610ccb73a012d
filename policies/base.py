"""The `Skill` interface: a `SkillCall` becomes a closed-loop stream of env actions and a `SkillResult`."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from envs.vocab import SkillCall, skill_names, skill_spec

if TYPE_CHECKING:
    from envs.base import TabletopEnv


@dataclass(frozen=True)
class SkillResult:
    """How a skill ended: success, a human-readable reason (fed back to the planner), control steps used."""

    success: bool
    reason: str
    steps: int


class Skill(ABC):
    """Closed-loop controller for one skill name. `reset` once per call, then `act` until it returns None."""

    name: ClassVar[str]
    max_steps: ClassVar[int] = 200  # control steps before the skill gives up

    @abstractmethod
    def reset(self, env: TabletopEnv, call: SkillCall) -> SkillResult | None:
        """Start executing `call`; return a failed result at once if it cannot start (e.g. missing object)."""

    @abstractmethod
    def act(self, env: TabletopEnv) -> np.ndarray | None:
        """Next action from privileged/robot state, or None when the skill has finished."""

    @abstractmethod
    def result(self, env: TabletopEnv) -> SkillResult:
        """Judge the outcome after `act` returned None (or the step budget ran out)."""


SKILL_REGISTRY: dict[str, dict[str, type[Skill]]] = {}


def register_skill(world: str):
    """Class decorator: make a skill available to `make_skill(world, name)`.

    The skill's plan language must be registered under the same name (`envs.vocab.register_skill_spec`)
    for this world; raises ValueError naming the registered skills (or the spec's worlds) otherwise.
    """

    def deco(cls: type[Skill]) -> type[Skill]:
        name = getattr(cls, "name", None)
        if name not in skill_names():
            raise ValueError(f"skill class {cls.__name__}: {name!r} has no plan language; register its SkillSpec "
                             f"first (envs.vocab.register_skill_spec); registered skills: {list(skill_names())}")
        spec = skill_spec(name)
        if spec.ends_plan:
            raise ValueError(f"skill class {cls.__name__}: {name!r} ends the plan; no Skill executes it")
        if spec.worlds is not None and world not in spec.worlds:
            raise ValueError(f"skill class {cls.__name__}: {name!r} is a skill of the worlds {list(spec.worlds)}, "
                             f"not of {world!r}")
        SKILL_REGISTRY.setdefault(world, {})[name] = cls
        return cls

    return deco


def make_skill(world: str, name: str, **kwargs: Any) -> Skill:
    """Instantiate a registered skill; an unknown name lists the known ones."""
    if world not in SKILL_REGISTRY:
        _import_world_skills(world)
    known = SKILL_REGISTRY.get(world, {})
    if name not in known:
        raise ValueError(f"unknown skill {name!r} for world {world!r}; known skills: {sorted(known)}")
    return known[name](**kwargs)


def _import_world_skills(world: str) -> None:
    """Import `policies.<world>` so a world's skills register themselves on first use."""
    try:
        importlib.import_module(f"policies.{world}")
    except ModuleNotFoundError as err:
        if err.name != f"policies.{world}":
            raise


def run_skill(env: TabletopEnv, call: SkillCall, max_steps: int | None = None, scene: Any = None) -> SkillResult:
    """Execute one skill call to the end on `env` (unwrapped). Never raises for a bad call.

    `scene`: what the skill reads the scene from (its `reset`, `act` and `result` get it in place of the env):
    None for the env itself (the simulator's poses), or a view of an estimate (`policies.estimated`) whose
    object indices `call` uses; actions always go to `env.control`. A scene with a `refresh()` method is
    refreshed once the motion ends, before the skill judges its result.
    """
    scene = env if scene is None else scene
    try:
        ends_plan = skill_spec(call.skill).ends_plan
    except ValueError as err:  # a skill unregistered since the call was made
        return SkillResult(False, str(err), 0)
    if ends_plan:
        return SkillResult(True, call.skill, 0)
    n_obj = len(scene.object_ids)
    for ref in (call.obj, call.target):
        if ref is not None and not 0 <= ref < n_obj:
            return SkillResult(False, f"there is no object {ref + 1} in the scene ({n_obj} objects)", 0)
    try:
        skill = make_skill(env.world, call.skill)
    except ValueError as err:
        return SkillResult(False, str(err), 0)
    early = skill.reset(scene, call)
    if early is not None:
        return early
    budget = max_steps if max_steps is not None else skill.max_steps
    start = env.t
    while env.t - start < budget and env.failure is None:
        action = skill.act(scene)
        if action is None:
            break
        env.control(action)
    if env.failure is not None:
        return SkillResult(False, env.failure, env.t - start)
    if scene is not env and callable(getattr(scene, "refresh", None)):
        scene.refresh()
    res = skill.result(scene)
    if env.t - start >= budget and not res.success:
        return SkillResult(False, f"ran out of steps ({budget}): {res.reason}", env.t - start)
    return SkillResult(res.success, res.reason, env.t - start)


SKILL_SOURCES: tuple[str, ...] = ("privileged", "estimated")  # what skills act on (`skills_use`)


def check_skill_source(name: object) -> str:
    """`name` if it is one of SKILL_SOURCES; ValueError (one line listing them) otherwise."""
    if name not in SKILL_SOURCES:
        raise ValueError(f"skills_use must be one of {list(SKILL_SOURCES)}, got {name!r}")
    return str(name)


def skill_executor(skills_use: str = "privileged") -> Callable[[Any, SkillCall], SkillResult]:
    """The executor (env, call) -> SkillResult the agent loop runs steps with: `run_skill` on the simulator's
    poses (`privileged`), or `policies.estimated.run_skill_estimated` (`estimated`: positions from
    `envs.perception` at the decision point). Raises ValueError for another name."""
    if check_skill_source(skills_use) == "estimated":
        from policies.estimated import run_skill_estimated

        return run_skill_estimated
    return run_skill
