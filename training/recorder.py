"""`EpisodeRecorder`: hooks into the agent loop and records frames at a fixed rate plus every plan step's start.

Rendering is the main cost of collection, so frames are taken only on the fixed grid
(`t % every == 0`, `every = control_hz / fps`), at each plan step's start (the frame the planner
decides on, which the agent renders anyway) and at the end. Each frame's action is the next
control action applied after it (LeRobot's convention: observation, then the action taken from it).
Timestamps are simulated time since the episode's first decision ((t - t0) / control_hz), so
step-start frames between grid points keep their true time, and an episode that starts on a scene
an earlier one left (a palme-run interactive session) starts at 0 like any other.

`RunRecording` appends palme-run's episodes (any planner, the `human` one included, interactive
sessions too) to a dataset folder through the same `DatasetWriter`, the same folder checks and the
same `EpisodeRecorder` as palme-collect; `open_dataset_writer` is what both CLIs open a folder with.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from agent.loop import EpisodeTrace, StepRecord, StepStart
from envs.vocab import render_plan, render_step
from training.dataset.episode import EpisodeData, Frame, PlanStep


class EpisodeRecorder:
    """Collects one episode's frames and plan; pass its hooks to `agent.loop.Agent`."""

    def __init__(self, env: Any, fps: int, label_steps: bool = False) -> None:
        self.u = env.unwrapped
        self.label_steps = label_steps  # log the oracle's step at every decision (another planner acts: DAgger)
        self.labels: dict[int, str] = {}
        if fps < 1 or fps > self.u.control_hz:
            raise ValueError(f"fps must be in [1, {self.u.control_hz}] (the control rate), got {fps}")
        self.every = max(1, round(self.u.control_hz / fps))
        self.frames: list[Frame] = []
        self.plans: list[tuple[int, list[str]]] = []
        self._last_failed = False
        self._t0: int | None = None  # the env's control step at the episode's first event

    def reset(self) -> None:
        """Forget the previous episode (the next one's times count from its first event)."""
        self.frames, self.plans, self._last_failed, self.labels, self._t0 = [], [], False, {}, None

    def _now(self) -> int:
        """Control steps since the episode's first event (the env's own count when it was just reset)."""
        if self._t0 is None:
            self._t0 = int(self.u.t)
        return int(self.u.t) - self._t0

    # ---- agent hooks ----------------------------------------------------------------------
    def on_control(self, env: Any) -> None:
        """After every control step: give the previous frame its action; record on the fps grid."""
        u, now = self.u, self._now()
        if self.frames and self.frames[-1].action is None and self.frames[-1].t == now - 1:
            self.frames[-1].action = np.asarray(u.last_action, np.float32).copy()
        if now % self.every == 0:
            self.capture()

    def on_step_start(self, s: StepStart) -> None:
        """The planner's decision frame is always recorded; the oracle's plan is logged at the start and after failures."""
        self.capture(s.obs if "rgb" in s.obs else None)
        if (s.index == 0 or self._last_failed) and self.u.goal is not None:
            plan = render_plan(self.u.task.oracle_plan(self.u, self.u.goal), self.u.names)
            self.plans.append((self._now(), [*plan, "done"]))
        if self.label_steps:
            self.labels[s.index] = self.oracle_step()

    def oracle_step(self) -> str:
        """The oracle's next step from the current state ("" when there is no goal or the oracle cannot plan)."""
        u = self.u
        if u.goal is None:
            return ""
        try:
            plan = u.task.oracle_plan(u, u.goal)
        except Exception:  # noqa: BLE001 - a state the oracle cannot plan from gives no label, not a lost episode
            return ""
        return render_step(plan[0], u.names) if plan else "done"

    def on_step_end(self, r: StepRecord) -> None:
        self._last_failed = not r.success

    def hooks(self) -> dict[str, Any]:
        """Keyword arguments for `Agent(...)`."""
        return {"on_control": self.on_control, "on_step_start": self.on_step_start, "on_step_end": self.on_step_end}

    # ---- frames ---------------------------------------------------------------------------
    def capture(self, obs: dict[str, Any] | None = None) -> None:
        """Record the current state (once per control step)."""
        u, now = self.u, self._now()
        if self.frames and self.frames[-1].t == now:
            return
        obs = obs if obs is not None else u.observe(render=True)
        objects, zones = np.asarray(obs["objects"], np.float32).copy(), np.asarray(obs["zones"], np.float32).copy()
        seen: dict[str, np.ndarray] = {}
        if observes_other_state(u):  # the planner's rows are an estimate: keep them, and the simulator's beside them
            seen = {"observed_objects": objects, "observed_zones": zones}
            objects, zones = u.object_rows().astype(np.float32), u.zone_rows().astype(np.float32)
        self.frames.append(Frame(
            t=now, rgb=np.asarray(obs["rgb"], np.uint8), robot=np.asarray(obs["robot"], np.float32).copy(),
            objects=objects, zones=zones, success=bool(u.is_success), **seen,
        ))

    def finish(self, trace: EpisodeTrace, split: str) -> EpisodeData:
        """The recorded episode, with the final frame and the executed steps from the trace."""
        self.capture()
        u, t0 = self.u, self._t0 or 0
        steps = [PlanStep(r.step, r.start_t - t0, r.end_t - t0, r.success, r.reason, r.call, self.labels.get(r.index))
                 for r in trace.steps]  # label None unless label_steps (the oracle acted)
        return EpisodeData(
            world=u.world, task=u.task_name, seed=int(trace.seed), split=split, instruction=trace.instruction,
            control_hz=u.control_hz, frames=self.frames, steps=steps, plans=self.plans,
            success=bool(trace.success), failure=trace.failure, reason=trace.reason,
            objects=[{"color": o.color, "shape": o.shape, "size": o.size} for o in u.objects],
            names=list(u.names), wall_s=trace.wall_s,
        )


