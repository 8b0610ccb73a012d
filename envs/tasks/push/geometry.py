"""Geometry of the pushing tasks: Language-Table's board locations, directions and success thresholds.

"top" is -x (towards the robot base), "left" is -y. The skills (`policies.push`) aim with the same
points and tests that the tasks judge success with.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

from envs.geometry import horizontal_distance, soft_step
from envs.push import WORKSPACE_BUFFER, X_MAX, X_MIN, Y_MAX, Y_MIN
from envs.push_blocks import BLOCK_WIDTH
from envs.vocab import DIRECTIONS

# ---- locations and thresholds (Language-Table) ----------------------------------------------------
# Absolute locations are offset towards the robot by 0.025 m in x, as in Language-Table.
_LX_MIN, _LX_MAX = X_MIN - 0.025, X_MAX - 0.025
_LX_C, _LY_C = (_LX_MIN + _LX_MAX) / 2, (Y_MIN + Y_MAX) / 2
LOCATION_POINTS: dict[str, np.ndarray] = {
    "top left": np.array([_LX_MIN, Y_MIN]),
    "top": np.array([_LX_MIN, _LY_C]),
    "top right": np.array([_LX_MIN, Y_MAX]),
    "left": np.array([_LX_C, Y_MIN]),
    "center": np.array([_LX_C, _LY_C]),
    "right": np.array([_LX_C, Y_MAX]),
    "bottom left": np.array([_LX_MAX, Y_MIN]),
    "bottom": np.array([_LX_MAX, _LY_C]),
    "bottom right": np.array([_LX_MAX, Y_MAX]),
}
CORNERS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
LOCATION_DIST = 0.115  # block2absolutelocation success radius (m)
CENTER_DIST = 0.1  # ... for the center
BLOCK2BLOCK_DIST = 0.05  # block2block: centre distance
RELATIVE_DIST = 0.1  # block2relativelocation: distance to the offset point
MAGNITUDES: dict[str, float] = {"slightly": 0.15, "far": 0.25}  # Language-Table's near / far
REL_OFFSET = 0.08  # block2block_relative_location: offset of the target point from the reference block
REL_DIST = 0.04  # ... success radius around the line from 0.5x to 1.1x the offset
DRAG_DIST = 0.05  # ... the reference block may not be dragged further
SEPARATE_OFFSET = 0.1  # separate: target 0.1 m from the avoided block, away from it
SEPARATE_DIST = 0.025  # ... success radius
JOINED_DIST = 0.08  # blocks closer than this are "together" (Language-Table's separate threshold)
BOARD_EDGE = 0.01  # soft step width (m) of the model's board relations (`location_weights`, `together_weights`);
# in `nearest_weights` the softmax temperature (m) over the blocks' distances
MAX_EXPONENT = 80.0  # `nearest_weights` caps its exponents here: exp(80) ~ 5.5e34 fits float32 and bfloat16
MIN_GAP = 0.0175  # reset: free space between blocks' nominal footprints
MIN_CENTRE_DIST = BLOCK_WIDTH + MIN_GAP
ARM_CLEARANCE = 0.06 + BLOCK_WIDTH / 2  # reset: blocks start this far from the effector
SIDE_MARGIN = 0.03  # side_together: blocks start at least this far from the midline y = 0

# Unit vectors of the plan language's directions: "top" is -x (towards the robot base), "left" is -y.
_AXES = {
    "top": np.array([-1.0, 0]),
    "bottom": np.array([1.0, 0]),
    "left": np.array([0, -1.0]),
    "right": np.array([0, 1.0]),
}
DIRECTION_VECTORS: dict[str, np.ndarray] = {
    d: sum(_AXES[w] for w in d.split()) / np.linalg.norm(sum(_AXES[w] for w in d.split())) for d in DIRECTIONS
}
RELATION_VECTORS: dict[str, np.ndarray] = {f"{d} of": _AXES[d] for d in ("left", "right", "top", "bottom")}


def location_radius(location: str) -> float:
    """Success radius of a board location (Language-Table: 0.1 m for the center, else 0.115 m)."""
    return CENTER_DIST if location == "center" else LOCATION_DIST


def in_location(xy: np.ndarray, location: str, margin: float = 0.0) -> bool:
    """Whether a block at `xy` counts as being at a board location."""
    return float(np.linalg.norm(xy - LOCATION_POINTS[location])) < location_radius(location) - margin


# ---- the model's soft board relations (torch or numpy rows: envs.catalogue.OBJ_FIELDS, x and y first) ------
def location_weights(rows: Any, edge: float = BOARD_EDGE) -> Any:
    """(N, 9 + 2) soft weights of "block i is at board location k" (`in_location`, k in LOCATION_POINTS' order)
    and then of "block i lies in the left / right half" (y < 0 / y > 0, as side_together.on_side), each with a
    smooth edge of `edge` metres.

    rows: (N, OBJ_DIM) object rows (x, y in metres, world frame); same dtype as `rows`.
    """
    xp = array_namespace(rows)
    points = xp.asarray(np.stack(list(LOCATION_POINTS.values())), dtype=rows.dtype, device=device(rows))
    radii = xp.asarray([location_radius(k) for k in LOCATION_POINTS], dtype=rows.dtype, device=device(rows))
    dist = xp.linalg.vector_norm(rows[:, None, :2] - points[None, :, :], axis=-1)  # (N, 9)
    at = soft_step((radii[None, :] - dist) / edge)
    right = soft_step(rows[:, 1:2] / edge)  # (N, 1)
    return xp.concat([at, 1 - right, right], axis=1)


LOCATION_WORDS: tuple[str, ...] = (*(f"{k} corner" if k in CORNERS else k for k in LOCATION_POINTS),
                                   "left side", "right side")  # the words of `location_weights`' columns


def nearest_weights(rows: Any, scene: Any, is_object: Any, names: tuple[str, ...] = CORNERS,
                    edge: float = BOARD_EDGE) -> Any:
    """(N, len(names)) soft "block i is the block of its scene nearest to board location k" weights (the choice
    of `corner_to_same_color.closest_to`, PaLM-E's T1): a softmax over the scene's blocks of -distance / `edge`,
    so each column sums to 1 over a scene's blocks. Zone rows weigh 0. rows: (N, OBJ_DIM); scene: (N,) example
    index; is_object: (N,) bool; names: keys of LOCATION_POINTS.
    """
    xp = array_namespace(rows)
    points = xp.asarray(np.stack([LOCATION_POINTS[k] for k in names]), dtype=rows.dtype, device=device(rows))
    dist = xp.linalg.vector_norm(rows[:, None, :2] - points[None, :, :], axis=-1)  # (N, K)
    same = (scene[:, None] == scene[None, :]) & is_object[:, None] & is_object[None, :]  # (N, N), with itself
    # weight of i = 1 / sum_j exp((d_i - d_j) / edge) over the blocks j of i's scene: other rows are masked before
    # the exp (exp(-inf) = 0), and the exponent is capped at MAX_EXPONENT (then the weight is ~0, never inf * 0)
    gap = xp.minimum((dist[:, None, :] - dist[None, :, :]) / edge, xp.asarray(MAX_EXPONENT, dtype=rows.dtype))
    ratios = xp.exp(xp.where(same[:, :, None], gap, xp.asarray(-xp.inf, dtype=rows.dtype)))
    alone = xp.astype(~is_object, rows.dtype)[:, None]  # a zone row's sum is 0: divide it by 1 instead
    return xp.where(is_object[:, None], 1 / (xp.sum(ratios, axis=1) + alone), xp.zeros_like(dist))


NEAREST_WORDS: tuple[str, ...] = tuple(f"closest to the {k} corner" for k in CORNERS)  # `nearest_weights`' columns


def together_weights(rows: Any, scene: Any, is_object: Any, edge: float = BOARD_EDGE) -> Any:
    """(N, N) soft "blocks i and j are together" weights (centre distance under JOINED_DIST, as `clusters` links
    blocks in side_together) with a smooth edge of `edge` metres; rows of other scenes, zone rows and a row
    with itself weigh 0. rows: (N, OBJ_DIM); scene: (N,) example index; is_object: (N,) bool.
    """
    xp = array_namespace(rows)
    same = (scene[:, None] == scene[None, :]) & is_object[:, None] & is_object[None, :]
    same &= ~xp.eye(rows.shape[0], dtype=xp.bool, device=device(rows))
    return soft_step((JOINED_DIST - horizontal_distance(rows, rows)) / edge) * same


def inside_bounds(xy: np.ndarray, buffer: float = WORKSPACE_BUFFER) -> bool:
    """Language-Table's check that a target point lies inside the buffered board."""
    return bool(X_MIN + buffer < xy[0] < X_MAX - buffer and Y_MIN + buffer < xy[1] < Y_MAX - buffer)


def offset_point(start: np.ndarray, direction: str, distance: str) -> np.ndarray:
    """Target of 'push X <distance> to the <direction>' from the block's start position."""
    return start + MAGNITUDES[distance] * DIRECTION_VECTORS[direction]


def relation_ok(xy: np.ndarray, ref_xy: np.ndarray, relation: str) -> bool:
    """Language-Table's block2block_relative_location test: within 0.04 m of the line from 0.5x to 1.1x
    the 0.08 m offset from the reference block ('next to': centre distance < 0.05 m)."""
    if relation == "next to":
        return float(np.linalg.norm(xy - ref_xy)) < BLOCK2BLOCK_DIST
    off = REL_OFFSET * RELATION_VECTORS[relation]
    pts = ref_xy + np.linspace(0.5, 1.1, 10)[:, None] * off
    return bool(np.min(np.linalg.norm(pts - xy, axis=1)) < REL_DIST)


def separated(xy: np.ndarray, avoid_xy: np.ndarray) -> bool:
    """Language-Table's separate test: within 0.025 m of the point 0.1 m away from the avoided block."""
    return abs(float(np.linalg.norm(xy - avoid_xy)) - SEPARATE_OFFSET) < SEPARATE_DIST


def unit(v: np.ndarray) -> np.ndarray:
    """`v` scaled to length 1 (+x for a zero vector)."""
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else np.array([1.0, 0.0])


def on_board_target(xy: np.ndarray, margin: float = 0.03) -> bool:
    """Whether a block can be pushed to `xy` (inside the board by `margin`)."""
    return bool(X_MIN + margin <= xy[0] <= X_MAX - margin and Y_MIN + margin <= xy[1] <= Y_MAX - margin)
