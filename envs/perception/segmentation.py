"""Segmentation: one cluster of pixels per object, from a frame's colour classes and depth.

Per colour class, connected components (cv2) of the pixels above the table, cut along depth discontinuities;
components that fit in one object together are merged; a cluster too tall (cubes of one colour stacked) or too
wide (objects of one colour side by side) for one object is split. A cluster is a (N,) int64 array of flat
pixel indices into the (H, W) frame (row-major, as `_Frame.points`).
"""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np

from envs.catalogue import SIZE_EDGES
from envs.perception.colour import _Palette
from envs.perception.config import MIN_HEIGHT, SIDE_NZ, TABLE_SNAP, TOP_NZ, TOP_TOL, _World
from envs.perception.geometry import _Frame, _unit_xy


def _clusters(cfg: _World, palette: _Palette, f: _Frame) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Per object cluster: (colour id, flat pixel indices (N,), this colour's (H, W) bool mask less the pixels of
    (and around) the other clusters of this colour)."""
    above = f.valid & (f.X[..., 2] > MIN_HEIGHT)
    labels = np.full(f.shape, -1, np.int64)
    labels[above] = palette.classify(f.hsv[above])
    min_px = max(4, round(12 * f.shape[0] * f.shape[1] / 384**2))
    clusters: list[tuple[int, np.ndarray, np.ndarray]] = []
    for cid in np.unique(labels[labels >= 0]):
        mask = labels == cid
        groups = _merge(cfg, f, _components(mask & ~f.jump, min_px))
        parts = [c for group in groups for c in _split(cfg, f, group)]
        for k, idx in enumerate(parts):
            # this colour's pixels, less those of (and around) the other objects of this colour
            others = np.zeros(mask.size, np.uint8)
            for j, other in enumerate(parts):
                if j != k:
                    others[other] = 1
            near_others = cv2.dilate(others.reshape(f.shape), np.ones((5, 5), np.uint8)).astype(bool)
            clusters.append((int(cid), idx, mask & ~near_others))
    return clusters


def _merge(cfg: _World, f: _Frame, comps: list[np.ndarray]) -> list[np.ndarray]:
    """Union of components (flat pixel indices) whose points fit in one object together."""
    max_xy = cfg.split_xy * 0.92
    max_z = (max(SIZE_EDGES.values()) if cfg.block_height is None else cfg.block_height) + 0.008
    groups = list(comps)
    merged = True
    while merged and len(groups) > 1:
        merged = False
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                pa, pb = f.points[groups[a]], f.points[groups[b]]
                both = np.concatenate([pa, pb])
                ext = both.max(axis=0) - both.min(axis=0)
                if ext[0] <= max_xy and ext[1] <= max_xy and ext[2] <= max_z and _near(pa, pb, 0.03):
                    groups[a] = np.concatenate([groups[a], groups[b]])
                    del groups[b]
                    merged = True
                    break
            if merged:
                break
    return groups


def _split(cfg: _World, f: _Frame, idx: np.ndarray) -> list[np.ndarray]:
    """A cluster split (cv2.kmeans, deterministic start) while it is too tall or too wide for one object."""
    pts = f.points[idx]
    ext = pts.max(axis=0) - pts.min(axis=0)
    if len(idx) < 8:
        return [idx]
    if ext[2] > cfg.split_z:
        if cfg.block_height is None:
            parts = _split_stack(f, idx)
            if parts is not None:
                return parts
        data = pts[:, 2:3]
    elif max(ext[0], ext[1]) > cfg.split_xy:
        parts = _split_by_tops(f, idx)
        if parts is not None:
            return parts
        data = pts[:, :2]
    else:
        return [idx]
    axis = int(np.argmax(data.max(axis=0) - data.min(axis=0)))
    start = (data[:, axis] > np.median(data[:, axis])).astype(np.int32).reshape(-1, 1)
    if start.min() == start.max():
        return [idx]
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1e-5)
    _, lab, _ = cv2.kmeans(np.ascontiguousarray(data, np.float32), 2, start, crit, 1,
                           cv2.KMEANS_USE_INITIAL_LABELS)
    lab = lab.reshape(-1)
    parts = [idx[lab == k] for k in (0, 1)]
    if min(len(q) for q in parts) < 4:
        return [idx]
    return [q for part in parts for q in _split(cfg, f, part)]


def _split_by_tops(f: _Frame, idx: np.ndarray) -> list[np.ndarray] | None:
    """Objects side by side, one colour: one part per top face (patches of upward pixels, split by height
    and by image connectivity, centroids at least 2 cm apart), or None when fewer than two are seen.

    A point goes to the nearest top centroid, distances scaled by each top's height above the cluster's
    floor (a taller cube reaches further), among the tops not below the point.
    """
    pts = f.points[idx]
    nz = np.abs(f.normals(idx)[:, 2])
    top = np.flatnonzero((nz > TOP_NZ) & ~f.jump.reshape(-1)[idx])
    if len(top) < 8:
        return None
    order = top[np.argsort(pts[top, 2], kind="stable")]
    gaps = np.flatnonzero(np.diff(pts[order, 2]) > 0.003)
    patches = []
    for level in np.split(order, gaps + 1):
        img = np.zeros(f.shape[0] * f.shape[1], np.uint8)
        img[idx[level]] = 1
        for comp in _components(img.reshape(f.shape), 4):
            sel = np.isin(idx, comp)
            patches.append((pts[sel, :2].mean(axis=0), float(np.median(pts[sel, 2])), int(sel.sum())))
    patches = sorted(patches, key=lambda q: -q[2])
    keep: list[tuple[np.ndarray, float, int]] = []
    for c, z, n in patches:
        if all(np.linalg.norm(c - k[0]) >= 0.02 for k in keep):
            keep.append((c, z, n))
    if len(keep) < 2:
        return None
    floor = float(pts[:, 2].min())
    cents = np.array([k[0] for k in keep])
    tops = np.array([k[1] for k in keep])
    scale = np.maximum(tops - floor, 0.01)
    dist = np.linalg.norm(pts[:, None, :2] - cents[None], axis=-1) / scale[None]
    dist[pts[:, 2:3] > tops[None] + 0.002] = np.inf  # a point above a top is not on that object
    lab = np.argmin(np.where(np.isfinite(dist).any(axis=1, keepdims=True), dist,
                             np.linalg.norm(pts[:, None, :2] - cents[None], axis=-1)), axis=1)
    parts = [idx[lab == k] for k in range(len(keep))]
    return [q for q in parts if len(q) >= 4]


def _split_stack(f: _Frame, idx: np.ndarray) -> list[np.ndarray] | None:
    """Stacked cubes of one colour: the catalogue edges, bottom-up, that best explain the cluster.

    A sequence of 2-4 edges from the cluster's bottom (the table when near it) must reach its top (or up
    to 1.5 cm past it when no flat top is seen there: a larger cube on it hides its top edge). It is
    scored by its rims (where a cube stands on a larger one, the larger one's top shows around it: pixels
    not on a side face at that height; and nowhere else), then by its side planes (a face of a larger cube
    stands half the difference of the edges further out than the face below it; without a face seen on
    two cubes, by how well each part's width matches its edge). Returns the parts (each lower top stays
    with its cube), or None when no sequence fits.
    """
    pts = f.points[idx].astype(np.float64)
    nrm = f.normals(idx)
    side = np.abs(nrm[:, 2]) < SIDE_NZ
    z = pts[:, 2]
    z_low = float(np.percentile(z, 1))
    z_low = 0.0 if z_low < TABLE_SNAP else z_low
    z_top = float(z.max())
    n_xy = _unit_xy(nrm)
    yaw = 0.0
    if side.any():
        yaw = float(np.angle(np.exp(4j * np.arctan2(n_xy[side, 1], n_xy[side, 0])).sum())) / 4
    axes = np.array([[math.cos(yaw), math.sin(yaw)], [-math.sin(yaw), math.cos(yaw)]])
    # rim heights: non-side pixels between the bottom and the top, grouped where 1 cm apart
    rz = np.sort(z[~side & (z > z_low + 0.01) & (z < z_top - 0.01)])
    rims = [float(np.median(g)) for g in np.split(rz, np.flatnonzero(np.diff(rz) > 0.01) + 1) if len(g) >= 3]
    edges = sorted(SIZE_EDGES.values())
    seqs = [seq for k in (2, 3, 4) for seq in itertools.product(edges, repeat=k)]
    # without a flat top at its highest point, the cluster's top may hide under a larger cube on it
    flat_top = bool(np.any(~side & (np.abs(nrm[:, 2]) > TOP_NZ) & (z > z_top - 0.002)))
    best = None
    for seq in seqs:
        over = z_low + sum(seq) - z_top
        if over < -0.006 or over > (0.006 if flat_top else 0.015):
            continue
        miss = abs(over) if flat_top or over < 0 else 0.3 * over
        cuts = np.cumsum(seq)[:-1] + z_low
        want = [c for c, lo, up in zip(cuts, seq, seq[1:]) if lo > up]
        rim_err = sum(not any(abs(r - c) < 0.005 for r in rims) for c in want)
        rim_err += sum(not any(abs(r - c) < 0.005 for c in want) for r in rims)
        labels = np.searchsorted(cuts + TOP_TOL, z)  # the lower cube's top face stays with it
        if np.bincount(labels, minlength=len(seq)).min() < 4:
            continue
        # side planes: a face of a larger cube stands (e_upper - e_lower) / 2 further out than the one below
        offsets = np.full((len(seq), 4), np.nan)
        for d, direction in enumerate((*axes, *-axes)):
            on = side & (n_xy @ direction > 0.95)
            for k in range(len(seq)):
                sel = on & (labels == k)
                if sel.sum() >= 4:
                    offsets[k, d] = np.median(pts[sel, :2] @ direction)
        steps = np.diff(offsets, axis=0) - np.diff(seq)[:, None] / 2
        if np.isfinite(steps).any():
            shape_err = float(np.nanmean(np.abs(steps))) * (len(seq) - 1)
        else:  # no face seen on two cubes: their widths
            shape_err = 0.0
            for k, edge in enumerate(seq):
                proj = pts[labels == k, :2] @ axes.T
                width = float((np.percentile(proj, 98, axis=0) - np.percentile(proj, 2, axis=0)).max())
                shape_err += abs(width - edge)
        score = 0.02 * rim_err + shape_err + miss
        if best is None or score < best[0]:
            best = (score, labels, len(seq))
    if best is None or not np.isfinite(best[0]):
        return None
    return [idx[best[1] == k] for k in range(best[2])]


def _components(mask: np.ndarray, min_px: int) -> list[np.ndarray]:
    """Flat pixel indices of each 4-connected component of `mask` with at least `min_px` pixels (cv2, on the
    mask's bounding box)."""
    m = mask.astype(np.uint8)
    x0, y0, w, h = cv2.boundingRect(m)
    if w == 0 or h == 0:
        return []
    _, lab, stats, _ = cv2.connectedComponentsWithStats(m[y0:y0 + h, x0:x0 + w], connectivity=4)
    rows, cols = np.nonzero(lab)
    keys = lab[rows, cols]
    order = np.argsort(keys, kind="stable")
    flat = (rows[order] + y0) * mask.shape[1] + cols[order] + x0
    ends = np.cumsum(stats[1:, cv2.CC_STAT_AREA])
    return [flat[e - a: e] for a, e in zip(stats[1:, cv2.CC_STAT_AREA], ends) if a >= min_px]


def _near(a: np.ndarray, b: np.ndarray, dist: float) -> bool:
    """Whether some point of a lies within `dist` of some point of b (subsampled to 300 points each)."""
    a = a[:: max(1, len(a) // 300)]
    b = b[:: max(1, len(b) // 300)]
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return bool(d2.min() <= dist * dist)