# ---- dataset folders: opened the same way by palme-collect and by palme-run record= ---------------------------
ROBOT_TYPES = {"pickplace": "franka_panda", "push": "planar_pusher"}  # info.json robot_type per world
DEFAULT_FPS = 2  # dataset frames per second of simulated time (palme-collect's default `fps`)
DEMONSTRATORS = ("oracle", "human")  # planners whose steps are the demonstration; another's get the oracle's label


def observes_other_state(env: Any) -> bool:
    """Whether the env's observation rows come from a state source other than the simulator's (envs.state_sources):
    then the recorder keeps both, the simulator's as observation.environment_state and the observed ones beside."""
    source = getattr(env.unwrapped, "state_source", None)
    return source is not None and source.name != "privileged"


def dataset_features(env: Any) -> dict[str, dict[str, Any]]:
    """info.json features for this env's image size, action space and state source."""
    from training.dataset.schema import make_features

    u = env.unwrapped
    dim = int(env.action_space.shape[0])
    names = list(getattr(u, "action_names", None) or [f"action_{i}" for i in range(dim)])
    return make_features(tuple(u.image_size), names, observed=observes_other_state(env))


def robot_type(env: Any) -> str:
    """info.json robot_type of the env's world."""
    u = env.unwrapped
    return getattr(u, "robot_type", None) or ROBOT_TYPES.get(u.world, u.world)


def palme_block(env: Any, task: str, fps: int, split: str, keep_failures: bool, planner: str) -> dict[str, Any]:
    """Our own info.json keys: world, tasks, seed ranges, block sets (push), camera (for image-frame VQA), table
    and workspace."""
    import sys

    from envs.catalogue import MAX_OBJECTS, OBJ_FIELDS
    from envs.tasks.base import seed_range

    u = env.unwrapped
    world_mod = sys.modules[type(u).__module__]
    low, high = getattr(world_mod, "WORKSPACE_LOW", None), getattr(world_mod, "WORKSPACE_HIGH", None)
    center, half = getattr(world_mod, "TABLE_CENTER", None), getattr(world_mod, "TABLE_HALF", None)
    table_z = float(center[2] + half[2]) if center is not None and half is not None else 0.0
    observed = {"observed_state": [u.state_source.describe()]} if observes_other_state(env) else {}
    block_sets = {"block_sets": [u.block_set]} if getattr(u, "block_set", None) else {}  # the push world's scenes
    return {
        "world": u.world,
        **observed,
        "tasks": [task],
        "control_hz": int(u.control_hz),
        "frame_policy": f"every {max(1, round(u.control_hz / fps))} control steps + every plan step start + last",
        "seed_ranges": {"train": list(seed_range("train")), "test": list(seed_range("L1"))},
        "collected_splits": [split],
        **block_sets,
        "keep_failures": bool(keep_failures),
        # blank_frames=true: the acting planner and perception saw a blank camera (the frames recorded are as rendered)
        "blank_frames": [bool(getattr(u, "blank_perception", False))],
        "planners": [planner],  # who acted (a planner not in DEMONSTRATORS: steps carry the oracle's label)
        "object_rows": {"fields": list(OBJ_FIELDS), "max_objects": MAX_OBJECTS},
        "camera": {"view": [float(x) for x in u._view], "proj": [float(x) for x in u._proj],
                   "image_size": list(u.image_size)},
        "table_z": table_z,
        "workspace": [list(map(float, low)), list(map(float, high))] if low is not None and high is not None else None,
    }


