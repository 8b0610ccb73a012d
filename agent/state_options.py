"""The state keys of palme-run, palme-eval and palme-collect, declared once: what the planner's rows come from
(`state`, `state_noise_m`: `envs.state_sources`), what the skills act on (`skills_use`: `policies.estimated`)
and, in the push world, which blocks the scenes hold (`block_set`: `envs.push_blocks.BLOCK_SETS`).

The three CLI schemas inherit `StateOptions` beside `agent.planners.PlannerOptions`
(`class EvalConfig(StateOptions, PlannerOptions)`), so each key has one name, type, default and check on all
three command lines; `env_kwargs(world, split)` builds the env and `executor()` the agent loop's skill executor.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from envs import block_set_kwargs
from envs.push_blocks import check_block_set
from envs.state_sources import DEFAULT_NOISE_M, check_noise, check_state_source
from policies.base import check_skill_source, skill_executor


@dataclass
class StateOptions:
    """Where the planner's object and zone rows come from, what the skills act on, and the push world's block set.

    Raises ValueError (one line naming the key and the values it takes) for an unknown source, a bad noise or an
    unknown block set; a block set the world or the split cannot take is refused by `env_kwargs`.
    """

    state: str = "privileged"  # the model planner's object and zone rows: privileged (simulator) | estimated (envs.perception on the camera's RGB-D frame; with blank_frames=true a blank frame: no rows) | noisy (simulator + Gaussian position noise); the oracle planner always plans from privileged state (the upper bound), and success is always judged on the simulator
    state_noise_m: float = DEFAULT_NOISE_M  # state=noisy: standard deviation of the position noise (m), drawn from a generator seeded by the episode's seed
    skills_use: str = "privileged"  # what pick/place/push act on: privileged (simulator poses) | estimated (envs.perception at each decision point; an object the estimate lacks fails the step, every one with blank_frames=true)
    block_set: str | None = None  # env=push only: the blocks of every scene: N_CHOOSE_K (4-6 of the 16 blocks, as the split draws them) | BLOCK_4 | BLOCK_8 (Language-Table's fixed 4 and 8 blocks; not with splits L2, L3); null: the split decides (N_CHOOSE_K)

    def __post_init__(self) -> None:
        check_state_source(self.state)
        self.state_noise_m = check_noise(self.state_noise_m)
        check_skill_source(self.skills_use)
        check_block_set(self.block_set)
        parent = getattr(super(), "__post_init__", None)  # the next schema in the MRO (PlannerOptions)
        if parent is not None:
            parent()

    def state_options(self) -> StateOptions:
        """The state keys alone: a CLI config (a subclass) reduced to a plain StateOptions (plain data)."""
        return StateOptions(**{f.name: getattr(self, f.name) for f in fields(StateOptions)})

    def env_kwargs(self, world: str, split: str, blank_frames: bool = False) -> dict[str, Any]:
        """Keyword arguments for `envs.make_env(world, task, ...)`: the split, the env's state source, only in
        the push world the block set, and with `blank_frames` (the planner key, `PlannerOptions.blank_frames`)
        `blank_perception=True`: perception's camera is blank too (`state=estimated`, `skills_use=estimated`
        see nothing). Raises ValueError (one line) for a block set that `world` (only push has them) or `split`
        (L2, L3 with a fixed set) cannot take (`envs.block_set_kwargs`)."""
        blank = {"blank_perception": True} if blank_frames else {}  # nothing reaches the env by default
        return {"split": split, "state": self.state, "state_noise_m": self.state_noise_m,
                **block_set_kwargs(world, self.block_set, split), **blank}

    def executor(self) -> Any:
        """The agent loop's skill executor for `skills_use` (`policies.base.skill_executor`)."""
        return skill_executor(self.skills_use)
