"""Scripted `push` skill of the pushing world: closed-loop pushing with obstacle-avoiding approaches.

A push step names a block and where it should go: a board location, a place beside another
block, or an offset from where the block is when the step starts. The skill picks a free spot
in that region whose straight path is clear of other blocks, drives the pusher around the blocks
(A* on a 1 cm grid) to a point behind the block, pushes it along the line to the spot, and goes
round again whenever the block drifts off the line. It stops once the block is well inside the
region and reports success with the region's own threshold.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from envs.push import BOARD_CENTER, EFFECTOR_RADIUS, X_MAX, X_MIN, Y_MAX, Y_MIN, clip_to_board, on_board
from envs.push_blocks import BLOCK_WIDTH
from envs.tasks.push import (
    LOCATION_POINTS,
    MAGNITUDES,
    RELATION_VECTORS,
    RELATIVE_DIST,
    in_location,
    location_radius,
    offset_point,
    relation_ok,
)
from envs.vocab import SkillCall
from policies.base import Skill, SkillResult, register_skill

if TYPE_CHECKING:
    from envs.push import PushEnv

HALF = BLOCK_WIDTH / 2
CONTACT = HALF + EFFECTOR_RADIUS  # pusher-to-block centre distance when touching a face
PRE_GAP = 0.02  # the approach ends this far behind the contact point
APPROACH_STEP = 0.04  # m per control step while moving around blocks
PUSH_STEP = (
    0.006,
    0.03,
)  # m per control step while pushing: slow near the spot, so the block does not slide on
SPOT_REACHED = 0.012
EDGE_MARGIN = 0.03  # spots keep the block centre this far inside the board
LOOKAHEAD = 0.05  # m along the leg: the point the block is pushed towards (pure pursuit)
STALL_STEPS = 60  # give up when the block has not come 5 mm closer for this many steps
GRID = 0.01


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else np.array([1.0, 0.0])


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Distance from point p to the segment a-b."""
    ab = b - a
    t = 0.0 if float(ab @ ab) < 1e-12 else float(np.clip((p - a) @ ab / (ab @ ab), 0, 1))
    return float(np.linalg.norm(p - (a + t * ab)))


def _clear(a: np.ndarray, b: np.ndarray, obstacles: list[tuple[np.ndarray, float]]) -> bool:
    return all(_seg_dist(c, a, b) > r for c, r in obstacles)


def plan_path(
    start: np.ndarray, goal: np.ndarray, obstacles: list[tuple[np.ndarray, float]], margin: float = 0.0
) -> list[np.ndarray]:
    """Waypoints from start to goal around disc obstacles (A* on a 1 cm grid over the board shrunk by
    `margin`, then shortcut); just [goal] if no path exists."""
    xs = np.arange(X_MIN + margin, X_MAX - margin + 1e-9, GRID)
    ys = np.arange(Y_MIN + margin, Y_MAX - margin + 1e-9, GRID)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    blocked = np.zeros(gx.shape, dtype=bool)
    for c, r in obstacles:
        blocked |= (gx - c[0]) ** 2 + (gy - c[1]) ** 2 < r**2

    def cell(q: np.ndarray) -> tuple[int, int]:
        return (
            int(np.clip(round((q[0] - xs[0]) / GRID), 0, len(xs) - 1)),
            int(np.clip(round((q[1] - ys[0]) / GRID), 0, len(ys) - 1)),
        )

    s, g = cell(start), cell(goal)
    blocked[s] = blocked[g] = False
    moves = [(dx, dy, float(np.hypot(dx, dy))) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy]
    came: dict[tuple[int, int], tuple[int, int]] = {}
    cost = {s: 0.0}
    frontier = [(0.0, s)]
    while frontier:
        _, cur = heapq.heappop(frontier)
        if cur == g:
            break
        for dx, dy, w in moves:
            nxt = (cur[0] + dx, cur[1] + dy)
            if not (0 <= nxt[0] < len(xs) and 0 <= nxt[1] < len(ys)) or blocked[nxt]:
                continue
            new = cost[cur] + w
            if new < cost.get(nxt, np.inf):
                cost[nxt], came[nxt] = new, cur
                heapq.heappush(frontier, (new + float(np.hypot(g[0] - nxt[0], g[1] - nxt[1])), nxt))
    if g not in cost:
        return [goal]
    cells = [g]
    while cells[-1] != s:
        cells.append(came[cells[-1]])
    pts = [np.array([xs[i], ys[j]]) for i, j in reversed(cells)]
    if len(pts) < 2:
        return [goal]
    pts[0], pts[-1] = start, goal
    # Shortcut: from each point jump to the farthest one still in straight-line view.
    out, k = [], 0
    while k < len(pts) - 1:
        far = next((m for m in range(len(pts) - 1, k, -1) if _clear(pts[k], pts[m], obstacles)), k + 1)
        out.append(pts[far])
        k = far
    return out


