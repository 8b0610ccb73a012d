"""Skills on estimated state (issue #20, `skills_use=estimated`): pick, place and push act on the camera's estimate.

At the decision point `run_skill_estimated` takes `envs.state_sources.perceive(env)` (the estimate the planner's
rows came from when `state=estimated`, the same moment; one taken now otherwise), looks up each object the plan
step names in the estimate's rows by the words of its name (`find_named`: colour, size, shape), and runs the
registered skill on a view of that estimate in place of the env: every cube or block position, size, yaw, zone
and support relation the skill reads comes from the estimate, and the call's object indices are rows of the
estimate. What still comes from the robot itself: proprioception (end-effector pose and target, finger gap, the
pusher's position) and, in the pick-and-place world, a tactile reading (`PickPlaceEnv.finger_contacts`: whether
each finger touches something, not which body). Actions go to the env as always.

The view is the robot's belief, updated by its own actions:
- pick and place (`PickPlaceView`): a cube the fingers close on (both fingers in contact, the gap not shut) is the
  estimated cube nearest the grasp point; it moves with the hand until the fingers open, and then stays where
  the hand left it. Positions to approach, grasp and place at come from the estimate taken at the decision point
  (no tracking during the motion). Before the skill judges its result the view looks again (`refresh`: a new
  estimate, each believed cube matched to the nearest estimated cube of its colour and shape within MATCH_DIST).
- push (`PushView`): the blocks are looked at again every TRACK_STEPS control steps during the push (visual
  servoing on the pushed block; a block is matched to the nearest estimated block of its colour and shape).

Looking again: the arm, hovering where the last skill left it, often hides a cube from the camera (the usual reason
a named cube is missing from the estimate at a decision point). In the pick-and-place world a step whose object the
estimate lacks (or holds twice) first moves the hand to VIEW_POSE, where the arm hides no part of the workspace
(measured with the simulator's segmentation on the failing scenes), and takes the estimate once more; the step's
positions then come from that estimate.

A step the planner wrote in the scene its own rows show (`state=estimated`: these very estimated rows; the agent
loop reads it there and maps it onto the simulator's objects, `agent.grounding`) names its objects by rows of this
estimate: the loop hands them over (`env.named_rows`, `envs.state_sources.NamedRows`), and the skill acts on those
rows, not on a lookup of the simulator's names (which can land on another row, or on none, when the estimate gives
a size the simulator's name does not). Any other step (a privileged planner's, or rows that are not this estimate:
`state=privileged`, `noisy`) is looked up by its words as below.

Honest failures: a name the estimate still does not hold (missed by the camera, or seen with another colour, size
or shape), a name it holds more than once, or an `obj j` referral (no words to look it up by) fails the step with
a reason saying so, which is fed back to the planner; the simulator's pose is never used in its place. Success of
the episode is still judged by the task on the simulator.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from envs.catalogue import COLOR_NAMES, SHAPE_NAMES, SIZE_NAMES, descs_from_rows
from envs.geometry import HELD_DIST, in_zone, support_graph
from envs.state_sources import perceive
from envs.vocab import OBJECT_FIELDS, SkillCall, object_names, skill_spec
from policies.base import SkillResult, run_skill

if TYPE_CHECKING:
    from envs.perception import Estimate

MATCH_DIST = 0.06  # m: a believed cube is the re-estimated cube of its colour and shape nearest it, within this
MIN_GRIP_GAP = 0.02  # m: fingers closed to less than this hold nothing (the smallest cube is 0.04 m)
TRACK_STEPS = 3  # push: control steps between two looks at the blocks
TRACK_DIST = 0.12  # m: push: a block is matched to an estimated block of its colour and shape within this
VIEW_POSE = {"pickplace": (0.30, 0.0, 0.45)}  # end-effector position (m) out of the camera's view of the workspace
VIEW_TOL = 0.03  # m: the hand is at VIEW_POSE within this
LOOK_STEPS = 60  # control steps the move to VIEW_POSE may take (about 30 from anywhere over the table)


# ---- names -> estimated rows ------------------------------------------------------------------------------
def name_words(name: str) -> tuple[str, str | None, str] | None:
    """(colour, size word or None, shape) of an object name of the plan language (`red cube`, `small red cube`,
    `blue moon`); None for a name without those words (the referral `obj 3`)."""
    words = name.split()
    colour = next((w for w in words if w in COLOR_NAMES), None)
    shape = next((w for w in words if w in SHAPE_NAMES), None)
    size = next((w for w in words if w in SIZE_NAMES), None)
    if colour is None or shape is None:
        return None
    return colour, size, shape


def find_named(rows: np.ndarray, name: str) -> tuple[int | None, str]:
    """The one present row of an estimate's object rows (N, OBJ_DIM) that the object name's words fit.

    Returns (row index among the present rows, "") or (None, the reason, one line, fed back to the planner):
    the name has no colour and shape words (`obj j`), no estimated object fits (the reason lists what the
    estimate holds), or more than one does. A size word is matched only when the name has one (a row's size
    word is `catalogue.descs_from_rows`'s: its edge within 2.5 mm of the catalogue edge).
    """
    words = name_words(name)
    present = np.asarray(rows)[np.asarray(rows)[:, -1] > 0.5]
    if words is None:
        return None, (f"the step names {name}, which has no colour and shape words to find in the camera's "
                      "estimate (skills_use=estimated)")
    colour, size, shape = words
    descs = descs_from_rows(present)
    fits = [k for k, d in enumerate(descs)
            if d.color == colour and d.shape == shape and (size is None or d.size == size)]
    if len(fits) == 1:
        return fits[0], ""
    if not fits:
        seen = ", ".join(object_names(descs)) or "no objects"
        return None, f"the camera's estimate holds no {name} (it sees {seen})"
    return None, f"the camera's estimate holds {len(fits)} objects that fit the {name}; cannot tell which"


def _present(est: Estimate) -> np.ndarray:
    return est.objects[est.objects[:, -1] > 0.5].astype(np.float64)


def _match(belief: np.ndarray, seen: np.ndarray, skip: set[int], gate: float) -> dict[int, int]:
    """Belief row -> seen row: same colour and shape, nearest first (greedy, each seen row once), within `gate` m."""
    pairs = []
    for k, b in enumerate(belief):
        if k in skip:
            continue
        for j, s in enumerate(seen):
            if round(b[8]) == round(s[8]) and round(b[9]) == round(s[9]):
                d = float(np.linalg.norm(b[:3] - s[:3]))
                if d <= gate:
                    pairs.append((d, k, j))
    out: dict[int, int] = {}
    for _, k, j in sorted(pairs):
        if k not in out and j not in out.values():
            out[k] = j
    return out


def _yaw(quat: np.ndarray) -> float:
    """Yaw (rad) of an (x, y, z, w) quaternion."""
    x, y, z, w = (float(q) for q in quat)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


# ---- views: what a skill reads in place of the env --------------------------------------------------------
class EstimateView:
    """Base of the worlds' views: the estimate's present object rows, their names, the env for the robot's own state.

    `rows` (N, OBJ_DIM) float64, `names` (N,), `object_ids` (range(N)), `object_sizes` (N,) m. `named` maps the
    rows a plan step named to the step's names (the rest are named from their own words).
    """

    world: ClassVar[str]

    def __init__(self, env: Any, est: Estimate, named: dict[int, str]) -> None:
        self.env = env
        self.rows = _present(est)
        own = object_names(descs_from_rows(self.rows))
        self.names = [named.get(k, own[k]) for k in range(len(self.rows))]
        self.object_ids = list(range(len(self.rows)))
        self.object_sizes = [float(r[7]) for r in self.rows]

    @property
    def t(self) -> int:
        return self.env.t

    @property
    def failure(self) -> str | None:
        return self.env.failure


class PickPlaceView(EstimateView):
    """The pick-and-place skills' view of an estimate (see the module docstring): the PickPlaceEnv helpers the
    skills call, answered from the believed cube poses; the end effector and fingers from the robot."""

    world = "pickplace"

    def __init__(self, env: Any, est: Estimate, named: dict[int, str]) -> None:
        super().__init__(env, est, named)
        zones = [z.astype(np.float64) for z in est.zones if z[-1] > 0.5]
        self.zone_rows = {COLOR_NAMES[round(z[8])]: z for z in zones}
        self.zones = {c: z[:2].copy() for c, z in self.zone_rows.items()}  # colour -> centre (x, y)
        self.attached: int | None = None  # the believed cube in the gripper
        self.offset = np.zeros(3)  # its centre minus the end effector's position
        self._sync_hold()

    # ---- the robot itself: proprioception and touch ------------------------------------------------------
    @property
    def ee_target(self) -> np.ndarray:
        return self.env.ee_target

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.env.ee_pose()

    def gripper_opening(self) -> float:
        return self.env.gripper_opening()

    def _sync_hold(self) -> None:
        """Attach the cube nearest the grasp point when the fingers close on something; let go when they open."""
        left, right = self.env.finger_contacts()
        closed = left and right and self.env.gripper_opening() > MIN_GRIP_GAP
        ee = self.env.ee_pose()[0]
        if closed and self.attached is None and len(self.rows):
            dist = np.linalg.norm(self.rows[:, :3] - ee, axis=1)
            k = int(np.argmin(dist))
            if dist[k] <= HELD_DIST + self.object_sizes[k] / 2:
                self.attached, self.offset = k, self.rows[k, :3] - ee
        elif not closed and self.attached is not None:
            self.rows[self.attached, :3] = ee + self.offset  # where the hand let it go
            self.attached = None

    # ---- the scene, believed -----------------------------------------------------------------------------
    def object_pose(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), quaternion (4,)) of believed cube i: the estimate's, or the hand's plus the grasp offset."""
        pos = self.env.ee_pose()[0] + self.offset if i == self.attached else self.rows[i, :3].copy()
        return pos, self.rows[i, 3:7].copy()

    def object_yaw(self, i: int) -> float:
        """Yaw of believed cube i folded into [-pi/4, pi/4)."""
        return float((_yaw(self.rows[i, 3:7]) + np.pi / 4) % (np.pi / 2) - np.pi / 4)

    def block_top(self, i: int) -> float:
        return float(self.object_pose(i)[0][2] + self.object_sizes[i] / 2)

    def held_object(self) -> int | None:
        self._sync_hold()
        return self.attached

    def touches_finger(self, i: int) -> tuple[bool, bool]:
        """The fingers' tactile reading when cube i is the one held or lies between the fingers, else no contact."""
        contacts = self.env.finger_contacts()
        if self.held_object() == i:
            return contacts
        near = float(np.linalg.norm(self.object_pose(i)[0] - self.env.ee_pose()[0])) < self.object_sizes[i]
        return contacts if near else (False, False)

    def current_rows(self) -> np.ndarray:
        """(N, OBJ_DIM) believed rows now (the held cube with the hand)."""
        rows = self.rows.copy()
        if self.attached is not None:
            rows[self.attached, :3] = self.object_pose(self.attached)[0]
        return rows

    def support_graph(self) -> list[int | None]:
        return support_graph(self.current_rows(), table_z=0.0, held=self.held_object())

    def in_zone(self, i: int, color: str, graph: list[int | None] | None = None) -> bool:
        if color not in self.zone_rows:
            return False
        graph = self.support_graph() if graph is None else graph
        return bool(in_zone(self.current_rows()[[i]], self.zone_rows[color][None], [graph[i]])[0, 0])

    def hand_clear(self, xy: np.ndarray, ee_z: float, opening: float, exclude: tuple[int, ...] = ()) -> bool:
        from envs.pickplace import hand_is_clear

        return hand_is_clear(self, xy, ee_z, opening, exclude)

    def free_spot(self, size: float, near: np.ndarray | None = None, exclude: tuple[int, ...] = ()) -> np.ndarray | None:
        from envs.pickplace import find_free_spot

        return find_free_spot(self, size, near, exclude)

    def zone_spot(self, color: str, exclude: tuple[int, ...] = ()) -> np.ndarray | None:
        from envs.pickplace import find_zone_spot

        return find_zone_spot(self, color, exclude)

    def refresh(self) -> None:
        """Look again: each believed cube not in the hand takes the pose of the re-estimated cube matched to it."""
        held = self.held_object()
        seen = _present(perceive(self.env))
        for k, j in _match(self.rows, seen, {held} if held is not None else set(), MATCH_DIST).items():
            self.rows[k, :7] = seen[j, :7]


class PushView(EstimateView):
    """The push skill's view of an estimate: block positions looked at again every TRACK_STEPS control steps."""

    world = "push"

    def __init__(self, env: Any, est: Estimate, named: dict[int, str]) -> None:
        super().__init__(env, est, named)
        self.seen_t = env.t

    @property
    def effector_target(self) -> np.ndarray:
        return self.env.effector_target

    def effector_xy(self) -> np.ndarray:
        return self.env.effector_xy()

    def block_xy(self, i: int) -> np.ndarray:
        """(x, y) of believed block i (m), looked at again when TRACK_STEPS control steps have passed."""
        if self.env.t - self.seen_t >= TRACK_STEPS:
            self.refresh()
        return self.rows[i, :2].copy()

    def blocks_xy(self) -> np.ndarray:
        return np.array([self.block_xy(i) for i in range(len(self.rows))]).reshape(-1, 2)

    def block_radius(self, i: int) -> float:
        return self.object_sizes[i] / 2

    def refresh(self) -> None:
        """Look again: each believed block takes the pose of the estimated block matched to it (kept when unseen)."""
        seen = _present(perceive(self.env))
        for k, j in _match(self.rows, seen, set(), TRACK_DIST).items():
            self.rows[k, :7] = seen[j, :7]
        self.seen_t = self.env.t


VIEWS: dict[str, type[EstimateView]] = {"pickplace": PickPlaceView, "push": PushView}


def _lookup(u: Any, call: SkillCall, est: Estimate) -> tuple[dict[str, int], dict[int, str], str, bool]:
    """(call field -> estimate row, estimate row -> the step's name, "", False) for the objects `call` names, or
    ({}, {}, the reason one of them cannot be found, whether another look could find it: a name with words).

    An object the planner named by a row of this very estimate (`env.named_rows`, set by the agent loop for a step
    read against the planner's rows: `agent.grounding`) is that row; any other is looked up by its name's words."""
    rows = _present(est)
    pointed = u.named_rows.rows_for(est.objects) if getattr(u, "named_rows", None) is not None else {}
    mapped: dict[str, int] = {}
    named: dict[int, str] = {}
    for key in OBJECT_FIELDS:
        ref = getattr(call, key)
        if ref is None:
            continue
        if not 0 <= ref < len(u.names):
            return {}, {}, f"there is no object {ref + 1} in the scene ({len(u.names)} objects)", False
        k, why = (pointed[ref], "") if ref in pointed else find_named(rows, u.names[ref])
        if k is None:
            return {}, {}, why, name_words(u.names[ref]) is not None
        if k in named:
            return {}, {}, f"the camera's estimate holds one object for both the {named[k]} and the {u.names[ref]}", True
        mapped[key], named[k] = k, u.names[ref]
    return mapped, named, "", False


def look_from_clear_view(u: Any) -> int:
    """Move the hand to the world's VIEW_POSE (the gripper as it is: a held cube stays held); returns the control
    steps taken (0 when the world has none or the hand is there already)."""
    if u.world not in VIEW_POSE:
        return 0
    from policies.pickplace import FAST, grip_cmd, move_to

    goal = np.asarray(VIEW_POSE[u.world], dtype=float)
    if float(np.linalg.norm(u.ee_pose()[0] - goal)) <= VIEW_TOL:
        return 0
    start, grip = u.t, grip_cmd(u.finger_target)
    for action in move_to(u, lambda: goal, FAST, grip, tol=VIEW_TOL, max_steps=LOOK_STEPS):
        u.control(action)
        if u.failure is not None:
            break
    return u.t - start


def run_skill_estimated(env: Any, call: SkillCall, max_steps: int | None = None) -> SkillResult:
    """Execute one skill call on the camera's estimate (see the module docstring); never raises for a bad call.

    The objects `call` names (indices of the env's scene) are the estimate's rows the planner named them by when
    the step was read against this estimate's rows (`env.named_rows`), else looked up by the words of their names
    with `find_named`; when one is missing (or found twice) the hand moves out of the camera's
    view and the lookup runs on a new estimate (`look_from_clear_view`). A step whose object that estimate does
    not hold either fails with the reason, having moved only to look; an `obj j` referral fails at once.
    `SkillResult.steps` counts the looking too.
    """
    u = getattr(env, "unwrapped", env)
    try:
        if skill_spec(call.skill).ends_plan:
            return SkillResult(True, call.skill, 0)
    except ValueError as err:
        return SkillResult(False, str(err), 0)
    if u.world not in VIEWS:
        return SkillResult(False, f"skills_use=estimated has no view of the {u.world!r} world", 0)
    est = perceive(u)
    mapped, named, why, retry = _lookup(u, call, est)
    looked = 0
    if retry:
        looked = look_from_clear_view(u)
        if u.failure is not None:
            return SkillResult(False, u.failure, looked)
        if looked:
            est = perceive(u)
            mapped, named, why, _ = _lookup(u, call, est)
            why = why and f"{why}, even with the arm out of view"
    if why:
        return SkillResult(False, why, looked)
    view = VIEWS[u.world](u, est, named)
    res = run_skill(u, replace(call, **mapped), max_steps, scene=view)
    return SkillResult(res.success, res.reason, res.steps + looked)
