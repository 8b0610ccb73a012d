"""Language-Table blocks: 4 colours x 4 shapes, their generated meshes, block sets and PyBullet bodies.

Meshes are extruded 2-D polygons written as .obj files into a cache folder (not in git) the
first time a block is created. Non-convex shapes (moon, star) collide as a compound of convex
prisms, so they push as one rigid body without the hull filling their notches.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import pybullet as p

from envs import fileio
from envs.catalogue import COLORS, MAX_OBJECTS, ObjectDesc

BLOCK_COLORS: tuple[str, ...] = ("red", "blue", "green", "yellow")
BLOCK_SHAPES: tuple[str, ...] = ("moon", "cube", "star", "pentagon")
BLOCK_WIDTH = 0.04  # nominal width (m), as in Language-Table
BLOCK_HEIGHT = 0.025
BLOCK_MASS = 0.01  # kg
BLOCK_FRICTION = 0.5
ASSET_VERSION = "v1"  # bump when the geometry changes so stale caches are not reused

ALL_BLOCKS: tuple[ObjectDesc, ...] = tuple(ObjectDesc(c, s) for c in BLOCK_COLORS for s in BLOCK_SHAPES)
BLOCK_4: tuple[ObjectDesc, ...] = tuple(
    ObjectDesc(c, s)
    for c, s in [("red", "moon"), ("blue", "cube"), ("green", "star"), ("yellow", "pentagon")]
)
BLOCK_8: tuple[ObjectDesc, ...] = tuple(
    ObjectDesc(c, s)
    for c, s in [
        ("red", "moon"),
        ("red", "pentagon"),
        ("blue", "moon"),
        ("blue", "cube"),
        ("green", "cube"),
        ("green", "star"),
        ("yellow", "star"),
        ("yellow", "pentagon"),
    ]
)
BLOCK_SETS: tuple[str, ...] = ("N_CHOOSE_K", "BLOCK_4", "BLOCK_8")
FIXED_BLOCK_SETS: tuple[str, ...] = ("BLOCK_4", "BLOCK_8")  # the same blocks in every scene, whatever the split
TRAIN_K = (4, 6)  # block counts of the training distribution (inclusive)
L3_K = (7, MAX_OBJECTS)  # "more blocks than in training"


# ---- 2-D geometry (metres, centred on the area centroid) ----------------------------------------
def _ngon(n: int, radius: float, phase: float = np.pi / 2) -> np.ndarray:
    a = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


def _polygon_centroid(poly: np.ndarray) -> np.ndarray:
    x, y = poly[:, 0], poly[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2
    return np.array([((x + np.roll(x, -1)) * cross).sum(), ((y + np.roll(y, -1)) * cross).sum()]) / (6 * area)


def _moon_arcs(n: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Outer and inner arcs of a crescent: a disc minus an offset disc, sampled at the same parameters."""
    r_out, r_in, d = 0.022, 0.019, 0.013  # outer radius, cut-out radius, cut-out offset along +x
    # Intersection angle on the outer circle, from r_out^2 - 2 d r_out cos(t) + d^2 = r_in^2.
    t0 = np.arccos((r_out**2 + d**2 - r_in**2) / (2 * d * r_out))
    t = np.linspace(t0, 2 * np.pi - t0, n)
    outer = np.stack([r_out * np.cos(t), r_out * np.sin(t)], axis=1)
    # Inner arc runs between the same two tips, bulging towards -x.
    s0 = np.arctan2(outer[0, 1], outer[0, 0] - d)
    s = np.linspace(s0, 2 * np.pi - s0, n)
    inner = np.stack([d + r_in * np.cos(s), r_in * np.sin(s)], axis=1)
    return outer, inner


def convex_parts(shape: str) -> list[np.ndarray]:
    """Convex 2-D polygons (counter-clockwise) whose union is the shape's footprint."""
    if shape == "cube":
        h = BLOCK_WIDTH / 2
        parts = [np.array([[-h, -h], [h, -h], [h, h], [-h, h]])]
    elif shape == "pentagon":
        parts = [_ngon(5, 0.023)]
    elif shape == "star":
        outer = _ngon(5, 0.025)
        inner = _ngon(5, 0.011, phase=np.pi / 2 + np.pi / 5)  # between the tips
        # Core pentagon plus one triangle per tip (tip between inner vertices i-1 and i).
        parts = [inner] + [np.array([inner[i - 1], outer[i], inner[i]]) for i in range(5)]
    elif shape == "moon":
        outer, inner = _moon_arcs()
        parts = [np.array([outer[i], outer[i + 1], inner[i + 1], inner[i]]) for i in range(len(outer) - 1)]
    else:
        raise ValueError(f"unknown block shape {shape!r}; expected one of {list(BLOCK_SHAPES)}")
    parts = [_ccw(_dedupe(q)) for q in parts]
    centre = _area_centroid(parts)
    return [q - centre for q in parts]