@register_skill("push")
class PushSkill(Skill):
    """`push the X to <location> | <relation> the Y | <distance> to the <direction>` (see module doc)."""

    name: ClassVar[str] = "push"
    max_steps: ClassVar[int] = 200

    def reset(self, env: PushEnv, call: SkillCall) -> SkillResult | None:
        if call.skill != "push" or call.obj is None:
            return SkillResult(False, f"the push skill cannot run {call.skill!r} steps", 0)
        if not hasattr(env, "block_xy"):
            return SkillResult(False, f"the push skill needs the pushing world, got {type(env).__name__}", 0)
        n = len(env.object_ids)
        for ref in (call.obj, call.target):
            if ref is not None and not 0 <= ref < n:
                return SkillResult(False, f"there is no object {ref + 1} in the scene ({n} objects)", 0)
        self.call, self.i = call, call.obj
        self.start = env.block_xy(self.i)
        self.name_i = env.names[self.i]
        self.goal_point: np.ndarray | None = None
        if call.direction is not None:
            self.goal_point = offset_point(self.start, call.direction, call.distance)
            if not on_board(self.goal_point, -0.01):
                return SkillResult(
                    False,
                    f"pushing the {self.name_i} {call.distance} to the {call.direction} "
                    f"would take it off the board",
                    0,
                )
        self.offset = self._choose_spot(env)  # spot, relative to the reference block when there is one
        self.mode = "approach"
        self.detour: np.ndarray | None = None
        self.best, self.since_best = np.inf, 0
        self.settle = -1  # control steps left to let the block come to rest after stopping
        self.stalled = False
        self.edge = False  # the block is at the board's edge where the pusher cannot get right behind it
        self.leg: tuple[np.ndarray, np.ndarray] | None = None  # (where the block was, where it goes) of this leg
        return None

    # ---- where to ------------------------------------------------------------------------------
    def _ref(self, env: PushEnv) -> np.ndarray:
        return env.block_xy(self.call.target) if self.call.target is not None else np.zeros(2)

    def _spot(self, env: PushEnv) -> np.ndarray:
        return self._ref(env) + self.offset

    def _candidates(self, env: PushEnv) -> list[tuple[np.ndarray, float]]:
        """(spot, preference cost) pairs; spots are absolute."""
        c = self.call
        if c.relation == "next to":
            ref = self._ref(env)
            angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            return [(ref + BLOCK_WIDTH * np.array([np.cos(a), np.sin(a)]), 0.0) for a in angles]
        if c.relation is not None:
            ref, u = self._ref(env), RELATION_VECTORS[c.relation]
            perp = np.array([-u[1], u[0]])
            # 0.095 m out: inside Language-Table's relative-location region (up to 1.1 x 0.08 m + 0.04 m).
            return [
                (ref + s * u + lat * perp, abs(s - 0.095) + abs(lat))
                for s in (0.085, 0.095, 0.105)
                for lat in (-0.015, 0.0, 0.015)
            ]
        centre = LOCATION_POINTS[c.location] if c.location is not None else self.goal_point
        radius = location_radius(c.location) - 0.03 if c.location is not None else RELATIVE_DIST - 0.045
        offs = np.arange(-radius, radius + 1e-9, GRID)
        pts = [centre + np.array([dx, dy]) for dx in offs for dy in offs if dx * dx + dy * dy <= radius**2]
        return [(q, float(np.linalg.norm(q - centre))) for q in pts]

    def _choose_spot(self, env: PushEnv) -> np.ndarray:
        xy = env.blocks_xy()
        b = xy[self.i]
        others = [k for k in range(len(xy)) if k != self.i]
        best, best_cost = None, np.inf
        for q, pref in self._candidates(env):
            if not on_board(q, EDGE_MARGIN):
                continue
            cost = pref + 0.5 * float(np.linalg.norm(q - b))
            for k in others:
                is_ref = k == self.call.target
                if float(np.linalg.norm(q - xy[k])) < (0.9 * BLOCK_WIDTH if is_ref else 1.35 * BLOCK_WIDTH):
                    cost += 10.0  # occupied
                elif (
                    _seg_dist(xy[k], b, q)
                    < (0.85 if is_ref and self.call.relation == "next to" else 1.1) * BLOCK_WIDTH
                ):
                    cost += 0.3  # the block would hit another one on the way (the skill then goes round)
            if cost < best_cost:
                best, best_cost = q, cost
        if best is None:  # every candidate is off the board: aim at the region itself
            best = self._candidates(env)[0][0]
        return best - self._ref(env)

    # ---- when done -----------------------------------------------------------------------------
    def _reached(self, env: PushEnv) -> bool:
        b, c = env.block_xy(self.i), self.call
        if c.relation == "next to":  # the spot is touching the block; only the real distance counts
            return float(np.linalg.norm(b - self._ref(env))) < 0.047
        if float(np.linalg.norm(b - self._spot(env))) < SPOT_REACHED:
            return True
        if c.location is not None:
            return in_location(b, c.location, margin=0.03)
        if c.direction is not None:
            return float(np.linalg.norm(b - self.goal_point)) < RELATIVE_DIST - 0.045
        return False

    def _succeeded(self, env: PushEnv) -> bool:
        b, c = env.block_xy(self.i), self.call
        if c.location is not None:
            return in_location(b, c.location)
        if c.direction is not None:
            return float(np.linalg.norm(b - self.goal_point)) < RELATIVE_DIST
        return relation_ok(b, self._ref(env), c.relation)

    # ---- control -------------------------------------------------------------------------------
    def act(self, env: PushEnv) -> np.ndarray | None:
        if self.settle >= 0:
            self.settle -= 1
            return None if self.settle < 0 else np.zeros(2, dtype=np.float32)
        if self._reached(env):
            self.settle = 2
            return self._hold(env)
        b, e = env.block_xy(self.i), env.effector_xy()
        spot = self._spot(env)
        dist = float(np.linalg.norm(spot - b))
        if dist < self.best - 0.005:
            self.best, self.since_best = dist, 0
        else:
            self.since_best += 1
            if self.since_best > STALL_STEPS:
                self.stalled = True
                return None
        self.edge = False
        aim = self._aim(env, b, spot)
        d = _unit(self._pursue(b, aim) - b)
        rel = b - e
        along = float(rel @ d)
        lateral = float(np.linalg.norm(rel - along * d))
        max_lateral = 0.03 if self.edge else 0.02
        if self.mode == "push" and (
            lateral > max_lateral or along < 0.01 or along > CONTACT + PRE_GAP + 0.015
        ):
            self.mode = "approach"  # the block drifted off the line: go round again
        if self.mode == "approach":
            pre = clip_to_board(b - d * (CONTACT + PRE_GAP))
            if float(np.linalg.norm(e - pre)) < 0.008:
                self.mode = "push"
            else:
                return self._move_to(env, pre)
        # Advance along the line through the block by one step (closing any gap first), lateral error removed.
        step = float(np.clip(0.6 * float(np.linalg.norm(aim - b)), *PUSH_STEP))
        desired = b - d * along + d * step
        return self._action(env, desired)

    def _aim(self, env: PushEnv, b: np.ndarray, spot: np.ndarray) -> np.ndarray:
        """Where to push the block next: the spot, a waypoint round other blocks on the way to it, or a short
        detour when the pusher cannot get behind the block (it is at the board's edge)."""
        if self.detour is not None and float(np.linalg.norm(b - self.detour)) > 0.015:
            return self.detour
        self.detour = None
        aim = self._via(env, b, spot)
        d = _unit(aim - b)
        if on_board(b - d * (CONTACT + PRE_GAP)):
            return aim
        # Push along the nearest direction the pusher can get behind, a few centimetres, then retry.
        inward = _unit(BOARD_CENTER - b)
        for ang in np.radians([20, -20, 40, -40, 60, -60, 80, -80, 100, -100, 120, -120]):
            r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) @ d
            # Never detour outwards: a block pushed over the edge could not be brought back.
            if float(r @ inward) > -0.1 and on_board(b - r * (CONTACT + PRE_GAP)):
                self.detour = b + 0.05 * r
                return self.detour
        self.edge = True  # push from as close behind as the board allows, off-centre
        return aim

    def _pursue(self, b: np.ndarray, aim: np.ndarray) -> np.ndarray:
        """Pure pursuit: the point LOOKAHEAD ahead of the block's projection on the leg's straight line to `aim`
        (a new leg starts where the block is whenever the aim moves). Pushing at it steers a block that slid
        sideways back onto the line, so it cannot wander past the board's edge, out of the pusher's reach."""
        if self.leg is None or float(np.linalg.norm(self.leg[1] - aim)) > 0.01:
            self.leg = (b.copy(), aim.copy())
        start = self.leg[0]
        length = float(np.linalg.norm(aim - start))
        u = _unit(aim - start)
        along = float(np.clip((b - start) @ u, 0.0, length))
        return aim if along + LOOKAHEAD >= length else start + u * (along + LOOKAHEAD)

    def _block_obstacles(self, env: PushEnv) -> list[tuple[np.ndarray, float]]:
        """Discs the pushed block's centre must keep out of (other blocks, grown by its own half width)."""
        obs = []
        for k in range(len(env.object_ids)):
            if k == self.i:
                continue
            # The block may end up touching the reference of "next to", so that one is shrunk; the reference
            # of a side relation must not be dragged (Language-Table fails the task), so it gets a wide berth.
            if k == self.call.target:
                grow = HALF + (-0.008 if self.call.relation == "next to" else 0.03)
            else:
                grow = HALF + 0.014
            obs.append((env.block_xy(k), env.block_radius(k) * 0.8 + grow))
        return obs

    def _via(self, env: PushEnv, b: np.ndarray, spot: np.ndarray) -> np.ndarray:
        """The spot if the block's straight path to it is clear, else the next waypoint of a fresh path round
        the other blocks (replanned every step, so a block that overshoots a waypoint is not pushed back)."""
        # A disc that already holds the block (or the spot) shrinks to just leave it out, so a path exists.
        obstacles = [
            (c, min(r, float(np.linalg.norm(b - c)) - 0.005, float(np.linalg.norm(spot - c)) - 0.005))
            for c, r in self._block_obstacles(env)
        ]
        if _clear(b, spot, obstacles):
            return spot
        path = plan_path(b, spot, obstacles, margin=EDGE_MARGIN)
        return next((q for q in path if float(np.linalg.norm(q - b)) > 0.03), spot)

    def _obstacles(self, env: PushEnv) -> list[tuple[np.ndarray, float]]:
        obs = []
        for k in range(len(env.object_ids)):
            margin = 0.004 if k == self.i else 0.012
            obs.append((env.block_xy(k), env.block_radius(k) + EFFECTOR_RADIUS + margin))
        return obs

    def _move_to(self, env: PushEnv, goal: np.ndarray) -> np.ndarray:
        e = env.effector_xy()
        obstacles = self._obstacles(env)
        inside = [(c, r) for c, r in obstacles if float(np.linalg.norm(e - c)) < r]
        if inside:  # touching a block (e.g. right after a push): back straight out first
            c, r = min(inside, key=lambda cr: float(np.linalg.norm(e - cr[0])) - cr[1])
            nxt = c + _unit(e - c) * (r + 0.01)
        elif _clear(e, goal, obstacles):
            nxt = goal
        else:
            nxt = plan_path(e, goal, obstacles)[0]
        step = nxt - e
        n = float(np.linalg.norm(step))
        if n > APPROACH_STEP:
            step *= APPROACH_STEP / n
        return self._action(env, e + step)

    def _hold(self, env: PushEnv) -> np.ndarray:
        return self._action(env, env.effector_xy())

    @staticmethod
    def _action(env: PushEnv, desired: np.ndarray) -> np.ndarray:
        return np.clip(desired - env.effector_target, -0.1, 0.1).astype(np.float32)

    def result(self, env: PushEnv) -> SkillResult:
        steps = 0  # run_skill counts the steps
        if self._succeeded(env):
            return SkillResult(True, f"pushed the {self.name_i} {self._where(env)}", steps)
        why = (
            "it is at the edge of the board, the pusher cannot get behind it"
            if self.edge and self.stalled
            else "it stopped moving closer"
            if self.stalled
            else "it is not there"
        )
        return SkillResult(False, f"could not push the {self.name_i} {self._where(env)}: {why}", steps)

    def _where(self, env: PushEnv) -> str:
        c = self.call
        if c.location is not None:
            return f"to the {c.location}"
        if c.direction is not None:
            return f"{c.distance} to the {c.direction} ({MAGNITUDES[c.distance]:.2f} m)"
        return f"{c.relation} the {env.names[c.target]}"
