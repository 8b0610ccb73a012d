"""Typed configuration of `palme-run` (a dataclass schema in hydra's ConfigStore; unknown keys fail at start)."""

from __future__ import annotations

from dataclasses import dataclass

from agent.loop import DEFAULT_MAX_CONSECUTIVE_FAILURES
from agent.planners import PlannerOptions
from agent.state_options import StateOptions

VIEWS = ("auto", "window", "file", "none")  # palme-run's live view (agent.cli.live_view)


@dataclass
class RunConfig(StateOptions, PlannerOptions):
    """Schema of `palme-run`: one episode (or an interactive session) of one task with one planner.

    The planner keys (checkpoint, mode, constrained, check_done, max_new_tokens, max_plan_tokens,
    device, planner_seed, blank_frames) are agent.planners.PlannerOptions', the state keys (state,
    state_noise_m, skills_use) agent.state_options.StateOptions', both shared with palme-eval and palme-collect.
    `blank_frames=true` blanks the camera for the model and for perception (the env's `blank_perception`:
    state=estimated and skills_use=estimated see no objects).
    """

    planner: str = "palme"  # palme (the shipped checkpoints/palme-tiny by default) | oracle | text_only | random | human (you type each step)
    env: str = "pickplace"  # world: pickplace | push
    task: str = "stack"  # task of the world (unknown names list the known ones)
    seed: int | None = None  # scene seed (inside the split's seed range); None: the range's first seed (train: 0)
    split: str = "train"  # generalisation split the scene is drawn from (train, L1-L4)
    instruction: str | None = None  # a user instruction on the seeded scene; None: the task's sampled one
    interactive: bool = False  # read instructions from stdin one after another on the same scene
    max_steps: int | None = None  # step budget; None: 2x the oracle plan length at the start + 2
    max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES  # end after this many failed steps in a row
    image_size: list[int] | None = None  # camera (H, W); None: the world's default
    video: bool = True  # write episode.mp4 (rendering frames costs time; false for speed)
    fps: int = 10  # video frames per second of simulated time
    video_scale: int = 2  # video frames are the camera frames upscaled by this factor (readable captions)
    record: str | None = None  # dataset folder each finished episode is appended to (palme-collect's format; palme-train data.dirs=[DIR])
    keep_failures: bool = False  # with record: also record failed episodes (success=false); unknown success is never recorded
    record_fps: int | None = None  # with record: frames per simulated second (+ each step start); None: the folder's, 2 when new
    view: str = "auto"  # live view after each step: auto (interactive/human: a window if a display works, else live.png) | window | file | none

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.video_scale < 1:
            raise ValueError(f"video_scale must be >= 1, got {self.video_scale}")
        if self.fps < 1:
            raise ValueError(f"fps must be >= 1, got {self.fps}")
        if self.image_size is not None and len(self.image_size) != 2:
            raise ValueError(f"image_size must be [height, width], got {self.image_size}")
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {list(VIEWS)}, got {self.view!r}")
        if self.record_fps is not None and self.record_fps < 1:
            raise ValueError(f"record_fps must be >= 1 or None (the folder's own), got {self.record_fps}")
        if self.record == "":
            raise ValueError("record must be a folder path (or null: nothing recorded), got ''")
        if self.record is None and (self.keep_failures or self.record_fps is not None):
            raise ValueError("keep_failures and record_fps shape what record=DIR keeps; pass record=DIR with them")


def register_configs() -> None:
    """Put the schema into hydra's ConfigStore (configs/run.yaml builds on it)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="run_schema", node=RunConfig)