def _dedupe(poly: np.ndarray) -> np.ndarray:
    keep = [i for i in range(len(poly)) if np.linalg.norm(poly[i] - poly[i - 1]) > 1e-6]
    return poly[keep]


def _ccw(poly: np.ndarray) -> np.ndarray:
    x, y = poly[:, 0], poly[:, 1]
    return poly if (x * np.roll(y, -1) - np.roll(x, -1) * y).sum() > 0 else poly[::-1]


def _area_centroid(parts: Sequence[np.ndarray]) -> np.ndarray:
    areas = np.array([_area(q) for q in parts])
    cents = np.array([_polygon_centroid(q) for q in parts])
    return (areas[:, None] * cents).sum(0) / areas.sum()


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float((x * np.roll(y, -1) - np.roll(x, -1) * y).sum() / 2)


@cache
def bounding_radius(shape: str) -> float:
    """Radius of the smallest centroid-centred disc holding the footprint (m)."""
    return float(max(np.linalg.norm(q, axis=1).max() for q in convex_parts(shape)))


# ---- .obj writing ------------------------------------------------------------------------------
def _prism_faces(poly: np.ndarray, h: float) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """(normal, vertices) of every face of a convex polygon extruded from -h/2 to h/2."""
    lo, hi = -h / 2, h / 2
    top = [np.array([x, y, hi]) for x, y in poly]
    bottom = [np.array([x, y, lo]) for x, y in poly[::-1]]
    faces = [(np.array([0.0, 0, 1]), top), (np.array([0.0, 0, -1]), bottom)]
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        n = np.array([b[1] - a[1], a[0] - b[0], 0.0])
        n /= np.linalg.norm(n)
        faces.append((n, [np.array([*a, lo]), np.array([*b, lo]), np.array([*b, hi]), np.array([*a, hi])]))
    return faces


def _obj_text(polys: Sequence[np.ndarray], h: float) -> str:
    lines, nv, nn = [], 0, 0
    for poly in polys:
        for normal, verts in _prism_faces(poly, h):
            lines += [f"v {v[0]:.6f} {v[1]:.6f} {v[2]:.6f}" for v in verts]
            lines.append(f"vn {normal[0]:.6f} {normal[1]:.6f} {normal[2]:.6f}")
            nn += 1
            # Fan triangulation of a convex face; flat shading through one normal per face.
            for k in range(1, len(verts) - 1):
                lines.append(f"f {nv + 1}//{nn} {nv + k + 1}//{nn} {nv + k + 2}//{nn}")
            nv += len(verts)
    return "\n".join(lines) + "\n"


def asset_dir() -> Path:
    """Folder of the generated block meshes (under $PALME_CACHE or ~/.cache/palme-tabletop)."""
    root = Path(os.environ.get("PALME_CACHE", Path.home() / ".cache" / "palme-tabletop"))
    return root / f"push-blocks-{ASSET_VERSION}"


def write_atomic(path: Path, text: str) -> None:
    """Several env processes may generate the cache at once: write aside, then rename (mode per the umask)."""
    fileio.write_atomic(path, text, fsync=False)


@cache
def mesh_files(shape: str) -> tuple[str, tuple[str, ...]]:
    """(visual .obj, convex collision part .objs) of a shape, generated on first use."""
    parts = convex_parts(shape)
    folder = asset_dir()
    visual = folder / f"{shape}.obj"
    pieces = [folder / f"{shape}_part{i}.obj" for i in range(len(parts))]
    if not visual.exists():
        write_atomic(visual, _obj_text(parts, BLOCK_HEIGHT))
    for path, part in zip(pieces, parts):
        if not path.exists():
            write_atomic(path, _obj_text([part], BLOCK_HEIGHT))
    return str(visual), tuple(str(x) for x in pieces)


