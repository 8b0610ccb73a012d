"""Calibration and tuning of the estimator: the worlds it knows, their default frame sizes, the thresholds.

`_world(name)` is what the estimator may know of a world (calibration, never state): the object colours and
shapes, the paints that are not objects (robot, table, board), whether it has zones, the push blocks' height and
the cluster extents (m) above which a cluster holds two objects. Lengths are in m unless a comment says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from envs.catalogue import COLOR_NAMES

WORLDS = ("pickplace", "push")
DEFAULT_SIZES: dict[str, tuple[int, int]] = {"pickplace": (320, 320), "push": (270, 480)}  # (H, W)

MIN_HEIGHT = 0.004  # object pixels lie this far above the table top (m); zone pixels below it
TABLE_SNAP = 0.012  # an object whose lowest visible point is below this (m) stands on the table
JUMP_FOOTPRINTS = 6.0  # a 3-D step to a neighbour pixel above this many pixel footprints is a depth discontinuity
TOP_NZ = 0.9  # |normal z| above this: a horizontal (top) face
SIDE_NZ = 0.3  # |normal z| below this: a vertical (side) face
TOP_TOL = 0.0015  # top-face pixels lie within this of the top height (m)
OCCLUDER_GAP = 0.01  # a neighbour this much nearer the camera (m) occludes the pixel's surface
SIZE_TOL = 0.004  # a measured edge within this of a catalogue edge takes that size (m)
SUPPORT_GAP = 0.03  # a support's top lies at least this far below the cube's top (m)
ZONE_MIN_FRACTION = 0.03  # a zone needs this fraction of a whole zone's pixels
ZONE_MIN_VALUE = 150  # zones are pale (0.55 white + 0.45 colour) and lit from above: no channel maximum below this
GRID_MM = 1.0  # raster step of the push blocks' footprint matching (mm)
GRID_N = 80  # footprint raster side (cells): 80 mm
ANGLE_STEP = 3.0  # footprint template yaw step (degrees)


@dataclass(frozen=True)
class _World:
    colors: tuple[str, ...]  # object colours that can appear
    shapes: tuple[str, ...]  # object shapes
    distractors: tuple[tuple[float, ...], ...]  # RGBA paints that are not objects
    zones: bool
    block_height: float | None  # push blocks: prism height (m); None: cubes of SIZE_EDGES
    split_z: float  # a cluster taller than this holds two objects (m)
    split_xy: float  # a cluster wider than this holds two objects (m)


@cache
def _world(world: str) -> _World:
    if world == "pickplace":
        from envs.pickplace import ROBOT_RGBA

        table = (0.42, 0.40, 0.38, 1.0)  # envs.pickplace._build_world's table paint
        return _World(COLOR_NAMES, ("cube",), (ROBOT_RGBA, table), True, None, 0.065, 0.08)
    if world == "push":
        from envs.push import BOARD_RGBA, EFFECTOR_RGBA, TABLE_RGBA
        from envs.push_blocks import BLOCK_COLORS, BLOCK_HEIGHT, BLOCK_SHAPES

        return _World(BLOCK_COLORS, BLOCK_SHAPES, (EFFECTOR_RGBA, BOARD_RGBA, TABLE_RGBA), False, BLOCK_HEIGHT,
                      1.5 * BLOCK_HEIGHT + 0.01, 0.065)
    raise ValueError(f"unknown world {world!r}; expected one of {list(WORLDS)}")