def check_dataset_folder(root: str | Path, what: str) -> Path:
    """Probe a folder to append episodes to, before anything is written there; returns it as a Path.

    It must take a file (created with its parents when missing: `check_writable`) and be new, empty or a
    dataset (it holds meta/info.json, which the writer then checks in full). A folder holding other files
    (a project, a home folder, a model) is refused: ValueError, one line naming `what`, the folder and a
    few of its entries. Hidden entries (the writer's lock, temp files) and empty `meta/`, `data/` are ignored.
    """
    from agent.cli.common import check_writable
    from training.dataset.schema import INFO_PATH

    root = check_writable(root, what)
    if os.path.lexists(root / INFO_PATH):
        return root
    others = sorted(p.name for p in root.iterdir() if not p.name.startswith(".")
                    and not (p.name in ("meta", "data") and p.is_dir() and not p.is_symlink() and not any(p.iterdir())))
    if others:
        listed = ", ".join(others[:3]) + (f" (+{len(others) - 3} more)" if len(others) > 3 else "")
        raise ValueError(f"{what} {str(root)!r} holds other files ({listed}) and no {INFO_PATH}: it is not a dataset; "
                         "choose a new or empty folder, or one that palme-collect or palme-run record= wrote")
    return root


def open_dataset_writer(root: str | Path, env: Any, task: str, fps: int, split: str, keep_failures: bool,
                        planner: str) -> Any:
    """The `DatasetWriter` of `root` for episodes of `env` (created when new): it takes the folder's lock and
    refuses a folder it cannot append to (another writer, a broken or foreign info.json, other features or
    fps, another world) with a one-line ValueError."""
    from training.dataset.writer import DatasetWriter

    return DatasetWriter(root, dataset_features(env), fps=fps, robot_type=robot_type(env),
                         palme=palme_block(env, task, fps, split, keep_failures, planner))


