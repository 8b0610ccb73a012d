"""Relations between scene rows, each defined once: what rests on what, what lies in which zone, what the
gripper holds, and the camera frame that "left of" is meant in.

Rows are the observation's object rows and zone rows (`envs.catalogue.OBJ_FIELDS`: x, y, z (m, world
frame), quaternion, size (edge, m), colour id, shape id, present). Three readers share them:
- the pick-and-place world (`PickPlaceEnv.support_graph`, `in_zone`): task success and the oracles,
  on float64 rows straight from the simulator;
- the VQA generator (`training.vqa.Scene`): answers computed from logged float32 rows;
- the model's relation features (`support_weights`, `zone_weights`): soft weights on torch rows.

Each relation is a signed margin (positive where it holds) read through a step: hard (a comparison)
for the world and the questions, or `sigmoid(margin / edge)` for the model, so a soft weight is the
same relation with a smooth edge of `edge` metres. Every function takes numpy arrays or torch
tensors (array-api-compat picks the namespace); this module never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device, is_numpy_array, is_torch_array

from envs.catalogue import OBJ_FIELDS

# ---- tolerances (the only definitions; metres unless said otherwise) --------------------------------
REST_TOL = 0.01  # a cube rests on X when its bottom face is within this of X's top face (X: a cube or the table)
ALIGN_FRACTION = 0.85  # ... and, on a cube, when their centres are horizontally closer than this x their mean edge
TILT_TOL = 0.95  # flat: some cube axis within ~18 degrees of world z (|cos| above this); a tilted cube rests on nothing
HELD_DIST = 0.03  # from rows alone: a cube resting on nothing this close to the end effector is in the gripper
ABOVE_EDGE = 0.0025  # soft step width of "j's centre is above i's by half their reach" (`support_weights`)
ZONE_EDGE = 0.005  # soft step width, on each axis, of "the centre lies inside the zone's square" (`zone_weights`)
REACH_FLOOR = 1e-6  # reach is floored here before dividing by it (empty rows have size 0)

_SIZE = OBJ_FIELDS.index("size")
_QUAT = slice(OBJ_FIELDS.index("qx"), OBJ_FIELDS.index("qw") + 1)


def soft_step(x: Any) -> Any:
    """The soft step: torch's own kernel on tensors (what the model was trained with), else 1 / (1 + exp(-x))."""
    if is_torch_array(x):
        return x.sigmoid()
    if is_numpy_array(x):
        with np.errstate(over="ignore"):  # exp overflows to inf for very negative x: the weight is then 0
            return 1 / (1 + np.exp(-x))
    xp = array_namespace(x)
    return 1 / (1 + xp.exp(-x))


# ---- primitives ----------------------------------------------------------------------------------
def reach(a: Any, b: Any) -> Any:
    """(N, M) half the summed edges of rows a (N, OBJ_DIM) and b (M, OBJ_DIM): the centre distance of two
    cubes standing side by side, the scale of every "over / on" relation (m)."""
    return (a[:, _SIZE][:, None] + b[:, _SIZE][None, :]) / 2


def horizontal_distance(a: Any, b: Any) -> Any:
    """(N, M) distance (m) between the centres of rows a and b in the table plane (x, y)."""
    xp = array_namespace(a, b)
    return xp.linalg.vector_norm(b[None, :, :2] - a[:, None, :2], axis=-1)


def flat(rows: Any) -> Any:
    """(N,) whether each row's cube sits on one of its faces: some axis within TILT_TOL of world z.

    Reads the quaternion (qx, qy, qz, qw) as Bullet turns it into a rotation matrix (the same
    operations, so the simulator's own matrix gives the same answer bit for bit); a zero quaternion
    (an absent or hand-written row) counts as no rotation.
    """
    xp = array_namespace(rows)
    q = rows[:, _QUAT]
    x, y, z, w = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    n2 = x * x + y * y + z * z + w * w
    s = 2.0 / xp.where(n2 > 0, n2, xp.ones_like(n2))
    xs, ys, zs = x * s, y * s, z * s
    up = xp.stack([x * zs - w * ys, y * zs + w * xs, 1.0 - (x * xs + y * ys)])  # third row of the matrix
    return xp.max(xp.abs(up), axis=0) > TILT_TOL


