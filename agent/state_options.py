"""The state keys of palme-run, palme-eval and palme-collect, declared once: what the planner's rows come from
(`state`, `state_noise_m`: `envs.state_sources`) and what the skills act on (`skills_use`: `policies.estimated`).

The three CLI schemas inherit `StateOptions` beside `agent.planners.PlannerOptions`
(`class EvalConfig(StateOptions, PlannerOptions)`), so each key has one name, type, default and check on all
three command lines; `env_kwargs()` builds the env and `executor()` the agent loop's skill executor.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from envs.state_sources import DEFAULT_NOISE_M, check_noise, check_state_source
from policies.base import check_skill_source, skill_executor


@dataclass
class StateOptions:
    """Where the planner's object and zone rows come from, and what the skills act on.

    Raises ValueError (one line naming the key and the values it takes) for an unknown source or a bad noise.
    """

    state: str = "privileged"  # the model planner's object and zone rows: privileged (simulator) | estimated (envs.perception on the camera's RGB-D frame) | noisy (simulator + Gaussian position noise); the oracle planner always plans from privileged state (the upper bound), and success is always judged on the simulator
    state_noise_m: float = DEFAULT_NOISE_M  # state=noisy: standard deviation of the position noise (m), drawn from a generator seeded by the episode's seed
    skills_use: str = "privileged"  # what pick/place/push act on: privileged (simulator poses) | estimated (envs.perception at each decision point; an object the estimate lacks fails the step)

    def __post_init__(self) -> None:
        check_state_source(self.state)
        self.state_noise_m = check_noise(self.state_noise_m)
        check_skill_source(self.skills_use)
        parent = getattr(super(), "__post_init__", None)  # the next schema in the MRO (PlannerOptions)
        if parent is not None:
            parent()

    def state_options(self) -> StateOptions:
        """The state keys alone: a CLI config (a subclass) reduced to a plain StateOptions (plain data)."""
        return StateOptions(**{f.name: getattr(self, f.name) for f in fields(StateOptions)})

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `envs.make_env` (the env's state source)."""
        return {"state": self.state, "state_noise_m": self.state_noise_m}

    def executor(self) -> Any:
        """The agent loop's skill executor for `skills_use` (`policies.base.skill_executor`)."""
        return skill_executor(self.skills_use)