def create_block(client: int, desc: ObjectDesc, xy: Sequence[float], yaw: float) -> int:
    """A block body resting on the table at `xy` with heading `yaw`."""
    visual, pieces = mesh_files(desc.shape)
    n = len(pieces)
    col = p.createCollisionShapeArray(
        [p.GEOM_MESH] * n, fileNames=list(pieces), meshScales=[[1, 1, 1]] * n, physicsClientId=client
    )
    vis = p.createVisualShape(
        p.GEOM_MESH, fileName=visual, rgbaColor=COLORS[desc.color], physicsClientId=client
    )
    quat = p.getQuaternionFromEuler([0, 0, yaw])
    body = p.createMultiBody(
        BLOCK_MASS, col, vis, [xy[0], xy[1], BLOCK_HEIGHT / 2 + 1e-4], quat, physicsClientId=client
    )
    p.changeDynamics(body, -1, lateralFriction=BLOCK_FRICTION, physicsClientId=client)
    return body


# ---- block sets --------------------------------------------------------------------------------
def is_heldout_combination(blocks: Sequence[ObjectDesc]) -> bool:
    """Whether a set of blocks belongs to the held-out 10% of n-choose-k combinations (split L2)."""
    key = ",".join(sorted(f"{b.color}_{b.shape}" for b in blocks))
    return zlib.crc32(key.encode()) % 10 == 0


def fixed_blocks(block_set: str) -> tuple[ObjectDesc, ...]:
    """The blocks of a fixed set (BLOCK_4, BLOCK_8), every scene's whole set."""
    return {"BLOCK_4": BLOCK_4, "BLOCK_8": BLOCK_8}[block_set]


def check_block_set(block_set: str | None, split: str | None = None) -> None:
    """Raise ValueError (one line) for an unknown block set, or a fixed one with a split (L2, L3) that draws
    other combinations by definition; None (the split decides) always passes. `split` None: the name alone."""
    if block_set is None:
        return
    if block_set not in BLOCK_SETS:
        raise ValueError(f"unknown block_set {block_set!r}; expected one of {list(BLOCK_SETS)} "
                         "or null/None (the split decides)")
    if block_set in FIXED_BLOCK_SETS and split in ("L2", "L3"):
        raise ValueError(
            f"split {split!r} draws held-out or larger block combinations; use block_set='N_CHOOSE_K' "
            f"or None with it, not the fixed set {block_set!r}"
        )


def sample_blocks(rng: np.random.Generator, split: str, block_set: str = "N_CHOOSE_K") -> list[ObjectDesc]:
    """The blocks of one episode, in a random slot order.

    N_CHOOSE_K: train/L1/L4 draw a training combination of 4-6 blocks, L2 a held-out combination
    of 4-6, L3 any combination of 7-8. BLOCK_4 / BLOCK_8 are Language-Table's fixed sets.
    """
    if block_set in FIXED_BLOCK_SETS:
        chosen = list(fixed_blocks(block_set))
    elif block_set == "N_CHOOSE_K":
        lo, hi = L3_K if split == "L3" else TRAIN_K
        k = int(rng.integers(lo, hi + 1))
        while True:  # about 1 draw in 10 is held out, so this ends after a few tries
            idx = rng.choice(len(ALL_BLOCKS), size=k, replace=False)
            chosen = [ALL_BLOCKS[i] for i in sorted(idx)]
            if split == "L3" or is_heldout_combination(chosen) == (split == "L2"):
                break
    else:
        raise ValueError(f"unknown block_set {block_set!r}; expected one of {list(BLOCK_SETS)}")
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]


def color_counts(blocks: Sequence[ObjectDesc]) -> Counter:
    """How many blocks of each colour."""
    return Counter(b.color for b in blocks)


def block_synonyms(index: int, blocks: Sequence[ObjectDesc]) -> list[str]:
    """Language-Table's names for a block: '<colour> block' if the colour is unique, '<shape>' if the
    shape is unique, and always '<colour> <shape>'."""
    b = blocks[index]
    colours, shapes = color_counts(blocks), Counter(x.shape for x in blocks)
    names = []
    if colours[b.color] == 1:
        names.append(f"{b.color} block")
    if shapes[b.shape] == 1:
        names.append(b.shape)
    names.append(f"{b.color} {b.shape}")
    return names
