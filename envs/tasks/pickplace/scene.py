"""Scene sampling of the pick-and-place world: cubes per split, towers, zones, and their placement.

Splits: `train`, `L1` (3-5 cubes, held-out colour/size pairs excluded), `L2` (at least one cube
of a held-out colour/size pair), `L3` (6-8 cubes, longer towers), `L4` (as train; held-out phrasings).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from envs.catalogue import COLOR_NAMES, SIZE_NAMES, ObjectDesc
from envs.pickplace import WORKSPACE_HIGH, WORKSPACE_LOW, ZONE_SIDE, Layout, apart_for_hand

# (colour, size) pairs never seen in training scenes; every L2 scene holds at least one.
HELDOUT_COMBOS: frozenset[tuple[str, str]] = frozenset(
    {("red", "large"), ("blue", "small"), ("yellow", "large"), ("purple", "small")}
)
CUBE_SPACING = 0.09  # minimum distance between stacks in initial scenes (room for the open fingers)
MAX_YAW = 0.35  # initial cube yaw in [-MAX_YAW, MAX_YAW] rad; the closing fingers square a cube up


def n_objects(rng: np.random.Generator, split: str, fixed: int | None = None) -> int:
    """Number of cubes: 3-5, or 6-8 in L3 (`fixed` overrides, e.g. 8 for the hardest scenes)."""
    if fixed is not None:
        return fixed
    return int(rng.integers(6, 9)) if split == "L3" else int(rng.integers(3, 6))


def sample_objects(
    rng: np.random.Generator, split: str, n: int, colors: Sequence[str] | None = None
) -> list[ObjectDesc]:
    """n cubes with distinct (colour, size) pairs while they last; held-out pairs only (and always) in L2."""
    colors = list(colors) if colors is not None else list(COLOR_NAMES)
    pairs = [(c, s) for c in colors for s in SIZE_NAMES]
    train_pairs = [pr for pr in pairs if pr not in HELDOUT_COMBOS]
    heldout = [pr for pr in pairs if pr in HELDOUT_COMBOS]
    chosen: list[tuple[str, str]] = []
    if split == "L2":
        if not heldout:
            raise ValueError(f"L2 needs a colour with a held-out pair among {colors}")
        chosen.append(heldout[int(rng.integers(len(heldout)))])
    pool = pairs if split == "L2" else train_pairs
    while len(chosen) < n:
        # Least-used pairs first: pairs repeat only when all are used, and evenly, so no colour
        # gets more cubes than its zone's 4 slots hold.
        least = min(chosen.count(pr) for pr in pool)
        left = [pr for pr in pool if chosen.count(pr) == least]
        chosen.append(left[int(rng.integers(len(left)))])
    order = rng.permutation(n)
    return [ObjectDesc(chosen[k][0], "cube", chosen[k][1]) for k in order]


def focus_objects(rng: np.random.Generator, objects: Sequence[ObjectDesc], k: int) -> list[int]:
    """k distinct cube slots a goal names; a held-out (colour, size) cube, if any, comes first."""
    heldout = [i for i, o in enumerate(objects) if (o.color, o.size) in HELDOUT_COMBOS]
    rest = [i for i in rng.permutation(len(objects)).tolist() if i not in heldout[:1]]
    return (heldout[:1] + rest)[:k]


def zone_colors(rng: np.random.Generator, k: int, must: Sequence[str] = ()) -> list[str]:
    """k distinct zone colours including `must`."""
    others = [c for c in rng.permutation(COLOR_NAMES).tolist() if c not in must]
    return list(must) + others[: k - len(must)]


def sample_layout(
    rng: np.random.Generator, n: int, towers: Sequence[Sequence[int]], zones: Sequence[str]
) -> Layout:
    """Place zones, then stacks (the towers, every other cube alone), without overlaps."""
    in_tower = {i for t in towers for i in t}
    stacks_slots = [tuple(t) for t in towers] + [(i,) for i in range(n) if i not in in_tower]
    for _ in range(200):
        zone_xy = _scatter(
            rng, len(zones), lambda a, b: np.linalg.norm(a - b) >= ZONE_SIDE + 0.03, [], ZONE_SIDE / 2
        )
        if zone_xy is None:
            continue
        keep_out = [(z, ZONE_SIDE / 2 + 0.045) for z in zone_xy]  # cubes start outside the zones
        stack_xy = _scatter(rng, len(stacks_slots), stacks_apart, keep_out, 0.03)
        if stack_xy is None:
            continue
        stacks = tuple(
            (float(x), float(y), float(rng.uniform(-MAX_YAW, MAX_YAW)), s)
            for (x, y), s in zip(stack_xy, stacks_slots)
        )
        zs = tuple((c, float(x), float(y)) for c, (x, y) in zip(zones, zone_xy))
        return Layout(stacks=stacks, zones=zs)
    raise RuntimeError(f"could not place {n} cubes and {len(zones)} zones without overlap")


def stacks_apart(a: np.ndarray, b: np.ndarray) -> bool:
    """Two stacks leave room for the fingers and the hand, whatever their heights become."""
    return bool(np.linalg.norm(a - b) >= CUBE_SPACING and apart_for_hand(a, b))


def _scatter(
    rng: np.random.Generator,
    k: int,
    apart: Callable[[np.ndarray, np.ndarray], bool],
    keep_out: list[tuple[np.ndarray, float]],
    margin: float,
) -> list[np.ndarray] | None:
    """k points in the workspace (`margin` inside its edges), pairwise `apart`, outside keep-out squares."""
    pts: list[np.ndarray] = []
    for _ in range(k):
        for _ in range(100):
            q = rng.uniform(WORKSPACE_LOW + margin, WORKSPACE_HIGH - margin)
            if all(apart(q, o) for o in pts) and all(np.any(np.abs(q - c) > r) for c, r in keep_out):
                pts.append(q)
                break
        else:
            return None
    return pts


def random_towers(
    rng: np.random.Generator, n: int, count: int, lengths: tuple[int, int], avoid: Sequence[int] = ()
) -> list[list[int]]:
    """Up to `count` random towers (slot lists, bottom-up) of length in [lo, hi] from cubes not in `avoid`."""
    free = [i for i in rng.permutation(n).tolist() if i not in avoid]
    towers = []
    for _ in range(count):
        k = int(rng.integers(lengths[0], lengths[1] + 1))
        if len(free) < k:
            break
        towers.append(free[:k])
        free = free[k:]
    return towers


def decor_zones(rng: np.random.Generator) -> list[str]:
    """Zones for tasks that do not use them (the world always shows 2-4)."""
    return zone_colors(rng, int(rng.integers(2, 4)))
