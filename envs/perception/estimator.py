"""The public entry points: `Perception` (frame to `Estimate`), `render_for_perception`, `noisy_rows`.

`Perception(world).estimate(rgb (H, W, 3) uint8, depth (H, W) float depth buffer, view, proj)` returns an
`Estimate`: object rows (MAX_OBJECTS, OBJ_DIM) float32, zone rows (MAX_ZONES, OBJ_DIM) float32, confidences
(MAX_OBJECTS,) and the support pairs. `render_for_perception(env)` renders the frame it takes; `noisy_rows` is
the `noisy` state source's rows: the simulator's rows (N, OBJ_DIM) with Gaussian position noise (m).
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
from envs.perception.config import DEFAULT_SIZES, _world
from envs.perception.geometry import _Frame, _matrix
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


def render_for_perception(env: Any, size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (H, W, 3) uint8, depth (H, W) float32 depth buffer) of `env`'s fixed camera at `size` (H, W).

    The same view and projection matrices as the env's own frames (`env._view`, `env._proj`), rendered by
    TinyRenderer on the env's client; the default size is the world's DEFAULT_SIZES entry. An env whose
    `blank_perception` is set gives a blank camera instead, nothing rendered: an all-zero RGB frame and the
    depth buffer at the far plane (1.0, background to `Perception.estimate`, which then finds nothing).
    """
    import pybullet as p

    env = getattr(env, "unwrapped", env)
    h, w = DEFAULT_SIZES[env.world] if size is None else size
    if getattr(env, "blank_perception", False):
        return np.zeros((int(h), int(w), 3), np.uint8), np.ones((int(h), int(w)), np.float32)
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