# ---- resting -------------------------------------------------------------------------------------
def on_table(rows: Any, table_z: float = 0.0) -> Any:
    """(N,) whether each row's bottom face is within REST_TOL above the table top at `table_z` (or below it)."""
    bottom = rows[:, 2] - rows[:, _SIZE] / 2
    return REST_TOL - (bottom - table_z) > 0


def resting_pairs(rows: Any) -> Any:
    """(N, N) whether row i (row index) could rest on row j (column): i's bottom face within REST_TOL of
    j's top face and their centres horizontally closer than ALIGN_FRACTION x their reach; never i on i.

    Flatness and the gripper are not looked at here (see `support_graph`)."""
    xp = array_namespace(rows)
    half = rows[:, _SIZE] / 2
    bottom, top = rows[:, 2] - half, rows[:, 2] + half
    touching = REST_TOL - xp.abs(bottom[:, None] - top[None, :]) > 0
    aligned = ALIGN_FRACTION * reach(rows, rows) - horizontal_distance(rows, rows) > 0
    return touching & aligned & ~xp.eye(rows.shape[0], dtype=xp.bool, device=device(rows))


def support_graph(rows: Any, table_z: float = 0.0, held: int | None = None) -> list[int | None]:
    """What each row (N, OBJ_DIM) rests on: -1 the table, j row j, None nothing.

    A cube rests on nothing when it is `held` (an index: the world knows it from finger contacts) or
    tilted (`flat`); else on the table when `on_table`; else on the horizontally nearest row of
    `resting_pairs` (the lowest index on a tie).
    """
    xp = array_namespace(rows)
    n = rows.shape[0]
    if n == 0:
        return []
    pairs = resting_pairs(rows)
    dist = xp.where(pairs, horizontal_distance(rows, rows), xp.full_like(pairs, float("inf"), dtype=rows.dtype))
    best = xp.argmin(dist, axis=1)
    is_flat, table, any_pair = flat(rows), on_table(rows, table_z), xp.any(pairs, axis=1)
    out: list[int | None] = []
    for i in range(n):
        if i == held or not bool(is_flat[i]):
            out.append(None)
        elif bool(table[i]):
            out.append(-1)
        else:
            out.append(int(best[i]) if bool(any_pair[i]) else None)
    return out


def stacked_above(rows: Any, edge: float | None = None) -> Any:
    """(N, N) whether row j (column) is above row i (row) in one stack: their footprints overlap (centres
    closer than their reach) and j's centre is higher than i's by more than half their reach.

    Hard (bool) without `edge`; with `edge` (m) a weight in [0, 1]: the overlap fraction
    (1 centred, 0 at a reach apart) times a sigmoid of the height margin over `edge`. Transitive,
    unlike `resting_pairs`: a cube is above every cube under it, not only the one it rests on.
    """
    xp = array_namespace(rows)
    r = reach(rows, rows)
    overlap = xp.clip(1 - horizontal_distance(rows, rows) / xp.clip(r, min=REACH_FLOOR), min=0)
    height = (rows[None, :, 2] - rows[:, None, 2]) - r / 2
    if edge is None:
        return (overlap > 0) & (height > 0)
    return overlap * soft_step(height / edge)


# ---- zones ---------------------------------------------------------------------------------------
def zone_axis_margins(rows: Any, zones: Any) -> Any:
    """(N, Nz, 2) how far (m) each row's centre lies inside each zone's square, per axis (negative: outside)."""
    xp = array_namespace(rows, zones)
    half = zones[:, _SIZE] / 2
    return half[None, :, None] - xp.abs(rows[:, None, :2] - zones[None, :, :2])


def zone_margin(rows: Any, zones: Any) -> Any:
    """(N, Nz) how far (m) each row's centre lies inside each zone's square (negative: outside)."""
    xp = array_namespace(rows, zones)
    return xp.min(zone_axis_margins(rows, zones), axis=-1)


