"""Per-object estimation: each cluster's measurements and, for a cube, its row (edge, yaw, centre, confidence).

`_measure` gives a cluster's top height (m), top patch, side faces (points (N, 2) m and unit normals (N, 2)) and
lowest visible point; a cube's edge snaps to a catalogue edge within SIZE_TOL, its yaw is the circular mean
(modulo 90 degrees) of the side normals and the top's rectangle, its centre comes from its side planes and its
top patch. A push block's row comes from `blocks._block_row`. A row is an (OBJ_DIM,) float64 vector in the
catalogue.OBJ_FIELDS layout, its confidence a float in [0, 1].
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from envs.catalogue import OBJ_DIM, SHAPE_NAMES, SIZE_EDGES
from envs.perception.blocks import _block_row
from envs.perception.colour import _Palette
from envs.perception.config import SIDE_NZ, SIZE_TOL, SUPPORT_GAP, TABLE_SNAP, TOP_NZ, TOP_TOL, _World
from envs.perception.geometry import _extent, _fold, _Frame, _unit_xy, _yaw_quat
from envs.perception.segmentation import _clusters


def _find_objects(cfg: _World, palette: _Palette, f: _Frame) -> list[dict]:
    """The measured clusters of a frame that have a row (`o["row"]`, `o["conf"]`), in cluster order."""
    objs = []
    for cid, idx, mask in _clusters(cfg, palette, f):
        o = _measure(cfg, f, cid, idx, mask)
        if o is not None:
            objs.append(o)
    if cfg.block_height is None:
        _cube_rows(f, objs)
    return [o for o in objs if "row" in o]


def _measure(cfg: _World, f: _Frame, cid: int, idx: np.ndarray, colour_mask: np.ndarray) -> dict | None:
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
    if cfg.block_height is not None:
        return _block_row(cfg, f, o)
    o["yaw"] = _cube_yaw(o)
    return o


def _cube_yaw(o: dict) -> float:
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


def _cube_rows(f: _Frame, objs: list[dict]) -> None:
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
        centre, seen = _cube_centre(o, f.cam, edge)
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
