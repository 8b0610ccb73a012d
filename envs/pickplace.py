"""The pick-and-place world: a Franka Panda, cubes of two sizes in the catalogue colours, flat coloured zones.

In the spirit of PaLM-E's TAMP environment: cubes may start stacked, and a cube with others on
top must be cleared before it can be grasped. The action is an end-effector delta position plus
a gripper command; inverse kinematics runs inside the env, with the hand kept pointing down.
The public helpers (`support_graph`, `held_object`, `free_spot`, ...) are the privileged state
read by tasks, scripted skills and question generation.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pybullet as p
import pybullet_data

from envs.base import TabletopEnv
from envs.catalogue import COLORS, MAX_ZONES, OBJ_DIM, SIZE_EDGES, object_row, zone_row
from envs.geometry import flat, in_zone, support_graph
from envs.tasks.base import TaskInstance

# ---- scene geometry (metres, world frame; the robot base is at the origin, the table top at z=0) ----
CUBE_SIZES: dict[str, float] = SIZE_EDGES  # edge lengths; Panda fingers open to 0.08
WORKSPACE_LOW = np.array([0.28, -0.36])  # where cubes and zones are placed (x, y); all reachable top-down
WORKSPACE_HIGH = np.array([0.66, 0.36])
ZONE_SIDE = 0.15  # target zones are flat squares of this side
ZONE_SLOT_OFFSET = (0.04, 0.05)  # zone slots: a 2x2 grid at +-(dx, dy) from the zone centre; wider along
# y, the finger axis, so the fingers opening next to a cube in the neighbouring slot do not touch it
TABLE_HALF = np.array([0.55, 0.6, 0.02])  # table top half extents; centre at x=0.45
TABLE_CENTER = np.array([0.45, 0.0, -0.02])
TABLE_X, TABLE_HALF_X, TABLE_HALF_Y = float(TABLE_CENTER[0]), float(TABLE_HALF[0]), float(TABLE_HALF[1])
CUBE_MASS = 0.08  # kg
FRICTION = 1.0
ROBOT_RGBA = (0.85, 0.85, 0.88, 1.0)

# ---- robot ----------------------------------------------------------------------------------
EE_LINK = 11  # panda_grasptarget: between the finger pads
ARM_JOINTS = tuple(range(7))
FINGER_JOINTS = (9, 10)
ARM_FORCES = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
FINGER_FORCE = 20.0  # N per finger (URDF limit)
MAX_OPENING = 0.08  # finger gap when fully open
HOME_JOINTS = (0.0, -0.3, 0.0, -2.2, 0.0, 1.9, np.pi / 4)
EE_DOWN = tuple(p.getQuaternionFromEuler([np.pi, 0.0, 0.0]))  # hand pointing down, fingers open along y
EE_LOW = np.array([0.2, -0.45, 0.005])  # the end-effector target is kept inside this box
EE_HIGH = np.array([0.8, 0.45, 0.55])
MAX_DELTA = 0.015  # m per control step for an action of 1.0 (0.3 m/s at 20 Hz)
JOINT_LOW = (-2.9671, -1.8326, -2.9671, -3.1416, -2.9671, -0.0873, -2.9671)
JOINT_HIGH = (2.9671, 1.8326, 2.9671, 0.0, 2.9671, 3.8223, 2.9671)
JOINT_RANGES = tuple(h - lo for lo, h in zip(JOINT_LOW, JOINT_HIGH))
IK_ITERATIONS = 10  # per control step; the target moves at most MAX_DELTA per step, so few are needed

# ---- the robot's footprint when the hand comes down (from the link AABBs, grasp point at the origin) ----
YAW_SLACK = 1.3  # a cube turned by up to ~20 degrees reaches this factor further than its half edge
RELEASE_MARGIN = 0.016  # the fingers open to the cube's edge plus this to let go
SPACING_X, SPACING_Y = 0.08, 0.15  # cubes this far apart (in x or in y) never meet the hand, even as towers


def hand_footprint(height: float, opening: float) -> tuple[float, float]:
    """Half extents (x, y) of what the robot occupies at `height` above the grasp point."""
    if height > 0.09:
        return 0.10, 0.125  # hand and last arm link
    if height > 0.03:
        return 0.04, 0.11  # hand
    return 0.016, opening / 2 + 0.022  # finger pads


def apart_for_hand(a: np.ndarray, b: np.ndarray) -> bool:
    """Layout rule: far enough apart for the hand whatever the two stacks' heights."""
    return abs(a[0] - b[0]) >= SPACING_X or abs(a[1] - b[1]) >= SPACING_Y