def inside_zone(rows: Any, zones: Any, edge: float | None = None) -> Any:
    """(N, Nz) whether each row's centre lies inside each zone's square (its edge included).

    Hard (bool) without `edge`; with `edge` (m) the product over both axes of a sigmoid of the
    axis margin over `edge`. Resting is not looked at (see `in_zone`).
    """
    xp = array_namespace(rows, zones)
    margins = zone_axis_margins(rows, zones)
    if edge is None:
        return xp.all(margins >= 0, axis=-1)
    return xp.prod(soft_step(margins / edge), axis=-1)


def in_zone(rows: Any, zones: Any, support: Sequence[int | str | None]) -> Any:
    """(N, Nz) whether each cube lies in each zone as the tasks judge it: `inside_zone` and resting on
    something (`support[i]` not None, e.g. from `support_graph`; a held or tilted cube is in no zone)."""
    xp = array_namespace(rows, zones)
    resting = xp.asarray([s is not None for s in support], dtype=xp.bool, device=device(rows))
    return inside_zone(rows, zones) & resting[:, None]


# ---- the gripper -----------------------------------------------------------------------------------
def held_row(rows: Any, ee: Sequence[float], support: Sequence[int | str | None]) -> int | None:
    """The row in the gripper, read from rows alone: resting on nothing (`support[i]` None) and within
    HELD_DIST of the end effector `ee` (x, y, z); the nearest such row, or None."""
    rows = np.asarray(rows, np.float64)
    dist = np.linalg.norm(rows[:, :3] - np.asarray(ee[:3], np.float64), axis=-1)
    free = [(float(dist[i]), i) for i, s in enumerate(support) if s is None and dist[i] < HELD_DIST]
    return min(free)[1] if free else None


# ---- the model's soft weights --------------------------------------------------------------------
def support_weights(rows: Any, scene: Any, is_object: Any) -> Any:
    """(N, N) soft "cube j is above cube i in a stack" weights (row i, column j): `stacked_above` with a
    smooth edge of ABOVE_EDGE, among the object rows of one scene.

    rows: (N, OBJ_DIM); scene: (N,) example index of each row; is_object: (N,) bool (False for zone rows).
    Pairs from different scenes, zone rows and a row with itself weigh 0. Same dtype as `rows`.
    """
    xp = array_namespace(rows)
    same = (scene[:, None] == scene[None, :]) & is_object[:, None] & is_object[None, :]
    same &= ~xp.eye(rows.shape[0], dtype=xp.bool, device=device(rows))
    return stacked_above(rows, edge=ABOVE_EDGE) * same


def zone_weights(rows: Any, scene: Any, is_object: Any, zones: Any, zone_scene: Any) -> Any:
    """(N, Nz) soft "object i lies in zone k" weights (row i, column k): `inside_zone` with a smooth edge
    of ZONE_EDGE per axis.

    rows: (N, OBJ_DIM) with scene (N,) and is_object (N,) as in `support_weights`; zones: (Nz, OBJ_DIM)
    zone rows with zone_scene (Nz,). Whether the cube rests is not looked at (a held cube counts for
    the zone under it). Zone rows among `rows`, and pairs from different scenes, weigh 0.
    """
    same = (scene[:, None] == zone_scene[None, :]) & is_object[:, None]
    return inside_zone(rows, zones, edge=ZONE_EDGE) * same


# ---- the camera frame ("left of" is meant as seen in the image) ---------------------------------------
@dataclass(frozen=True)
class Camera:
    """Pinhole camera from PyBullet's column-major view/projection matrices; `uv` is in [0, 1] image coords."""

    view: tuple[float, ...]
    proj: tuple[float, ...]

    def uv(self, point: Sequence[float]) -> tuple[float, float]:
        """(u, v) of a world point (x, y, z): u grows to the right of the image, v grows downwards."""
        v = np.asarray(self.view, np.float64).reshape(4, 4).T
        p = np.asarray(self.proj, np.float64).reshape(4, 4).T
        clip = p @ v @ np.array([*point[:3], 1.0])
        ndc = clip[:3] / clip[3]
        return float((ndc[0] + 1) / 2), float((1 - ndc[1]) / 2)
