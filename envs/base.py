"""`TabletopEnv`: the gymnasium contract, PyBullet client, camera and object state shared by both worlds.

A world (pick-and-place, pushing) subclasses it and supplies the scene, the robot and the
action mapping. Rendering is the expensive part, so it happens only when something consumes
a frame: `step()` renders (the gymnasium contract, unless `obs_type="state"`), while skills
drive the physics through `control()` and look with `observe()` only at decision points.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pybullet as p
import pybullet_data

from envs.catalogue import MAX_OBJECTS, MAX_ZONES, OBJ_DIM, ROBOT_DIM, ObjectDesc, object_row
from envs.state_sources import DEFAULT_NOISE_M, NamedRows, StateSource, make_state_source, state_rng
from envs.tasks.base import SPLITS, Task, TaskInstance, make_task
from envs.vocab import object_names

MAX_INSTRUCTION_LEN = 256
# Unicode ranges whose printable characters (str.isprintable: no control, format or separator
# characters other than " ") an instruction may hold: what people type, paste or dictate in the
# languages the tokenizer's byte-level BPE reads like any text. One line: no newline, no tab.
INSTRUCTION_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0020, 0x007E, "ASCII"),
    (0x00A0, 0x036F, "Latin letters with accents, IPA, combining accents"),
    (0x0370, 0x052F, "Greek, Cyrillic"),
    (0x1E00, 0x1FFF, "more accented Latin and Greek letters"),
    (0x2000, 0x2BFF, "punctuation (dashes, quotes), currency, arrows, maths, symbols, dingbats"),
    (0xFE00, 0xFE0F, "variation selectors"),
    (0x1F300, 0x1FAFF, "emoji"),
)
INSTRUCTION_CHARSET = "".join(
    c for lo, hi, _ in INSTRUCTION_RANGES for c in map(chr, range(lo, hi + 1)) if c.isprintable()
)
_INSTRUCTION_CHARS = frozenset(INSTRUCTION_CHARSET)
INSTRUCTION_TEXT = (f"an instruction is one line of at most {MAX_INSTRUCTION_LEN} printable characters ("
                    + "; ".join(what for _, _, what in INSTRUCTION_RANGES) + ")")


def check_instruction(text: object) -> str:
    """`text` if the observation space's `instruction` (a gymnasium Text of INSTRUCTION_CHARSET) holds it.

    Raises ValueError (one line) naming the first character outside INSTRUCTION_CHARSET (its repr,
    code point and position) or the length, and what an instruction may hold.
    """
    if not isinstance(text, str):
        raise ValueError(f"an instruction must be text, got {type(text).__name__}")  # noqa: TRY004 - a user error
    if len(text) > MAX_INSTRUCTION_LEN:
        raise ValueError(f"the instruction has {len(text)} characters; {INSTRUCTION_TEXT}")
    for i, c in enumerate(text):
        if c not in _INSTRUCTION_CHARS:
            raise ValueError(f"instruction character {c!r} (U+{ord(c):04X}) at position {i} is not allowed; "
                             f"{INSTRUCTION_TEXT}")
    return text


class TabletopEnv(gym.Env):
    """Base of both worlds. Subclasses implement the abstract hooks below.

    `state` / `state_noise_m`: where the observation's `objects` and `zones` rows come from
    (`envs.state_sources`: privileged | estimated | noisy, noise in m); success, the oracles and the
    skills' privileged helpers always read the simulator (`object_rows()`, `zone_rows()`, ...).
    `blank_perception`: perception's camera is blank (`envs.perception.render_for_perception` gives an
    all-zero RGB frame and a depth buffer at the far plane, 1.0): `state=estimated` rows and the skills on
    estimated state (`policies.estimated`) see no objects and no zones; the privileged and noisy rows, the
    observation's `rgb` and `render()` are unchanged (palme-eval/run/collect set it with `blank_frames=true`,
    whose model planner blanks its own frame). Settable later (`env.unwrapped.blank_perception = True`).
    Raises ValueError (one line) for an unknown source or a bad noise.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}
    world: ClassVar[str]
    physics_hz: ClassVar[int] = 240
    control_hz: ClassVar[int] = 10
    default_image_size: ClassVar[tuple[int, int]] = (128, 128)  # (H, W)
    settle_steps: ClassVar[int] = 200  # physics steps after spawning, before the episode starts
    max_resample: ClassVar[int] = 20  # resample an instance that starts solved this many times

    def __init__(
        self,
        task: str,
        render_mode: str | None = "rgb_array",
        image_size: tuple[int, int] | None = None,
        obs_type: str = "full",
        split: str = "train",
        state: str = "privileged",
        state_noise_m: float = DEFAULT_NOISE_M,
        blank_perception: bool = False,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        if obs_type not in ("full", "state"):
            raise ValueError(f"obs_type must be 'full' (rgb + state) or 'state', got {obs_type!r}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        self.state_source: StateSource = make_state_source(state, state_noise_m)
        self.blank_perception = bool(blank_perception)  # perception's camera is blank (see the class docstring)
        self.task: Task = make_task(self.world, task)
        self.task_name = task
        self.split = split
        self.render_mode = render_mode
        self.obs_type = obs_type
        self.image_size = tuple(image_size) if image_size is not None else self.default_image_size
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise ValueError(f"image_size must be (height, width) >= 16, got {image_size!r}")
        self.substeps = self.physics_hz // self.control_hz
        self.client = p.connect(p.DIRECT)
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self.client)
        h, w = self.image_size
        spaces: dict[str, gym.Space] = {
            "robot": gym.spaces.Box(-np.inf, np.inf, (ROBOT_DIM,), np.float32),
            "objects": gym.spaces.Box(-np.inf, np.inf, (MAX_OBJECTS, OBJ_DIM), np.float32),
            "zones": gym.spaces.Box(-np.inf, np.inf, (MAX_ZONES, OBJ_DIM), np.float32),
            "instruction": gym.spaces.Text(MAX_INSTRUCTION_LEN, min_length=0, charset=INSTRUCTION_CHARSET),
        }
        if obs_type == "full":
            spaces["rgb"] = gym.spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = self._make_action_space()
        self._view, self._proj = self._camera_matrices()
        # Episode state, filled by reset().
        self.instance: TaskInstance | None = None
        self.goal: Any = None
        self.object_ids: list[int] = []
        self.object_sizes: list[float] = []
        self.names: list[str] = []
        self.t = 0  # control steps since reset
        self.last_action: np.ndarray | None = None  # the validated action of the latest control step
        self.failure: str | None = None  # set when the episode can no longer succeed (physics)
        self.step_hooks: list[Callable[[TabletopEnv], None]] = []  # called after every control step
        self.scene_id = 0  # counts the scenes built (a new one per reset): with `t`, names a moment of the env
        self._episode_seed: int | None = None
        self._state_rng: np.random.Generator | None = None
        self._perception: Any = None  # envs.perception.Perception, built by state_sources.perceive on first use
        self._estimate_cache: tuple[tuple[int, int, bool], Any] | None = None
        self.named_rows: NamedRows | None = None  # set (state_sources.naming_rows) while a step named from the planner's rows runs

    # ---- hooks for the worlds -------------------------------------------------------------
    @abstractmethod
    def _make_action_space(self) -> gym.spaces.Box:
        """The low-level action space."""

    @abstractmethod
    def _camera_matrices(self) -> tuple[list[float], list[float]]:
        """(view matrix, projection matrix) of the fixed camera that sees the whole workspace."""

    @abstractmethod
    def _build_world(self) -> None:
        """Load the static scene and the robot after a `resetSimulation`."""

    @abstractmethod
    def _spawn(self, instance: TaskInstance) -> tuple[list[int], list[float]]:
        """Create the instance's objects; return their body ids and sizes (m), in slot order."""

    @abstractmethod
    def _apply_action(self, action: np.ndarray) -> None:
        """Set the robot's targets for one control step from a validated action."""

    @abstractmethod
    def _robot_state(self) -> np.ndarray:
        """The ROBOT_DIM vector (layout in catalogue.ROBOT_FIELDS)."""

    @abstractmethod
    def _in_workspace(self, pos: np.ndarray) -> bool:
        """Whether an object at `pos` is still on the table (else the episode has blown up)."""

    # ---- gymnasium API --------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """New episode. `options["instruction"]`: a user instruction, parsed back into a goal if possible."""
        options = options or {}
        if "instruction" in options:  # refused before anything changes (RNG, scene)
            check_instruction(options["instruction"])
        super().reset(seed=seed)
        self._episode_seed, self._state_rng = seed, None
        for _ in range(self.max_resample):
            self._new_scene(self.task.sample(self.np_random, self.split))
            if not self.task.is_success(self, self.goal):
                break
        if "instruction" in options:
            self.set_instruction(options["instruction"])
        return self.observe(), self._info()

    def set_instruction(self, text: str, keep_goal: bool = False) -> bool:
        """Replace the instruction on the current scene; returns whether the episode has a goal.

        The task parses `text` into a goal; with `keep_goal`, `text` is taken as another wording of the
        sampled goal, which stays (how a paraphrase set the parser cannot read is measured).
        Raises ValueError (see `check_instruction`) for text the observation space does not hold.
        """
        check_instruction(text)
        if self.instance is None:
            raise ValueError("call reset() before set_instruction()")
        self.instance.instruction = text
        self.instance.extras["template"] = "given"  # no template of the task's: the caller's words
        if not keep_goal:
            self.goal = self.task.parse_instruction(text, self.instance.objects)
        return self.goal is not None

    def step(self, action):
        self.control(action)
        obs = self.observe()
        info = self._info()
        reward = float(info["is_success"])
        terminated = bool(info["is_success"] or self.failure is not None)
        return obs, reward, terminated, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.camera_image()

    def close(self) -> None:
        if self.client is not None and self.client >= 0:
            try:
                p.disconnect(physicsClientId=self.client)
            except p.error:  # already gone (e.g. the server died with an interrupted worker)
                pass
            self.client = -1

    # ---- fast path used by skills ---------------------------------------------------------
    def validate_action(self, action: Any) -> np.ndarray:
        """The action as float32, or a ValueError naming the expected shape."""
        a = np.asarray(action, dtype=np.float32)
        shape = self.action_space.shape
        if a.shape != shape:
            raise ValueError(f"action must have shape {shape}, got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite (shape {shape}), got {a.tolist()}")
        return np.clip(a, self.action_space.low, self.action_space.high)

    def control(self, action: Any) -> None:
        """One control step of physics, no rendering. Checks for physics blow-ups."""
        a = self.validate_action(action)
        self.last_action = a
        if self.failure is None:
            self._apply_action(a)
            for _ in range(self.substeps):
                p.stepSimulation(physicsClientId=self.client)
            self._check_physics()
        self.t += 1
        for hook in self.step_hooks:
            hook(self)

    def observe(self, render: bool | None = None) -> dict[str, Any]:
        """The observation dict; renders `rgb` unless `obs_type="state"` (or render=False).

        `objects` (MAX_OBJECTS, OBJ_DIM) and `zones` (MAX_ZONES, OBJ_DIM) float32 come from `state_source`
        (the simulator's rows unless the env was built with another `state`).
        """
        objects, zones = self.state_source.rows(self)
        obs: dict[str, Any] = {
            "robot": self._robot_state().astype(np.float32),
            "objects": objects,
            "zones": zones,
            "instruction": self.task_description,
        }
        if self.obs_type == "full" if render is None else render:
            obs["rgb"] = self.camera_image()
        return obs

    # ---- state access for tasks, skills and data ------------------------------------------
    @property
    def state_rng(self) -> np.random.Generator:
        """The env's generator of state noise for this episode (the `noisy` source): seeded from the episode's
        reset seed (`state_sources.state_rng`), made on first use so other sources never draw from np_random."""
        if self._state_rng is None:
            self._state_rng = state_rng(self._episode_seed, self.np_random)
        return self._state_rng

    @property
    def task_description(self) -> str:
        return self.instance.instruction if self.instance is not None else ""

    @property
    def is_success(self) -> bool:
        """Whether the current goal holds (False when the instruction could not be parsed into one)."""
        return self.goal is not None and self.failure is None and bool(self.task.is_success(self, self.goal))

    def object_pose(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), quaternion (4,)) of object i."""
        pos, quat = p.getBasePositionAndOrientation(self.object_ids[i], physicsClientId=self.client)
        return np.asarray(pos), np.asarray(quat)

    def object_rows(self) -> np.ndarray:
        """(MAX_OBJECTS, OBJ_DIM) object-state rows; absent slots are zeros."""
        rows = np.zeros((MAX_OBJECTS, OBJ_DIM), dtype=np.float32)
        assert self.instance is not None
        for i, desc in enumerate(self.instance.objects):
            pos, quat = self.object_pose(i)
            rows[i] = object_row(pos, quat, self.object_sizes[i], desc)
        return rows

    def zone_rows(self) -> np.ndarray:
        """(MAX_ZONES, OBJ_DIM) zone rows (catalogue.zone_row); absent slots are zeros. A world without zones keeps them all zero."""
        return np.zeros((MAX_ZONES, OBJ_DIM), dtype=np.float32)

    @property
    def objects(self) -> list[ObjectDesc]:
        return self.instance.objects if self.instance is not None else []

    def camera_image(self) -> np.ndarray:
        """(H, W, 3) uint8 frame from the fixed camera (TinyRenderer)."""
        h, w = self.image_size
        _, _, rgba, _, _ = p.getCameraImage(
            w, h, self._view, self._proj, renderer=p.ER_TINY_RENDERER, physicsClientId=self.client
        )
        return np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[:, :, :3]

    # ---- internals ------------------------------------------------------------------------
    def _new_scene(self, instance: TaskInstance) -> None:
        p.resetSimulation(physicsClientId=self.client)
        self.scene_id += 1
        self._estimate_cache = None
        p.setGravity(0, 0, -9.8, physicsClientId=self.client)
        p.setTimeStep(1.0 / self.physics_hz, physicsClientId=self.client)
        self._build_world()
        self.instance = instance
        self.goal = instance.goal
        self.object_ids, self.object_sizes = self._spawn(instance)
        if len(self.object_ids) > MAX_OBJECTS:
            raise ValueError(f"a scene holds at most {MAX_OBJECTS} objects, got {len(self.object_ids)}")
        self.names = object_names(instance.objects)
        for _ in range(self.settle_steps):
            p.stepSimulation(physicsClientId=self.client)
        self.t = 0
        self.failure = None
        self._check_physics()

    def _check_physics(self) -> None:
        for i, body in enumerate(self.object_ids):
            pos, _ = p.getBasePositionAndOrientation(body, physicsClientId=self.client)
            pos = np.asarray(pos)
            if not np.all(np.isfinite(pos)):
                self.failure = f"physics: the {self.names[i]} has a NaN pose"
                return
            if not self._in_workspace(pos):
                self.failure = f"physics: the {self.names[i]} left the table"
                return

    def _info(self) -> dict[str, Any]:
        return {
            "is_success": self.is_success,
            "success_known": self.goal is not None,
            "task_description": self.task_description,
            "failure": self.failure,
        }