@lru_cache(maxsize=1)
def light_panda_urdf() -> str:
    """Path of pybullet_data's Panda with its collision meshes drawn as visuals (same physics).

    The visual meshes are ~10 MB of OBJ: parsing them on every reset and rasterising them in
    TinyRenderer cost far more than the physics. The rewritten URDF is cached in the temp dir.
    """
    src = Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"
    text = src.read_text().replace("package://meshes/visual/", "package://meshes/collision/")
    text = text.replace("package://meshes/", f"{src.parent / 'meshes'}/")
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    dst = Path(tempfile.gettempdir()) / f"palme_panda_light_{digest}.urdf"
    if not dst.exists():
        tmp = dst.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(dst)  # atomic: parallel envs never read a half-written file
    return str(dst)


@dataclass(frozen=True)
class Layout:
    """Initial placement: stacks as (x, y, yaw, slot indices bottom-up), zones as (colour, x, y)."""

    stacks: tuple[tuple[float, float, float, tuple[int, ...]], ...]
    zones: tuple[tuple[str, float, float], ...]


def zone_rgba(color: str) -> tuple[float, float, float, float]:
    """A zone's colour: the catalogue colour mixed with white so a cube on its zone stays visible."""
    r, g, b, _ = COLORS[color]
    return (0.45 * r + 0.55, 0.45 * g + 0.55, 0.45 * b + 0.55, 1.0)


