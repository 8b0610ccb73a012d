"""Camera-based perception (issue #20): object and zone rows estimated from a rendered RGB-D frame.

The estimator sees what a camera sees: the RGB image, PyBullet's depth buffer and the camera's known
view / projection matrices. It never reads the segmentation mask, body ids, poses or the task instance
(privileged state). What it may know is calibration: the catalogue colours and sizes, how the worlds
paint the robot, table, board and zones, the table height, the push blocks' footprints.

    perception = Perception("pickplace")                     # frames of DEFAULT_SIZES["pickplace"]
    rgb, depth = render_for_perception(env)                  # same camera as env's frames, larger
    est = perception.estimate(rgb, depth, env._view, env._proj)
    est.objects      # (MAX_OBJECTS, OBJ_DIM) float32, the layout of env.object_rows()
    est.zones        # (MAX_ZONES, OBJ_DIM) float32, the layout of env.zone_rows()
    est.confidence   # (MAX_OBJECTS,) in [0, 1];  est.support: [(upper row, lower row), ...]

Method, per frame (benchmarks/perception_accuracy.py measures it):
1. Back-projection: pixel (u, v) (column, row from the top) with depth-buffer value d is the world point
   inv(proj @ view) (2u/W - 1, 1 - 2(v+1)/H, 2d - 1, 1), dehomogenised: TinyRenderer's pixel convention
   (measured: a vertical cube face comes back on its plane to 0.0 mm, the table top at z = 0.0 mm; half-pixel
   centres are off by ~1 mm). Far-plane pixels are background. `linear_depth` gives metric depth (near/far).
2. Colour: TinyRenderer shades a face by scaling its albedo (by 0.6-0.94, measured), which keeps hue and
   saturation, so a pixel takes the class nearest in the chroma plane (S cos H, S sin H) of cv2's HSV
   (a 256 x 256 look-up table over hue and saturation) among the world's object colours and its
   distractors (the robot's grey has a blue cast that tells it from the white cube; table; board), within
   a tolerance and a brightness range. Pixels above the table (z > MIN_HEIGHT) are classified against the
   object colours, pixels on it against the zones' pastel colours.
3. Segmentation: per colour, connected components (cv2) of the mask cut along depth discontinuities (a
   3-D step to a neighbour pixel above JUMP_FOOTPRINTS pixel footprints); components that fit in one
   object together are merged (the arm in front splits a cube's image); a cluster too tall for one cube is
   cut one catalogue edge above its bottom, at whichever edge makes both parts' widths agree with their
   heights (a small and a large cube of one colour stacked), a cluster too wide is split by its top faces
   (two cubes of one colour side by side), else by cv2.kmeans.
4. Surface normals from central differences of the world-point image (cv2.Sobel): top faces (|n_z| > 0.9)
   and side faces (|n_z| < 0.3).
5. A cube: its top height is the median of its top-face pixels (a cube with another on it: that cube's
   bottom); its edge is that top's height over what it rests on (the table, or the highest cube top below
   that it overlaps) or over its own bottom edge, snapped to the catalogue edge within SIZE_TOL; yaw is
   the circular mean (modulo 90 degrees) of the side-face normals and the top face's cv2.minAreaRect; the
   centre, along each cube axis, comes from a side face across that axis (its plane offset, minus half the
   edge: exact), else from the midpoint of a face extent that spans the whole edge, else from the end of a
   cut-short top face that does not border something nearer the camera, plus half the edge.
   z = top - edge / 2.
6. A push block: the top face's outline (cv2.findContours) carried to the world plane through the depth,
   filled on a 1 mm grid and matched by IoU against the catalogue footprints every ANGLE_STEP degrees
   (shape and yaw at once, the yaw refined by a parabola through the best three); the centre is the area
   centroid of the outline, z = top - height / 2, size 2 x the shape's bounding radius.
7. A zone: the pastel pixels of one colour on the table; an axis-aligned square from their extent (an
   edge hidden by cubes standing in the zone is taken from the side with the longer visible run).
8. Support: `envs.geometry.support_graph` of the estimated rows (the one definition of resting).
9. Confidence (a heuristic in [0, 1]): how well the measured edge fits a catalogue edge (push: the
   footprint IoU) times how much of the object was seen. Below ~0.5 a row is doubtful.

Known limits: a tilted cube is reported flat (yaw only); a cube hidden behind the arm or a taller stack is
missed (nothing of it is in the frame); a cube whose top is hidden and whose sides are cut by the arm or
the fingers gets its size from its visible width (often wrong; confidence ~0.02); two touching cubes
of one colour and one size (push: two blocks of one colour) are split only by k-means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.catalogue import COLOR_NAMES, COLORS, MAX_OBJECTS, MAX_ZONES, OBJ_DIM
from envs.geometry import support_graph
from envs.perception.blocks import _templates
from envs.perception.colour import _Palette
from envs.perception.config import (
    ANGLE_STEP,
    DEFAULT_SIZES,
    GRID_MM,
    GRID_N,
    JUMP_FOOTPRINTS,
    MIN_HEIGHT,
    OCCLUDER_GAP,
    SIDE_NZ,
    SIZE_TOL,
    SUPPORT_GAP,
    TABLE_SNAP,
    TOP_NZ,
    TOP_TOL,
    WORLDS,
    ZONE_MIN_FRACTION,
    ZONE_MIN_VALUE,
    _world,
)
from envs.perception.geometry import (
    _Frame,
    _matrix,
    backproject,
    camera_position,
    linear_depth,
    near_far,
)
from envs.perception.objects import _find_objects
from envs.perception.zones import _find_zones


@dataclass(frozen=True)
class Estimate:
    """What one frame shows, in the observation's layout.

    objects: (MAX_OBJECTS, OBJ_DIM) float32 rows (catalogue.OBJ_FIELDS): x, y, z of the body centre (m,
        world), yaw-only quaternion (the yaw folded into the shape's symmetry period), size (m: the cube
        edge; a push block's 2 x bounding radius), colour id, shape id, present; sorted by x then y,
        absent rows zero.
    zones: (MAX_ZONES, OBJ_DIM) float32 zone rows (catalogue.zone_row), sorted by x then y.
    confidence: (MAX_OBJECTS,) float32 in [0, 1] per object row (0 for absent rows).
    support: (upper, lower) object-row index pairs: row `upper` rests on row `lower` (geometry.support_graph
        of the estimated rows); cubes on the table or on nothing are not listed.
    """

    objects: np.ndarray
    zones: np.ndarray
    confidence: np.ndarray
    support: list[tuple[int, int]]

    @property
    def n_objects(self) -> int:
        return int((self.objects[:, -1] > 0.5).sum())


# ---- the estimator -----------------------------------------------------------------------------------
class Perception:
    """Object and zone rows of one world, estimated from an RGB-D frame of the world's fixed camera.

    world: "pickplace" or "push". image_size: (H, W) of the frames `estimate` takes (any size; the
    accuracy and the cost grow with it, see benchmarks/perception_accuracy.py).
    """

    def __init__(self, world: str, image_size: tuple[int, int] | None = None) -> None:
        self.world = world
        self.cfg = _world(world)
        size = DEFAULT_SIZES[world] if image_size is None else tuple(int(s) for s in image_size)
        if len(size) != 2 or min(size) < 32:
            raise ValueError(f"image_size must be (height, width) >= 32, got {image_size!r}")
        self.image_size: tuple[int, int] = size  # type: ignore[assignment]
        ids = [COLOR_NAMES.index(c) for c in self.cfg.colors]
        self._objects = _Palette.build(
            [(COLORS[c], i) for c, i in zip(self.cfg.colors, ids)] + [(d, -1) for d in self.cfg.distractors],
            shade=(0.45, 1.05),
        )
        self._zones = None
        if self.cfg.zones:
            from envs.pickplace import zone_rgba

            self._zones = _Palette.build(
                [(zone_rgba(c), i) for i, c in enumerate(COLOR_NAMES)] + [(d, -1) for d in self.cfg.distractors],
                shade=(0.8, 1.05),  # zones are flat and lit from above: no dark faces
            )
            self._zones.lut()  # built here, not in the first frame's time
        self._objects.lut()
        if self.cfg.block_height is not None:
            _templates()

    def estimate(self, rgb: np.ndarray, depth: np.ndarray, view: Any, proj: Any) -> Estimate:
        """Rows of the objects and zones in one frame.

        rgb: (H, W, 3) uint8 (an (H, W, 4) RGBA frame is accepted; alpha is ignored); depth: (H, W) PyBullet
        depth-buffer values in [0, 1]; view, proj: the 16-number matrices the frame was rendered with.
        Raises ValueError naming the expected shape for arrays of another shape or dtype.
        """
        h, w = self.image_size
        rgb = np.asarray(rgb)
        depth = np.asarray(depth)
        if rgb.ndim == 3 and rgb.shape[2] == 4:
            rgb = rgb[:, :, :3]
        if rgb.shape != (h, w, 3):
            raise ValueError(f"rgb must have shape ({h}, {w}, 3) (this Perception's image_size), got {rgb.shape}")
        if rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be uint8 of shape ({h}, {w}, 3), got dtype {rgb.dtype}")
        if depth.shape != (h, w):
            raise ValueError(f"depth must have shape ({h}, {w}) (this Perception's image_size), got {depth.shape}")
        if not np.issubdtype(depth.dtype, np.floating):
            raise ValueError(f"depth must be a float depth buffer of shape ({h}, {w}), got dtype {depth.dtype}")
        rgb = np.ascontiguousarray(rgb)
        for m, name in ((view, "view"), (proj, "proj")):
            _matrix(m, name)  # 16 numbers, else a ValueError
        if not np.any((depth < 0.9999) & np.isfinite(depth)):  # nothing but background
            return Estimate(np.zeros((MAX_OBJECTS, OBJ_DIM), np.float32), np.zeros((MAX_ZONES, OBJ_DIM), np.float32),
                            np.zeros(MAX_OBJECTS, np.float32), [])
        frame = _Frame(rgb, depth, view, proj)
        found = _find_objects(self.cfg, self._objects, frame)
        rows = np.zeros((MAX_OBJECTS, OBJ_DIM), np.float32)
        conf = np.zeros(MAX_OBJECTS, np.float32)
        found = sorted(found, key=lambda o: -o["conf"])[:MAX_OBJECTS]  # the most certain, if more than fit
        found.sort(key=lambda o: (o["row"][0], o["row"][1]))
        for k, o in enumerate(found):
            rows[k] = o["row"]
            conf[k] = o["conf"]
        n = min(len(found), MAX_OBJECTS)
        graph = support_graph(rows[:n].astype(np.float64)) if n else []
        support = [(i, int(j)) for i, j in enumerate(graph) if j is not None and j >= 0]
        zones = (_find_zones(self._zones, frame) if self._zones is not None
                 else np.zeros((MAX_ZONES, OBJ_DIM), np.float32))
        return Estimate(rows, zones, conf, support)


# ---- helpers for envs ----------------------------------------------------------------------------------
def render_for_perception(env: Any, size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (H, W, 3) uint8, depth (H, W) float32 depth buffer) of `env`'s fixed camera at `size` (H, W).

    The same view and projection matrices as the env's own frames (`env._view`, `env._proj`), rendered by
    TinyRenderer on the env's client; the default size is the world's DEFAULT_SIZES entry.
    """
    import pybullet as p

    env = getattr(env, "unwrapped", env)
    h, w = DEFAULT_SIZES[env.world] if size is None else size
    _, _, rgba, depth, _ = p.getCameraImage(
        int(w), int(h), env._view, env._proj, renderer=p.ER_TINY_RENDERER, physicsClientId=env.client
    )
    rgb = np.asarray(rgba, dtype=np.uint8).reshape(h, w, 4)[:, :, :3]
    return np.ascontiguousarray(rgb), np.asarray(depth, dtype=np.float32).reshape(h, w)


def noisy_rows(rows: np.ndarray, rng: np.random.Generator, pos_sigma_m: float) -> np.ndarray:
    """A copy of object (or zone) rows (N, OBJ_DIM) with Gaussian noise of `pos_sigma_m` (m) on x, y, z of
    the present rows (absent rows stay zero); draws from `rng` only, so a seeded Generator repeats."""
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != OBJ_DIM:
        raise ValueError(f"rows must be (n, {OBJ_DIM}) in the OBJ_FIELDS layout, got shape {rows.shape}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(  # noqa: TRY004 - a user error, reported like the others
            f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    if not (pos_sigma_m >= 0 and math.isfinite(pos_sigma_m)):
        raise ValueError(f"pos_sigma_m must be a finite standard deviation >= 0 (m), got {pos_sigma_m!r}")
    out = rows.copy()
    present = rows[:, -1] > 0.5
    noise = rng.normal(0.0, pos_sigma_m, size=(rows.shape[0], 3))
    out[present, 0:3] += noise[present].astype(rows.dtype)
    return out


__all__ = [
    "ANGLE_STEP",
    "DEFAULT_SIZES",
    "GRID_MM",
    "GRID_N",
    "JUMP_FOOTPRINTS",
    "MIN_HEIGHT",
    "OCCLUDER_GAP",
    "SIDE_NZ",
    "SIZE_TOL",
    "SUPPORT_GAP",
    "TABLE_SNAP",
    "TOP_NZ",
    "TOP_TOL",
    "WORLDS",
    "ZONE_MIN_FRACTION",
    "ZONE_MIN_VALUE",
    "Estimate",
    "Perception",
    "backproject",
    "camera_position",
    "linear_depth",
    "near_far",
    "noisy_rows",
    "render_for_perception",
]