class RunRecording:
    """palme-run's `record=DIR`: each finished episode of the run (any planner; interactive sessions: one per
    instruction) appended to a dataset folder that palme-dataset validates and palme-train reads.

    Opened before the first episode, with palme-collect's checks: `check_dataset_folder`, then
    `open_dataset_writer` (lock, full check of an existing folder) after a clearer word on the usual mismatches
    (the folder's world, frame size), and a refusal when the folder already holds the scene (task, seed).
    `fps` None: the folder's own rate, DEFAULT_FPS for a new one. What is kept follows palme-collect: a
    successful episode always; a failed one only with `keep_failures` (success=false, its failure kind); one
    of unknown success (the task could not parse the instruction) never, since the format's `success` is
    true or false and a guess would teach success detection a wrong label (`add` says so in one line).
    The demonstrators' steps (DEMONSTRATORS: the oracle, a person) are the targets; another planner's steps
    carry the oracle's label from the same state, as palme-collect planner=palme (DAgger).

    Episodes are keyed by (task, seed): the first episode of the scene is filed under the run's seed. A later
    episode of an interactive session starts on the scene the earlier ones left, which no seed draws; it is
    filed under the highest seed of the split's range that the folder does not hold (999999, 999998, ... for
    train), which keeps train and test seeds apart and never meets palme-collect's seeds, which count up.
    """

    def __init__(self, root: str | Path, env: Any, task: str, split: str, seed: int, planner: str,
                 keep_failures: bool = False, fps: int | None = None) -> None:
        u = env.unwrapped
        if fps is not None and not 1 <= fps <= u.control_hz:  # before the folder is made
            raise ValueError(f"record_fps must be in [1, {u.control_hz}] (the control rate) or null, got {fps}")
        self.root = check_dataset_folder(root, "record folder")
        info = _info_if_any(self.root)
        if info is not None:
            fps = _check_matches(self.root, info, u, fps)  # the folder's rate when None (the writer checks it)
        fps = fps if fps is not None else DEFAULT_FPS
        self.task, self.split, self.seed, self.keep_failures = task, split, int(seed), keep_failures
        self.writer = open_dataset_writer(self.root, env, task, fps, split, keep_failures, planner)
        try:
            if self.writer.has(task, seed):
                raise ValueError(f"record folder {str(self.root)!r} already holds {u.world} {task} seed {seed} (one "
                                 "episode per scene): choose another seed=")
            self.recorder = EpisodeRecorder(env, fps, label_steps=planner not in DEMONSTRATORS)
        except BaseException:
            self.writer.close()
            raise
        self.fps = fps
        self.episodes_run = 0  # episodes finished on this scene (recorded or not)
        self.recorded: list[int] = []  # episode indices written

    def hooks(self) -> dict[str, Any]:
        """The recorder's hooks for `agent.loop.Agent` (on_control, on_step_start, on_step_end)."""
        return self.recorder.hooks()

    def begin(self) -> None:
        """Before each episode: the recorder forgets the previous one."""
        self.recorder.reset()

    def add(self, trace: EpisodeTrace) -> str:
        """Append the finished episode when palme-collect's rule keeps it; one line saying what happened."""
        from training.dataset.episode import encode_episode

        self.episodes_run += 1
        if trace.success is None:
            return ("not recorded: success unknown (the task cannot parse the instruction; a dataset episode is a "
                    "success or a failure)")
        if not trace.success and not self.keep_failures:
            return f"not recorded: the task failed ({trace.failure}); keep_failures=true records failures too"
        ep = self.recorder.finish(trace, self.split)
        ep.seed = self.seed if self.episodes_run == 1 else self._later_seed()
        index = self.writer.add(encode_episode(ep, self.writer.features))
        if index is None:  # (task, seed) is checked free above: only another writer could have taken it
            return f"not recorded: {self.task} seed {ep.seed} is already in {self.root}"
        self.recorded.append(index)
        outcome = "success" if trace.success else f"failure: {trace.failure}"
        later = "" if ep.seed == self.seed else f"; filed as seed {ep.seed}, a later episode on seed {self.seed}'s scene"
        return f"recorded: episode {index} of {self.root} ({outcome}{later})"

    def _later_seed(self) -> int:
        from envs.tasks.base import seed_range

        lo, hi = seed_range(self.split)
        for s in range(hi - 1, lo - 1, -1):
            if s != self.seed and not self.writer.has(self.task, s):
                return s
        raise ValueError(f"record folder {self.root} holds every {self.split} seed of task {self.task}")

    def close(self) -> None:
        """Release the folder's writer lock."""
        self.writer.close()


def _info_if_any(root: Path) -> dict[str, Any] | None:
    """The folder's meta/info.json (NotADatasetError, one line, when unreadable), None for a new folder."""
    from training.dataset.schema import INFO_PATH, load_info

    return load_info(root) if os.path.lexists(root / INFO_PATH) else None


def _check_matches(root: Path, info: dict[str, Any], u: Any, fps: int | None) -> int | None:
    """Refuse, naming the key to change, a folder of another world, frame size or frame rate; returns the rate
    to record at (`fps`, or the folder's when None). The writer checks the rest, a broken info.json included."""
    from training.dataset.schema import IMAGE_KEY

    palme = info.get("palme")
    world = palme.get("world") if isinstance(palme, dict) else None
    if isinstance(world, str) and world != u.world:
        raise ValueError(f"record folder {str(root)!r} holds {world!r:.40} episodes, this run is env={u.world}: "
                         "record into another folder")
    feats = info.get("features")
    shape = feats.get(IMAGE_KEY, {}).get("shape") if isinstance(feats, dict) and isinstance(
        feats.get(IMAGE_KEY), dict) else None
    if (isinstance(shape, list) and len(shape) == 3 and all(isinstance(x, int) for x in shape)
            and list(shape[:2]) != list(u.image_size)):
        h, w = shape[:2]
        raise ValueError(f"record folder {str(root)!r} holds {h}x{w} frames, this run renders "
                         f"{u.image_size[0]}x{u.image_size[1]}: pass image_size=[{h},{w}]")
    theirs = info.get("fps")
    if not isinstance(theirs, int) or isinstance(theirs, bool):
        return fps  # the writer names what is wrong with it
    if fps is not None and fps != theirs:
        raise ValueError(f"record folder {str(root)!r} holds frames at fps={theirs}, this run asks for record_fps={fps}: "
                         "leave record_fps unset (the folder's rate is used)")
    return theirs
