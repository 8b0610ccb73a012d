"""`PushEnv`: the Language-Table-style pushing world (board, camera, blocks, planar pusher).

The pusher is a cylinder carried by two prismatic joints (an x-y gantry) at a fixed height, so
it moves in the plane only and pushes blocks through contact. The action is a 2-D delta of the
effector *target*, clipped to the board, as in Language-Table; the joints follow the target at a
bounded speed during the 24 physics substeps of a control step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pybullet as p

from envs import load_world
from envs.base import TabletopEnv
from envs.catalogue import ROBOT_DIM
from envs.push_blocks import (
    FIXED_BLOCK_SETS,
    asset_dir,
    bounding_radius,
    check_block_set,
    create_block,
    fixed_blocks,
    write_atomic,
)
from envs.tasks.base import TaskInstance

# Board (Language-Table): x is away from the robot base ("top" = small x), y to the right.
X_MIN, X_MAX = 0.15, 0.60
Y_MIN, Y_MAX = -0.3048, 0.3048
BOARD_CENTER = np.array([(X_MIN + X_MAX) / 2, (Y_MIN + Y_MAX) / 2])
WORKSPACE_BUFFER = 0.08  # blocks spawn, and relative targets must lie, this far inside the board
EFFECTOR_HEIGHT = 0.145  # fixed height of the effector frame (m)
EFFECTOR_RADIUS = 0.0125
EFFECTOR_TIP = 0.005  # gap between the cylinder's bottom and the table
EFFECTOR_START = np.array([0.3, -0.2])
EFFECTOR_DOWN_QUAT = (0.0, 1.0, 0.0, 0.0)  # rotation by pi about y: pointing down
EFFECTOR_SPEED = 1.0  # m/s: top speed of the effector (a full 0.1 m action within one control step)
CAMERA_POS = (0.75, 0.0, 0.5)
CAMERA_EULER = (np.pi / 5, np.pi, -np.pi / 2)
CAMERA_FX = 0.803  # focal length as a fraction of the image width
BOARD_RGBA = (0.62, 0.62, 0.60, 1.0)
TABLE_RGBA = (0.28, 0.26, 0.24, 1.0)
EFFECTOR_RGBA = (0.85, 0.85, 0.88, 1.0)

_PUSHER_URDF = """<?xml version="1.0"?>
<robot name="planar_pusher">
  <link name="base">
    <inertial><mass value="0"/><inertia ixx="0" iyy="0" izz="0" ixy="0" ixz="0" iyz="0"/></inertial>
  </link>
  <joint name="slide_x" type="prismatic">
    <parent link="base"/><child link="carriage"/>
    <origin xyz="0 0 {height}"/><axis xyz="1 0 0"/>
    <limit lower="-1" upper="2" effort="100" velocity="5"/>
  </joint>
  <link name="carriage">
    <inertial><mass value="0.2"/><inertia ixx="1e-4" iyy="1e-4" izz="1e-4" ixy="0" ixz="0" iyz="0"/>
    </inertial>
  </link>
  <joint name="slide_y" type="prismatic">
    <parent link="carriage"/><child link="effector"/>
    <origin xyz="0 0 0"/><axis xyz="0 1 0"/>
    <limit lower="-1" upper="1" effort="100" velocity="5"/>
  </joint>
  <link name="effector">
    <inertial><mass value="0.2"/><inertia ixx="1e-4" iyy="1e-4" izz="1e-4" ixy="0" ixz="0" iyz="0"/>
    </inertial>
    <visual><origin xyz="0 0 {zc}"/><geometry><cylinder radius="{r}" length="{length}"/></geometry></visual>
    <collision><origin xyz="0 0 {zc}"/>
      <geometry><cylinder radius="{r}" length="{length}"/></geometry></collision>
  </link>