class PickPlaceEnv(TabletopEnv):
    """Franka Panda pick-and-place on a table with 3-8 cubes and 2-4 coloured target zones.

    Action: Box(-1, 1, (4,)) = (dx, dy, dz) of the end-effector target in units of MAX_DELTA m per
    control step, and a gripper command mapped linearly to the finger gap (-1 closed, +1 open).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}
    world: ClassVar[str] = "pickplace"
    physics_hz: ClassVar[int] = 240
    control_hz: ClassVar[int] = 20
    settle_steps: ClassVar[int] = 120

    def __init__(self, task: str = "stack", **kwargs: Any) -> None:
        from envs import load_world

        load_world(self.world)  # registers the tasks of this world
        super().__init__(task, **kwargs)
        self.robot = -1
        self.zones: dict[str, np.ndarray] = {}  # zone colour -> centre (x, y)
        self.ee_target = np.zeros(3)
        self._ik_target: np.ndarray | None = None  # the target the arm motors were last set for
        self._finger_sent: float | None = None  # the finger gap the finger motors were last set for
        self.finger_target = MAX_OPENING

    # ---- hooks ----------------------------------------------------------------------------
    def _make_action_space(self) -> gym.spaces.Box:
        return gym.spaces.Box(-1.0, 1.0, (4,), np.float32)

    def _camera_matrices(self) -> tuple[list[float], list[float]]:
        view = p.computeViewMatrix(
            cameraEyePosition=[1.0, 0.0, 0.75],
            cameraTargetPosition=[0.46, 0.0, 0.0],
            cameraUpVector=[0.0, 0.0, 1.0],
            physicsClientId=self.client,
        )
        h, w = self.image_size
        proj = p.computeProjectionMatrixFOV(
            fov=58.0, aspect=w / h, nearVal=0.05, farVal=3.0, physicsClientId=self.client
        )
        return list(view), list(proj)

    def _build_world(self) -> None:
        c = self.client
        table_col = p.createCollisionShape(p.GEOM_BOX, halfExtents=TABLE_HALF.tolist(), physicsClientId=c)
        table_vis = p.createVisualShape(
            p.GEOM_BOX, halfExtents=TABLE_HALF.tolist(), rgbaColor=[0.42, 0.40, 0.38, 1.0], physicsClientId=c
        )
        self.table = p.createMultiBody(0, table_col, table_vis, TABLE_CENTER.tolist(), physicsClientId=c)
        p.changeDynamics(self.table, -1, lateralFriction=FRICTION, physicsClientId=c)
        self.robot = p.loadURDF(light_panda_urdf(), [0, 0, 0], useFixedBase=True, physicsClientId=c)
        for link in range(-1, p.getNumJoints(self.robot, physicsClientId=c)):
            p.changeVisualShape(self.robot, link, rgbaColor=ROBOT_RGBA, physicsClientId=c)
        for j, q in zip(ARM_JOINTS, HOME_JOINTS):
            p.resetJointState(self.robot, j, q, physicsClientId=c)
        for j in FINGER_JOINTS:
            p.resetJointState(self.robot, j, MAX_OPENING / 2, physicsClientId=c)
            p.changeDynamics(
                self.robot,
                j,
                lateralFriction=FRICTION,
                spinningFriction=0.002,
                frictionAnchor=True,
                physicsClientId=c,
            )
        # The real fingers are coupled mechanically; without the coupling a pinched cube slides along the
        # finger axis (the two finger forces balance wherever the pair is).
        gear = p.createConstraint(
            self.robot,
            FINGER_JOINTS[0],
            self.robot,
            FINGER_JOINTS[1],
            p.JOINT_GEAR,
            [1, 0, 0],
            [0, 0, 0],
            [0, 0, 0],
            physicsClientId=c,
        )
        p.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=50, physicsClientId=c)
        self.finger_target = MAX_OPENING
        self.ee_target = self.ee_pose()[0].copy()
        self._ik_target = None
        self._finger_sent: float | None = None
        self._drive_arm()

    def _spawn(self, instance: TaskInstance) -> tuple[list[int], list[float]]:
        layout: Layout = instance.layout
        c = self.client
        self.zones = {}
        for color, x, y in layout.zones:
            vis = p.createVisualShape(
                p.GEOM_BOX,
                halfExtents=[ZONE_SIDE / 2, ZONE_SIDE / 2, 0.0005],
                rgbaColor=zone_rgba(color),
                physicsClientId=c,
            )
            p.createMultiBody(0, -1, vis, [x, y, 0.0005], physicsClientId=c)
            self.zones[color] = np.array([x, y])
        n = len(instance.objects)
        ids, sizes = [0] * n, [0.0] * n
        for x, y, yaw, slots in layout.stacks:
            z = 0.0
            for i in slots:
                s = CUBE_SIZES[instance.objects[i].size]
                ids[i] = self._make_cube(instance.objects[i].color, s, (x, y, z + s / 2 + 0.0005), yaw)
                sizes[i] = s
                z += s + 0.001
        return ids, sizes

    def _make_cube(self, color: str, size: float, pos: tuple[float, float, float], yaw: float) -> int:
        c = self.client
        half = [size / 2] * 3
        col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c)
        vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=COLORS[color], physicsClientId=c)
        quat = p.getQuaternionFromEuler([0, 0, yaw])
        body = p.createMultiBody(CUBE_MASS, col, vis, pos, quat, physicsClientId=c)
        p.changeDynamics(
            body,
            -1,
            lateralFriction=FRICTION,
            spinningFriction=0.001,
            rollingFriction=0.0001,
            physicsClientId=c,
        )
        return body

    def _apply_action(self, action: np.ndarray) -> None:
        self.ee_target = np.clip(self.ee_target + action[:3] * MAX_DELTA, EE_LOW, EE_HIGH)
        self.finger_target = float((action[3] + 1.0) / 2.0 * MAX_OPENING)
        self._drive_arm()

    def _drive_arm(self) -> None:
        c = self.client
        # IK only when the target moved: the motors keep their last targets, so holds cost nothing.
        if self._ik_target is None or not np.array_equal(self._ik_target, self.ee_target):
            q = p.calculateInverseKinematics(
                self.robot,
                EE_LINK,
                self.ee_target.tolist(),
                EE_DOWN,
                lowerLimits=JOINT_LOW,
                upperLimits=JOINT_HIGH,
                jointRanges=JOINT_RANGES,
                restPoses=HOME_JOINTS,
                maxNumIterations=IK_ITERATIONS,
                residualThreshold=1e-4,
                physicsClientId=c,
            )
            p.setJointMotorControlArray(
                self.robot,
                ARM_JOINTS,
                p.POSITION_CONTROL,
                targetPositions=q[:7],
                forces=ARM_FORCES,
                physicsClientId=c,
            )
            self._ik_target = self.ee_target.copy()
        if self.finger_target != self._finger_sent:
            p.setJointMotorControlArray(
                self.robot,
                FINGER_JOINTS,
                p.POSITION_CONTROL,
                targetPositions=[self.finger_target / 2] * 2,
                forces=[FINGER_FORCE] * 2,
                physicsClientId=c,
            )
            self._finger_sent = self.finger_target

    def _robot_state(self) -> np.ndarray:
        pos, quat = self.ee_pose()
        joints = [
            s[0]
            for s in p.getJointStates(self.robot, (*ARM_JOINTS, *FINGER_JOINTS), physicsClientId=self.client)
        ]
        return np.concatenate([pos, quat, [joints[7] + joints[8]], joints])

    def _in_workspace(self, pos: np.ndarray) -> bool:
        # Still above the table top (with slack for penetration) and not beyond its edges.
        # Plain float comparisons: this runs for every cube on every control step.
        x, y, z = float(pos[0]), float(pos[1]), float(pos[2])
        return abs(x - TABLE_X) <= TABLE_HALF_X and abs(y) <= TABLE_HALF_Y and -0.03 < z < 1.0

    # ---- robot state ------------------------------------------------------------------------
    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), quaternion (4,)) of the point between the finger pads."""
        st = p.getLinkState(self.robot, EE_LINK, computeForwardKinematics=True, physicsClientId=self.client)
        return np.asarray(st[4]), np.asarray(st[5])

    def gripper_opening(self) -> float:
        """Current finger gap (m)."""
        states = p.getJointStates(self.robot, FINGER_JOINTS, physicsClientId=self.client)
        return float(states[0][0] + states[1][0])

    # ---- privileged scene relations ---------------------------------------------------------
    def block_top(self, i: int) -> float:
        """Height of the top face of cube i (m)."""
        return float(self.object_pose(i)[0][2] + self.object_sizes[i] / 2)

    def object_yaw(self, i: int) -> float:
        """Yaw of cube i folded into [-pi/4, pi/4): a cube looks the same every quarter turn."""
        yaw = p.getEulerFromQuaternion(self.object_pose(i)[1])[2]
        return float((yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)

    def exact_rows(self, idx: list[int] | None = None) -> np.ndarray:
        """(n, OBJ_DIM) float64 rows of cubes `idx` (default all), as the simulator has them (the observation's
        rows are float32): what the relations of `envs.geometry` judge success on."""
        idx = range(len(self.object_ids)) if idx is None else idx
        rows = [object_row(*self.object_pose(i), self.object_sizes[i], self.objects[i], np.float64) for i in idx]
        return np.stack(rows) if rows else np.zeros((0, OBJ_DIM))

    def is_flat(self, i: int) -> bool:
        """Whether cube i sits on one of its faces (any 90-degree rotation about z is fine; `geometry.flat`)."""
        return bool(flat(self.exact_rows([i]))[0])

    def touches_finger(self, i: int) -> tuple[bool, bool]:
        """(left, right): whether each finger is in contact with cube i."""
        hits = []
        for link in FINGER_JOINTS:
            pts = p.getContactPoints(self.robot, self.object_ids[i], link, -1, physicsClientId=self.client)
            hits.append(len(pts) > 0)
        return hits[0], hits[1]

    def held_object(self) -> int | None:
        """The cube pinched between both fingers (contacts with both), or None."""
        for i in range(len(self.object_ids)):
            if all(self.touches_finger(i)):
                return i
        return None

    def support_graph(self) -> list[int | None]:
        """What each cube rests on: -1 the table, j cube j, None neither (held, falling or tilted);
        `geometry.support_graph` with the held cube read from the finger contacts."""
        return support_graph(self.exact_rows(), table_z=0.0, held=self.held_object())

    def blocks_above(self, i: int, graph: list[int | None] | None = None) -> list[int]:
        """Cubes stacked on cube i (transitively), from the one directly on it upwards."""
        graph = self.support_graph() if graph is None else graph
        out, cur = [], i
        while True:
            nxt = [j for j, s in enumerate(graph) if s == cur]
            if not nxt:
                return out
            cur = nxt[0]
            out.append(cur)

    def rests_on(self, i: int, j: int) -> bool:
        """Whether cube i rests on cube j (j = -1: on the table)."""
        return self.support_graph()[i] == j

    def zone_rows(self) -> np.ndarray:
        """(MAX_ZONES, OBJ_DIM) rows of the target zones, in the layout's order (slots past the zones are zeros)."""
        if len(self.zones) > MAX_ZONES:
            raise ValueError(f"a scene holds at most {MAX_ZONES} zones, got {len(self.zones)}")
        rows = np.zeros((MAX_ZONES, OBJ_DIM), dtype=np.float32)
        for k, (color, (x, y)) in enumerate(self.zones.items()):
            rows[k] = zone_row(color, (x, y, 0.0), ZONE_SIDE)
        return rows

    def in_zone(self, i: int, color: str, graph: list[int | None] | None = None) -> bool:
        """Whether cube i lies in the zone of `color`: its centre inside the square, resting, not held
        (`geometry.in_zone`; `graph`: this state's `support_graph`, computed when not given)."""
        if color not in self.zones:
            return False
        graph = self.support_graph() if graph is None else graph
        zone = zone_row(color, (*self.zones[color], 0.0), ZONE_SIDE, np.float64)[None]
        return bool(in_zone(self.exact_rows([i]), zone, [graph[i]])[0, 0])

    def hand_clear(self, xy: np.ndarray, ee_z: float, opening: float, exclude: tuple[int, ...] = ()) -> bool:
        """Whether the hand can come down to height `ee_z` over `xy` with the fingers `opening` apart
        without touching any cube (other than `exclude`): `hand_is_clear` on the simulator's poses."""
        return hand_is_clear(self, xy, ee_z, opening, exclude)

    def free_spot(
        self, size: float, near: np.ndarray | None = None, exclude: tuple[int, ...] = ()
    ) -> np.ndarray | None:
        """A table spot (x, y) for a cube of `size` (m), or None: `find_free_spot` on the simulator's poses."""
        return find_free_spot(self, size, near, exclude)

    def zone_spot(self, color: str, exclude: tuple[int, ...] = ()) -> np.ndarray | None:
        """A free slot (x, y) of zone `color`, or None: `find_zone_spot` on the simulator's poses."""
        return find_zone_spot(self, color, exclude)

    def finger_contacts(self) -> tuple[bool, bool]:
        """(left, right): whether each finger touches something other than the robot and the table.

        A tactile reading: it says nothing about which body is touched (skills acting on estimated state use
        it to tell a closed grasp from an empty one; `touches_finger` names the cube, from the simulator).
        """
        hits = []
        for link in FINGER_JOINTS:
            pts = p.getContactPoints(bodyA=self.robot, linkIndexA=link, physicsClientId=self.client)
            hits.append(any(pt[2] not in (self.robot, self.table) for pt in pts))
        return hits[0], hits[1]


# ---- placement on a scene's cube poses: the simulator's (PickPlaceEnv) or a skill's estimate ----------------
# `scene` is anything with `object_ids` (one entry per cube), `object_sizes` (m), `object_pose(j)` ((3,), (4,))
# and `zones` (colour -> centre (x, y)): a PickPlaceEnv, or policies.estimated's view of an estimate.
def hand_is_clear(scene: Any, xy: np.ndarray, ee_z: float, opening: float, exclude: tuple[int, ...] = ()) -> bool:
    """Whether the hand can come down to height `ee_z` (m) over `xy` (m) with the fingers `opening` (m) apart
    without touching any cube of `scene` other than `exclude`."""
    for j in range(len(scene.object_ids)):
        if j in exclude:
            continue
        pj = scene.object_pose(j)[0]
        hx, hy = hand_footprint(pj[2] + scene.object_sizes[j] / 2 - ee_z, opening)
        r = scene.object_sizes[j] / 2 * YAW_SLACK + 0.004
        if abs(xy[0] - pj[0]) < hx + r and abs(xy[1] - pj[1]) < hy + r:
            return False
    return True


def find_free_spot(
    scene: Any, size: float, near: np.ndarray | None = None, exclude: tuple[int, ...] = ()
) -> np.ndarray | None:
    """A table spot (x, y) outside the zones where a cube of `size` can be set down and later picked up
    without the hand touching another cube: the candidate nearest `near` (deterministic grid search),
    preferring spots that stay clear even if the neighbours grow into towers; None if the table is full.
    """
    xs = np.arange(WORKSPACE_LOW[0], WORKSPACE_HIGH[0] + 1e-9, 0.02)
    ys = np.arange(WORKSPACE_LOW[1], WORKSPACE_HIGH[1] + 1e-9, 0.02)
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)  # (N, 2)
    ok = np.ones(len(grid), bool)
    for centre in scene.zones.values():
        ok &= np.any(np.abs(grid - centre) > ZONE_SIDE / 2 + size / 2 + 0.01, axis=1)
    others = [scene.object_pose(j)[0][:2] for j in range(len(scene.object_ids)) if j not in exclude]
    ref = np.asarray(near[:2]) if near is not None else (WORKSPACE_LOW + WORKSPACE_HIGH) / 2
    order = np.argsort(np.linalg.norm(grid - ref, axis=1), kind="stable")
    cands = [grid[k] for k in order if ok[k]]
    opening = size + RELEASE_MARGIN
    for strict in (True, False):
        for q in cands:
            if strict and not all(apart_for_hand(q, o) for o in others):
                continue
            if hand_is_clear(scene, q, size / 2, opening, exclude):
                return q
    return None


def find_zone_spot(scene: Any, color: str, exclude: tuple[int, ...] = ()) -> np.ndarray | None:
    """A free slot (x, y) of the 2x2 grid in zone `color`, or None if the zone is missing or full."""
    if color not in scene.zones:
        return None
    centre = scene.zones[color]
    others = [scene.object_pose(j)[0][:2] for j in range(len(scene.object_ids)) if j not in exclude]
    for dx, dy in ((-1, -1), (1, -1), (-1, 1), (1, 1)):
        slot = centre + np.array(ZONE_SLOT_OFFSET) * [dx, dy]
        if all(np.linalg.norm(slot - o) > 0.05 for o in others):
            return slot
    return None
