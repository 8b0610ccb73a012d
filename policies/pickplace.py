"""Scripted `pick` and `place` for the pick-and-place world: closed-loop IK control with a physical grasp.

The skills only send env actions (end-effector deltas and a gripper command); the cube is held
by finger friction alone. Both are written as generators of actions, one phase after another:
rise to a safe height, travel, descend (slowly near contact, tracking the cube or the target as
it is now), grasp or release, check, retreat. A failed grasp is retried.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from envs.pickplace import MAX_DELTA, MAX_OPENING, RELEASE_MARGIN
from envs.vocab import SkillCall
from policies.base import Skill, SkillResult, register_skill

if TYPE_CHECKING:
    from envs.pickplace import PickPlaceEnv

Actions = Generator[np.ndarray, None, bool]

FAST, SLOW = 1.0, 0.25  # action norm for travel and for the last centimetres near contact
CLEARANCE = 0.06  # the held cube's bottom (or the fingertips) stays this far above every cube in travel
MIN_TRAVEL_Z = 0.16
GRASP_RETRIES = 3
PLACE_RETRIES = 2
STACK_XY_TOL = 0.004  # the held cube must be this well centred over its target before release
CLOSE_STEPS = 10  # control steps to close the fingers (0.5 s)
OPEN_STEPS = 8


def grip_cmd(width: float) -> float:
    """Gripper action value for a finger gap (m)."""
    return float(np.clip(width / (MAX_OPENING / 2) - 1.0, -1.0, 1.0))


def toward(env: PickPlaceEnv, goal: np.ndarray, speed: float, grip: float) -> np.ndarray:
    """One action moving the end-effector target toward `goal` at most `speed` (action units) per step."""
    d = (goal - env.ee_target) / MAX_DELTA
    n = float(np.linalg.norm(d))
    if n > speed:
        d *= speed / n
    return np.array([*d, grip], dtype=np.float32)


def move_to(
    env: PickPlaceEnv,
    goal_fn: Callable[[], np.ndarray],
    speed: float,
    grip: float,
    tol: float = 0.004,
    max_steps: int = 80,
) -> Actions:
    """Drive the end-effector to `goal_fn()` (re-read every step, so it can track a moving cube)."""
    for _ in range(max_steps):
        goal = goal_fn()
        if np.linalg.norm(env.ee_target - goal) < 1e-4 and np.linalg.norm(env.ee_pose()[0] - goal) < tol:
            return True
        yield toward(env, goal, speed, grip)
    return False


def servo_cube(
    env: PickPlaceEnv,
    i: int,
    dest_fn: Callable[[], np.ndarray],
    z_goal: float,
    tol: float,
    max_steps: int = 60,
) -> Actions:
    """Lower held cube i until its centre is over `dest_fn()` (within `tol`) at height `z_goal`.

    Steers by the cube's measured position, not the hand's, with gains below 1 because the arm lags
    its target; the cube stays 1 cm higher until it is aligned, so it never scrapes the target.
    """
    for _ in range(max_steps):
        pos = env.object_pose(i)[0]
        err_xy = dest_fn() - pos[:2]
        aligned = bool(np.linalg.norm(err_xy) <= tol)
        err_z = z_goal + (0.0 if aligned else 0.01) - pos[2]
        if aligned and abs(err_z) < 0.002:
            return True
        goal = env.ee_target + np.array([0.4 * err_xy[0], 0.4 * err_xy[1], 0.5 * err_z])
        yield toward(env, goal, SLOW, -1.0)
    return False


def vertical(
    env: PickPlaceEnv, z: float, speed: float, grip: float, tol: float, max_steps: int = 80
) -> Actions:
    """Move the end-effector straight up or down to height z."""
    xy = env.ee_target[:2].copy()
    return (yield from move_to(env, lambda: np.array([*xy, z]), speed, grip, tol, max_steps))


def over_cube(
    env: PickPlaceEnv, i: int, z: float, speed: float, grip: float, tol: float, max_steps: int = 80
) -> Actions:
    """Move the end-effector to height z over cube i, following the cube if it moves."""
    return (
        yield from move_to(
            env, lambda: np.array([*env.object_pose(i)[0][:2], z]), speed, grip, tol, max_steps
        )
    )


def hold(env: PickPlaceEnv, steps: int, grip: float) -> Actions:
    """Keep the end-effector where it is for `steps` control steps with a gripper command."""
    for _ in range(steps):
        yield np.array([0.0, 0.0, 0.0, grip], dtype=np.float32)
    return True


def travel_height(env: PickPlaceEnv, carried: int | None) -> float:
    """End-effector height for horizontal moves: clear of every cube, the carried one included."""
    tops = [env.block_top(j) for j in range(len(env.object_ids)) if j != carried]
    hang = env.object_sizes[carried] / 2 if carried is not None else 0.0
    return max(MIN_TRAVEL_Z, max(tops, default=0.0) + CLEARANCE + hang)


def blocker_reason(env: PickPlaceEnv, i: int, graph: list[int | None]) -> str | None:
    """'the red cube is under the blue cube' when something rests on cube i."""
    on_top = [j for j, s in enumerate(graph) if s == i]
    if on_top:
        return f"the {env.names[i]} is under the {env.names[on_top[0]]}"
    return None


class _ScriptedSkill(Skill):
    """Runs a generator of actions; subclasses give the precondition check, the motion and the judgement."""

    max_steps: ClassVar[int] = 450

    def reset(self, env: PickPlaceEnv, call: SkillCall) -> SkillResult | None:
        self.call = call
        problem = self.precondition(env, call)
        if problem is not None:
            return SkillResult(False, problem, 0)
        self._gen = self.motion(env, call)
        return None

    def act(self, env: PickPlaceEnv) -> np.ndarray | None:
        try:
            return next(self._gen)
        except StopIteration:
            return None

    @abstractmethod
    def precondition(self, env: PickPlaceEnv, call: SkillCall) -> str | None:
        """Why the call cannot start, or None."""

    @abstractmethod
    def motion(self, env: PickPlaceEnv, call: SkillCall) -> Actions:
        """The closed-loop action stream."""


@register_skill("pickplace")
class Pick(_ScriptedSkill):
    """`pick up the X`: grasp cube X from above and lift it to travel height."""

    name = "pick"

    def precondition(self, env, call):
        held = env.held_object()
        if held == call.obj:
            return None
        if held is not None:
            return f"the gripper already holds the {env.names[held]}"
        return blocker_reason(env, call.obj, env.support_graph())

    def motion(self, env, call):
        i = call.obj
        if env.held_object() == i:
            return True
        size = env.object_sizes[i]
        # Wide enough for the cube as it is turned, no wider: neighbours may stand close along the finger axis.
        yaw = env.object_yaw(i)
        open_w = min(MAX_OPENING, size * (abs(np.cos(yaw)) + abs(np.sin(yaw))) + RELEASE_MARGIN)
        for _ in range(GRASP_RETRIES):
            if (yield from self.attempt(env, i, open_w)):
                return True
            yield from hold(env, OPEN_STEPS, grip_cmd(open_w))  # let go and try again from above
        return False

    def attempt(self, env: PickPlaceEnv, i: int, open_w: float) -> Actions:
        """One grasp: over the cube, down (slowly at the end), close, check the pinch, lift, check again."""
        grip = grip_cmd(open_w)
        yield from vertical(env, travel_height(env, None), FAST, grip, 0.02)
        yield from over_cube(env, i, travel_height(env, None), FAST, grip, 0.01)
        grasp_z = max(env.object_pose(i)[0][2] - 0.004, 0.012)
        yield from over_cube(env, i, grasp_z + 0.04, FAST, grip, 0.004)
        yield from over_cube(env, i, grasp_z, SLOW, grip, 0.003, 40)
        yield from hold(env, CLOSE_STEPS, -1.0)
        if not all(env.touches_finger(i)) or env.gripper_opening() < 0.5 * env.object_sizes[i]:
            return False
        yield from vertical(env, grasp_z + 0.03, SLOW, -1.0, 0.01, 20)
        yield from vertical(env, travel_height(env, i), FAST, -1.0, 0.01)
        return env.held_object() == i

    def result(self, env):
        i = self.call.obj
        if env.held_object() != i:
            return SkillResult(False, f"could not grasp the {env.names[i]}", 0)
        if env.object_pose(i)[0][2] - env.object_sizes[i] / 2 < 0.02:
            return SkillResult(False, f"the {env.names[i]} is held but not lifted", 0)
        return SkillResult(True, f"holding the {env.names[i]}", 0)


@register_skill("pickplace")
class Place(_ScriptedSkill):
    """`place the X on the Y | in the Z zone | on the table`: carry the held cube there and release it."""

    name = "place"

    def __init__(self, spot: tuple[float, float] | None = None) -> None:
        self.spot = None if spot is None else np.asarray(spot, dtype=float)  # overrides the table spot search

    def precondition(self, env, call):
        held = env.held_object()
        x = env.names[call.obj]
        if held is None:
            return f"the gripper holds nothing; pick up the {x} first"
        if held != call.obj:
            return f"the gripper holds the {env.names[held]}, not the {x}"
        if call.target is not None:
            return blocker_reason(env, call.target, env.support_graph())
        if call.zone is not None:
            if call.zone not in env.zones:
                return f"there is no {call.zone} zone (zones: {', '.join(env.zones)})"
            if env.zone_spot(call.zone, exclude=(call.obj,)) is None:
                return f"the {call.zone} zone is full"
        elif env.free_spot(env.object_sizes[call.obj], exclude=(call.obj,)) is None:
            return "there is no free spot on the table"
        return None

    def destination(
        self, env: PickPlaceEnv, call: SkillCall
    ) -> tuple[Callable[[], np.ndarray], float, float]:
        """(live target xy, surface height, xy tolerance before release) for the held cube."""
        i = call.obj
        if call.target is not None:
            j = call.target
            return (lambda: env.object_pose(j)[0][:2]), env.block_top(j), STACK_XY_TOL
        if call.zone is not None:
            spot = env.zone_spot(call.zone, exclude=(i,))
        elif self.spot is not None:
            spot = self.spot
        else:
            spot = env.free_spot(env.object_sizes[i], near=env.object_pose(i)[0], exclude=(i,))
        return (lambda: spot), 0.0, 0.01

    def motion(self, env, call):
        i = call.obj
        size = env.object_sizes[i]
        dest_xy, surface, tol = self.destination(env, call)
        rest_z = surface + size / 2 + 0.003  # cube centre height at release: it drops the last 3 mm
        safe = travel_height(env, i)
        yield from vertical(env, safe, FAST, -1.0, 0.02)
        yield from hold(env, 2, -1.0)
        # Travel: the cube may sit off-centre in the fingers, so aim the hand at target + grasp offset
        # (measured while still: measured in motion it would include the arm's lag).
        offset = env.ee_target - env.object_pose(i)[0]

        def aim(z: float) -> Callable[[], np.ndarray]:
            return lambda: np.array([*(dest_xy() + offset[:2]), z])

        yield from move_to(env, aim(safe), FAST, -1.0, 0.01)
        yield from move_to(env, aim(rest_z + offset[2] + 0.03), FAST, -1.0, 0.006)
        for _ in range(PLACE_RETRIES + 1):
            aligned = yield from servo_cube(env, i, dest_xy, rest_z, tol)
            if env.held_object() != i:
                return False  # dropped on the way
            if aligned:
                break
            yield from vertical(env, env.ee_target[2] + 0.02, SLOW, -1.0, 0.005, 20)  # lift clear, try again
        else:
            return False
        yaw = env.object_yaw(i)  # relative to the hand, whose yaw is fixed at 0
        release_w = min(MAX_OPENING, size * (abs(np.cos(yaw)) + abs(np.sin(yaw))) + RELEASE_MARGIN)
        yield from hold(env, OPEN_STEPS, grip_cmd(release_w))
        if any(env.touches_finger(i)):  # still pinched (e.g. turned in the grip): open all the way
            release_w = MAX_OPENING
            yield from hold(env, OPEN_STEPS, grip_cmd(release_w))
        yield from vertical(env, env.ee_target[2] + 0.04, SLOW, grip_cmd(release_w), 0.01, 20)
        yield from vertical(env, travel_height(env, None), FAST, grip_cmd(release_w), 0.02)
        return True

    def result(self, env):
        c = self.call
        i, x = c.obj, env.names[c.obj]
        graph = env.support_graph()
        if env.held_object() == i:
            return SkillResult(False, f"the {x} is still in the gripper", 0)
        if c.target is not None:
            ok = graph[i] == c.target
            where = f"on the {env.names[c.target]}"
        elif c.zone is not None:
            ok = env.in_zone(i, c.zone)
            where = f"in the {c.zone} zone"
        else:
            ok = graph[i] == -1
            where = "on the table"
        if ok:
            return SkillResult(True, f"the {x} is {where}", 0)
        if graph[i] is None:
            return SkillResult(False, f"the {x} fell and is not lying flat", 0)
        return SkillResult(False, f"the {x} did not end up {where}", 0)