</robot>
"""


def pusher_urdf() -> str:
    """Path of the generated URDF of the planar pusher (a cylinder on an x-y gantry)."""
    length = 0.06
    text = _PUSHER_URDF.format(
        height=EFFECTOR_HEIGHT,
        r=EFFECTOR_RADIUS,
        length=length,
        zc=EFFECTOR_TIP + length / 2 - EFFECTOR_HEIGHT,
    )
    path = Path(asset_dir()) / "pusher.urdf"
    if not path.exists() or path.read_text() != text:
        write_atomic(path, text)
    return str(path)


def on_board(xy: np.ndarray, margin: float = 0.0) -> bool:
    """Whether a point lies on the board, at least `margin` inside its edges."""
    return bool(X_MIN + margin <= xy[0] <= X_MAX - margin and Y_MIN + margin <= xy[1] <= Y_MAX - margin)


def clip_to_board(xy: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """The nearest point on the board (shrunk by `margin`)."""
    return np.array(
        [np.clip(xy[0], X_MIN + margin, X_MAX - margin), np.clip(xy[1], Y_MIN + margin, Y_MAX - margin)]
    )


class PushEnv(TabletopEnv):
    """Language-Table-style pushing: blocks of 4 colours x 4 shapes on a 0.45 m x 0.61 m board.

    `block_set`: None (the split decides: n-choose-k combinations, see `push_blocks.sample_blocks`),
    "N_CHOOSE_K", "BLOCK_4" or "BLOCK_8" (Language-Table's fixed sets; only with train/L1/L4).
    """

    world: ClassVar[str] = "push"
    default_image_size: ClassVar[tuple[int, int]] = (180, 320)

    def __init__(self, task: str, block_set: str | None = None, **kwargs: Any) -> None:
        check_block_set(block_set, kwargs.get("split", "train"))
        load_world(self.world)  # registers the pushing tasks when the env is built directly, not via make_env
        super().__init__(task, **kwargs)
        self.block_set = block_set or "N_CHOOSE_K"
        self.task.block_set = self.block_set  # the task samples the blocks of each episode
        self.pusher = -1
        self.effector_target = EFFECTOR_START.copy()
        if self.block_set in FIXED_BLOCK_SETS:
            self._check_task_fits_block_set()

    def _check_task_fits_block_set(self) -> None:
        """Refuse now, not at the first reset, a task whose goals need blocks a fixed set lacks (e.g. two blocks
        of a colour: BLOCK_4 has one of each); the probe draws from its own generator, so episodes are unchanged."""
        try:
            self.task.sample(np.random.default_rng(0), self.split)
        except RuntimeError as err:
            self.close()
            blocks = ", ".join(f"{b.color} {b.shape}" for b in fixed_blocks(self.block_set))
            raise ValueError(f"task {self.task_name!r} cannot draw a scene from block_set {self.block_set!r} ({blocks}): "
                             "its goals need blocks the set lacks; choose another block_set or task") from err

    # ---- TabletopEnv hooks -----------------------------------------------------------------
    def _make_action_space(self) -> gym.spaces.Box:
        return gym.spaces.Box(-0.1, 0.1, (2,), np.float32)

    def _camera_matrices(self) -> tuple[list[float], list[float]]:
        h, w = self.image_size
        rot = np.array(p.getMatrixFromQuaternion(p.getQuaternionFromEuler(CAMERA_EULER))).reshape(3, 3)
        look = np.asarray(CAMERA_POS) + rot @ np.array([0.0, 0, 1])
        up = rot @ np.array([0.0, -1, 0])
        view = p.computeViewMatrix(CAMERA_POS, look.tolist(), up.tolist())
        # Vertical field of view from Language-Table's focal length (fx = fy = 0.803 * width).
        fov = np.degrees(2 * np.arctan((h / 2) / (CAMERA_FX * w)))
        proj = p.computeProjectionMatrixFOV(fov, w / h, 0.01, 10.0)
        return list(view), list(proj)

    def _build_world(self) -> None:
        c = self.client
        plane = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=c)
        table_vis = p.createVisualShape(
            p.GEOM_BOX, halfExtents=[1.0, 1.0, 0.001], rgbaColor=TABLE_RGBA, physicsClientId=c
        )
        self.table = p.createMultiBody(0, plane, table_vis, [0, 0, 0], physicsClientId=c)
        p.resetBasePositionAndOrientation(self.table, [0, 0, 0], [0, 0, 0, 1], physicsClientId=c)
        half = [(X_MAX - X_MIN) / 2, (Y_MAX - Y_MIN) / 2, 0.0005]
        board_vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=BOARD_RGBA, physicsClientId=c)
        p.createMultiBody(0, -1, board_vis, [*BOARD_CENTER, 0.0008], physicsClientId=c)
        self.pusher = p.loadURDF(pusher_urdf(), [0, 0, 0], useFixedBase=True, physicsClientId=c)
        p.changeVisualShape(self.pusher, 1, rgbaColor=EFFECTOR_RGBA, physicsClientId=c)
        self.effector_target = EFFECTOR_START.copy()
        for j in range(2):
            p.resetJointState(self.pusher, j, float(EFFECTOR_START[j]), physicsClientId=c)
            p.changeDynamics(self.pusher, j, jointDamping=0.0, linearDamping=0.0, physicsClientId=c)
        self._drive(np.zeros(2))

    def _spawn(self, instance: TaskInstance) -> tuple[list[int], list[float]]:
        ids, sizes = [], []
        for desc, (x, y, yaw) in zip(instance.objects, instance.layout):
            ids.append(create_block(self.client, desc, (x, y), yaw))
            sizes.append(2 * bounding_radius(desc.shape))
        return ids, sizes

    def _apply_action(self, action: np.ndarray) -> None:
        self.effector_target = clip_to_board(self.effector_target + action.astype(np.float64))
        self._drive(self.effector_target - self.effector_xy())

    def _drive(self, delta: np.ndarray) -> None:
        # Spread the move over the whole control step (a steady speed, not a 1 m/s jerk that kicks the
        # 10 g blocks away), with per-axis limits proportional to the move so the path is straight.
        norm = float(np.linalg.norm(delta))
        speed = min(EFFECTOR_SPEED, 1.15 * norm * self.control_hz)
        for j in range(2):
            vmax = speed * (abs(delta[j]) / norm if norm > 1e-9 else 1.0)
            p.setJointMotorControl2(
                self.pusher,
                j,
                p.POSITION_CONTROL,
                targetPosition=float(self.effector_target[j]),
                force=50.0,
                positionGain=0.3,
                velocityGain=1.0,
                maxVelocity=max(vmax, 0.02),
                physicsClientId=self.client,
            )

    def _robot_state(self) -> np.ndarray:
        s = np.zeros(ROBOT_DIM, dtype=np.float32)
        s[0:2] = self.effector_xy()
        s[2] = EFFECTOR_HEIGHT
        s[3:7] = EFFECTOR_DOWN_QUAT
        s[7] = 0.0  # no gripper
        s[8:10] = self.effector_target
        return s

    def _in_workspace(self, pos: np.ndarray) -> bool:
        return bool(-0.05 < pos[0] < 0.8 and -0.55 < pos[1] < 0.55 and -0.05 < pos[2] < 0.2)

    # ---- goals that refer to the scene as it is when the instruction is given ---------------
    def _new_scene(self, instance: TaskInstance) -> None:
        super()._new_scene(instance)
        self.goal = self.task.bind(self, self.goal)

    def set_instruction(self, text: str) -> bool:
        ok = super().set_instruction(text)
        if ok:
            self.goal = self.task.bind(self, self.goal)
        return ok

    # ---- state access ------------------------------------------------------------------------
    def effector_xy(self) -> np.ndarray:
        """Current (x, y) of the effector."""
        states = p.getJointStates(self.pusher, [0, 1], physicsClientId=self.client)
        return np.array([states[0][0], states[1][0]])

    def block_xy(self, i: int) -> np.ndarray:
        """(x, y) of block i's centroid."""
        return self.object_pose(i)[0][:2]

    def blocks_xy(self) -> np.ndarray:
        """(N, 2) positions of all blocks."""
        return np.array([self.block_xy(i) for i in range(len(self.object_ids))]).reshape(-1, 2)

    def block_radius(self, i: int) -> float:
        """Bounding radius of block i (m)."""
        return self.object_sizes[i] / 2
