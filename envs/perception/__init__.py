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

import itertools
import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import cv2
import numpy as np

from envs.catalogue import COLOR_NAMES, COLORS, MAX_OBJECTS, MAX_ZONES, OBJ_DIM, SHAPE_NAMES, SIZE_EDGES
from envs.geometry import support_graph
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
    _extent,
    _fold,
    _Frame,
    _matrix,
    _unit_xy,
    _yaw_quat,
    backproject,
    camera_position,
    linear_depth,
    near_far,
)


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


@cache
def _templates() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """Per push-block shape: (yaws (A,) rad, footprint rasters (A, GRID_N * GRID_N) bool, their areas (A,)
    in cells, symmetry period (rad))."""
    from envs.push_blocks import BLOCK_SHAPES, convex_parts

    periods = {"cube": np.pi / 2, "pentagon": 2 * np.pi / 5, "star": 2 * np.pi / 5, "moon": 2 * np.pi}
    out = {}
    for shape in BLOCK_SHAPES:
        yaws = np.radians(np.arange(0.0, math.degrees(periods[shape]) - 1e-6, ANGLE_STEP))
        masks = []
        for a in yaws:
            rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            img = np.zeros((GRID_N, GRID_N), np.uint8)
            for part in convex_parts(shape):
                pts = (part @ rot.T) * 1000 / GRID_MM + GRID_N / 2
                cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], 1, shift=4)
            masks.append(img.reshape(-1).astype(bool))
        stack = np.stack(masks)
        out[shape] = (yaws, stack, np.count_nonzero(stack, axis=1), periods[shape])
    return out


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

    # ---- public ------------------------------------------------------------------------------------
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
        found = self._find_objects(frame)
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
        zones = self._find_zones(frame) if self._zones is not None else np.zeros((MAX_ZONES, OBJ_DIM), np.float32)
        return Estimate(rows, zones, conf, support)

    # ---- objects -----------------------------------------------------------------------------------
    def _find_objects(self, f: _Frame) -> list[dict]:
        cfg = self.cfg
        above = f.valid & (f.X[..., 2] > MIN_HEIGHT)
        labels = np.full(f.shape, -1, np.int64)
        labels[above] = self._objects.classify(f.hsv[above])
        min_px = max(4, round(12 * f.shape[0] * f.shape[1] / 384**2))
        clusters: list[tuple[int, np.ndarray, np.ndarray]] = []
        for cid in np.unique(labels[labels >= 0]):
            mask = labels == cid
            parts = [c for group in self._merge(f, _components(mask & ~f.jump, min_px)) for c in self._split(f, group)]
            for k, idx in enumerate(parts):
                # this colour's pixels, less those of (and around) the other objects of this colour
                others = np.zeros(mask.size, np.uint8)
                for j, other in enumerate(parts):
                    if j != k:
                        others[other] = 1
                near_others = cv2.dilate(others.reshape(f.shape), np.ones((5, 5), np.uint8)).astype(bool)
                clusters.append((int(cid), idx, mask & ~near_others))
        objs = []
        for cid, idx, mask in clusters:
            o = self._measure(f, cid, idx, mask)
            if o is not None:
                objs.append(o)
        if cfg.block_height is None:
            self._cube_rows(f, objs)
        return [o for o in objs if "row" in o]

    def _merge(self, f: _Frame, comps: list[np.ndarray]) -> list[np.ndarray]:
        """Union of components (flat pixel indices) whose points fit in one object together."""
        cfg = self.cfg
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

    def _split(self, f: _Frame, idx: np.ndarray) -> list[np.ndarray]:
        """A cluster split (cv2.kmeans, deterministic start) while it is too tall or too wide for one object."""
        pts = f.points[idx]
        ext = pts.max(axis=0) - pts.min(axis=0)
        if len(idx) < 8:
            return [idx]
        if ext[2] > self.cfg.split_z:
            if self.cfg.block_height is None:
                parts = self._split_stack(f, idx)
                if parts is not None:
                    return parts
            data = pts[:, 2:3]
        elif max(ext[0], ext[1]) > self.cfg.split_xy:
            parts = self._split_by_tops(f, idx)
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
        return [q for part in parts for q in self._split(f, part)]

    def _split_by_tops(self, f: _Frame, idx: np.ndarray) -> list[np.ndarray] | None:
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

    def _split_stack(self, f: _Frame, idx: np.ndarray) -> list[np.ndarray] | None:
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

    def _measure(self, f: _Frame, cid: int, idx: np.ndarray, colour_mask: np.ndarray) -> dict | None:
        """Per-cluster measurements: top height, top patch, side faces, yaw (cubes) or the shape fit (blocks)."""
        pts, nrm = f.points[idx], f.normals(idx)
        interior = ~f.jump.reshape(-1)[idx]
        is_top = interior & (np.abs(nrm[:, 2]) > TOP_NZ)
        is_side = interior & (np.abs(nrm[:, 2]) < SIDE_NZ)
        has_top = int(is_top.sum()) >= 3
        # this colour's pixels around the cluster, discontinuity pixels included: the outermost pixels of a face
        # border what lies behind it (the top's far edge, a held cube's bottom edge)
        own = np.zeros(f.shape[0] * f.shape[1], np.uint8)
        own[idx] = 1
        near = cv2.dilate(own.reshape(f.shape), np.ones((5, 5), np.uint8)).reshape(-1).astype(bool)
        cand = np.flatnonzero(near & colour_mask.reshape(-1))
        edge_px = cand[f.jump.reshape(-1)[cand]]
        row_dz = float(np.median(np.abs(f.dz_per_row(idx[is_side])))) if is_side.any() else 0.0
        if has_top:
            tz = pts[is_top, 2]
            z_top = float(np.median(tz[tz > tz.max() - 0.004]))
            cn = f.normals(cand)
            keep = (np.abs(f.points[cand, 2] - z_top) < TOP_TOL) & (
                (np.abs(cn[:, 2]) >= SIDE_NZ) | f.jump.reshape(-1)[cand])
            top_idx = cand[keep]
        else:  # covered (a cube on it) or hidden by the arm: the top comes from what rests on it, if anything
            z_top = float(pts[:, 2].max())
            top_idx = np.zeros(0, np.int64)
        z_min = float(pts[:, 2].min())
        ez = f.points[edge_px, 2]
        ez = ez[ez >= z_min - 1.5 * row_dz]
        z_low = min(z_min, float(ez.min()) if len(ez) else z_min) - 0.5 * row_dz  # a pixel row spans row_dz
        o: dict[str, Any] = {
            "cid": cid, "pts": pts, "has_top": has_top, "z_top": z_top, "z_max": float(pts[:, 2].max()),
            "z_low": 0.0 if z_low < TABLE_SNAP else z_low,
            "top_idx": top_idx, "top_xy": f.points[top_idx, :2].astype(np.float64),
            "top_occ": f.occluded.reshape(-1)[top_idx],
            "side_xy": pts[is_side, :2].astype(np.float64), "side_n": _unit_xy(nrm[is_side]),
            "footprint": float(np.median(f.footprint.reshape(-1)[idx])),
        }
        o["approx_xy"] = o["top_xy"].mean(axis=0) if len(top_idx) >= 3 else pts[:, :2].mean(axis=0)
        if self.cfg.block_height is not None:
            return self._block_row(f, o)
        o["yaw"] = self._cube_yaw(o)
        return o

    def _cube_yaw(self, o: dict) -> float:
        """Yaw folded into [-pi/4, pi/4): circular mean (in 4 x angle) of side normals and the top rectangle."""
        acc = 0j
        if len(o["side_n"]):
            phi = np.arctan2(o["side_n"][:, 1], o["side_n"][:, 0])
            acc += np.exp(4j * phi).sum()
        if len(o["top_xy"]) >= 8:
            (_, _), (rw, rh), ang = cv2.minAreaRect((o["top_xy"] * 1000).astype(np.float32))
            if min(rw, rh) > 0:
                acc += len(o["top_xy"]) * np.exp(4j * math.radians(ang))
        if acc == 0:
            return 0.0
        return _fold(float(np.angle(acc)) / 4, np.pi / 2)

    def _cube_rows(self, f: _Frame, objs: list[dict]) -> None:
        """Edge, centre and row of every cube.

        A covered cube's top is the bottom of the cube resting on it; an edge is the top's height over the
        cube's own lowest visible point (its bottom edge) or over what it rests on (the table, or the highest
        cube top below it that it overlaps), whichever is nearer a catalogue edge.
        """
        edges = np.array(sorted(SIZE_EDGES.values()))
        for o in objs:
            if o["has_top"]:
                continue
            above = [q["z_low"] for q in objs if q is not o and q["z_low"] > o["z_max"] - 0.01
                     and np.linalg.norm(q["approx_xy"] - o["approx_xy"]) < 0.04]
            if above:
                o["z_top"] = min(above)
                o["covered"] = True
        for o in objs:
            below = [q["z_top"] for q in objs if q is not o and q["z_top"] <= o["z_top"] - SUPPORT_GAP
                     and np.linalg.norm(q["approx_xy"] - o["approx_xy"]) < 0.04]
            base = max(below, default=0.0)
            top_seen = o["has_top"] or o.get("covered", False)
            best = (np.inf, 0.0, 0.0)
            if top_seen:
                cands = [o["z_top"] - base, o["z_top"] - o["z_low"]]
                best = min((abs(c - e), c, e) for c in cands for e in edges)
            if best[0] <= SIZE_TOL:
                edge, fit = best[2], best[0]
            else:  # held, on a hidden cube, or its top hidden: its horizontal extent
                span = _extent(o["top_xy"] if len(o["top_xy"]) >= 8 else o["pts"][:, :2], o["yaw"])
                edge = float(edges[np.argmin(np.abs(edges - max(span)))])
                fit = SIZE_TOL * 2
                if not top_seen and o["z_low"] <= base + 0.01:  # top hidden (the arm): it rests on its base
                    o["z_top"] = base + edge
            centre, seen = self._cube_centre(o, f.cam, edge)
            z = o["z_top"] - edge / 2
            if o.get("covered") and abs(o["z_top"] - base - edge) <= SIZE_TOL:
                z = base + edge / 2  # the top was inferred from the cube on it; what it rests on is measured
            row = np.zeros(OBJ_DIM)
            row[0:3] = (centre[0], centre[1], z)
            row[3:7] = _yaw_quat(o["yaw"])
            row[7] = edge
            row[8] = o["cid"]
            row[9] = SHAPE_NAMES.index("cube")
            row[10] = 1.0
            o["row"] = row
            o["conf"] = float(math.exp(-((fit / SIZE_TOL) ** 2)) * (0.5 + 0.5 * seen))

    @staticmethod
    def _cube_centre(o: dict, cam: np.ndarray, edge: float) -> tuple[np.ndarray, float]:
        """(centre (x, y), fraction seen in [0, 1]) of a cube of `edge` from its side planes and top patch.

        Along each cube axis: a side face facing that axis gives its plane offset minus half the edge; a side
        face across it, or the top face, gives the midpoint of its extent when it spans the whole edge; a
        top face cut short (something in front of it) gives its far edge plus half the edge.
        """
        yaw = o["yaw"]
        axes = np.array([[math.cos(yaw), math.sin(yaw)], [-math.sin(yaw), math.cos(yaw)]])
        to_cam = cam[:2] - o["approx_xy"]
        fp = o["footprint"]
        full = edge - 2.5 * fp  # an extent this long spans the whole edge (pixels sit inside the outline)
        local = np.zeros(2)
        seen = 0.0
        faces = []  # (normal axis, sign, points) of the side faces seen
        if len(o["side_n"]):
            for k, a in enumerate(axes):
                dots = o["side_n"] @ a
                for sgn in (1.0, -1.0):
                    sel = sgn * dots > 0.95
                    if sel.sum() >= 6:
                        faces.append((k, sgn, o["side_xy"][sel]))
        for k, a in enumerate(axes):
            # a face across the axis: its plane, exactly; else midpoints of extents that span the whole edge
            ests = [(float(np.median(xy @ a)) - sgn * edge / 2, 1.0) for axis, sgn, xy in faces if axis == k]
            for axis, _, xy in faces if not ests else ():
                proj = xy @ a
                if proj.max() - proj.min() + fp >= full:
                    ests.append(((float(proj.min()) + float(proj.max())) / 2, 1.0))
            if len(o["top_xy"]) >= 3 and not any(axis == k for axis, _, _ in faces):
                proj = o["top_xy"] @ a
                lo, hi = float(proj.min()) - fp / 2, float(proj.max()) + fp / 2
                if hi - lo >= full:
                    ests.append(((lo + hi) / 2, 1.0))
                elif not ests:  # cut short: keep the end that does not border something nearer the camera
                    occ = o["top_occ"]
                    occ_lo = occ[proj < lo + 2 * fp].mean()
                    occ_hi = occ[proj > hi - 2 * fp].mean()
                    if occ_lo < occ_hi or (occ_lo == occ_hi and to_cam @ a > 0):
                        ests.append((lo + edge / 2, 0.5))
                    else:
                        ests.append((hi - edge / 2, 0.5))
            if not ests:
                proj = o["pts"][:, :2].astype(np.float64) @ a
                ests.append(((float(proj.min()) + float(proj.max())) / 2, 0.1))
            wsum = sum(w for _, w in ests)
            local[k] = sum(c * w for c, w in ests) / wsum
            seen += min(1.0, wsum) / 2
        if len(o["top_xy"]) >= 3:
            area = len(o["top_xy"]) * fp * fp * 1.3  # foreshortened pixel area on the table plane, roughly
            seen = max(seen * 0.8, min(1.0, area / edge**2))
        return axes.T @ local, seen

    # ---- push blocks ---------------------------------------------------------------------------------
    def _block_row(self, f: _Frame, o: dict) -> dict | None:
        """Shape, yaw and centre of a push block from its top face's outline matched to the footprints."""
        from envs.push_blocks import bounding_radius

        top_idx = o["top_idx"]
        if len(top_idx) < 8:
            return None
        mask = np.zeros(f.shape[0] * f.shape[1], np.uint8)
        mask[top_idx] = 1
        contours, _ = cv2.findContours(mask.reshape(f.shape), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        contour = max(contours, key=len).reshape(-1, 2)  # (u, v)
        world = f.X[contour[:, 1], contour[:, 0], :2].astype(np.float64) * 1000  # mm
        # the outline runs along the outermost top pixels, half a footprint inside the true edge
        m = cv2.moments(world.astype(np.float32))
        if m["m00"] <= 1.0:
            return None
        centre_mm = np.array([m["m10"] / m["m00"], m["m01"] / m["m00"]])
        grid = np.zeros((GRID_N, GRID_N), np.uint8)
        pts = (world - centre_mm) / GRID_MM + GRID_N / 2
        cv2.fillPoly(grid, [np.round(pts * 16).astype(np.int32)], 1, shift=4)
        grow = max(1, round(o["footprint"] * 1000 / 2 / GRID_MM))
        grid = cv2.dilate(grid, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
        obs = grid.reshape(-1).astype(bool)
        n_obs = int(np.count_nonzero(obs))
        best = (-1.0, "cube", 0.0, np.pi / 2)
        for shape in self.cfg.shapes:
            yaws, masks, areas, period = _templates()[shape]
            inter = np.count_nonzero(masks & obs, axis=1)  # no BLAS: its threads fight other work
            iou = inter / (areas + n_obs - inter)
            k = int(np.argmax(iou))
            if iou[k] > best[0]:
                # sub-step yaw: the vertex of the parabola through the best IoU and its neighbours (cyclic)
                lo, hi = iou[k - 1], iou[(k + 1) % len(iou)]
                curve = lo - 2 * iou[k] + hi
                frac = float(np.clip(0.5 * (lo - hi) / curve, -0.5, 0.5)) if curve < 0 else 0.0
                best = (float(iou[k]), shape, float(yaws[k]) + frac * math.radians(ANGLE_STEP), period)
        iou, shape, yaw, period = best
        row = np.zeros(OBJ_DIM)
        row[0:2] = centre_mm / 1000
        row[2] = o["z_top"] - self.cfg.block_height / 2
        row[3:7] = _yaw_quat(_fold(yaw, period))
        row[7] = 2 * bounding_radius(shape)
        row[8] = o["cid"]
        row[9] = SHAPE_NAMES.index(shape)
        row[10] = 1.0
        o["row"] = row
        o["conf"] = float(np.clip((iou - 0.4) / 0.5, 0.0, 1.0))
        return o

    # ---- zones ---------------------------------------------------------------------------------------
    def _find_zones(self, f: _Frame) -> np.ndarray:
        from envs.pickplace import ZONE_SIDE

        flat = f.valid & (f.X[..., 2] <= MIN_HEIGHT) & (f.hsv[..., 2] >= ZONE_MIN_VALUE)
        labels = np.full(f.shape, -1, np.int64)
        labels[flat] = self._zones.classify(f.hsv[flat])
        zone_px = (ZONE_SIDE / np.median(f.footprint[flat])) ** 2 if flat.any() else 0.0
        found = []
        for cid in np.unique(labels[labels >= 0]):
            mask = cv2.morphologyEx((labels == cid).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
            idx = np.flatnonzero(mask)
            if len(idx) < ZONE_MIN_FRACTION * zone_px:
                continue
            xy = f.points[idx, :2].astype(np.float64)
            fp = float(np.median(f.footprint.reshape(-1)[idx]))
            lo, hi = xy.min(axis=0) - fp / 2, xy.max(axis=0) + fp / 2
            ext = hi - lo
            side = float(ext.max())
            centre = (lo + hi) / 2
            for k in (0, 1):
                if ext[k] < side - 3 * fp:  # one edge hidden: keep the edge with the longer visible run
                    run_lo = np.sum(xy[:, k] < lo[k] + fp * 2)
                    run_hi = np.sum(xy[:, k] > hi[k] - fp * 2)
                    centre[k] = lo[k] + side / 2 if run_lo >= run_hi else hi[k] - side / 2
            z = float(np.median(f.points[idx, 2]))
            row = np.zeros(OBJ_DIM, np.float32)
            row[0:3] = (centre[0], centre[1], z)
            row[6] = 1.0
            row[7] = side
            row[8] = cid
            row[9] = len(SHAPE_NAMES)
            row[10] = 1.0
            found.append(row)
        found.sort(key=lambda r: (r[0], r[1]))
        out = np.zeros((MAX_ZONES, OBJ_DIM), np.float32)
        for k, row in enumerate(found[:MAX_ZONES]):
            out[k] = row
        return out


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
