"""Zones: the pastel squares on the table, one row per zone colour seen.

`_find_zones` classifies the bright pixels on the table (z <= MIN_HEIGHT) against the zone palette and returns
(MAX_ZONES, OBJ_DIM) float32 zone rows (catalogue.zone_row layout: centre (m), side (m), colour id), sorted by x
then y; an edge hidden by cubes in the zone is taken from the side with the longer visible run.
"""

from __future__ import annotations

import cv2
import numpy as np

from envs.catalogue import MAX_ZONES, OBJ_DIM, SHAPE_NAMES
from envs.perception.colour import _Palette
from envs.perception.config import MIN_HEIGHT, ZONE_MIN_FRACTION, ZONE_MIN_VALUE
from envs.perception.geometry import _Frame


def _find_zones(palette: _Palette, f: _Frame) -> np.ndarray:
    from envs.pickplace import ZONE_SIDE

    flat = f.valid & (f.X[..., 2] <= MIN_HEIGHT) & (f.hsv[..., 2] >= ZONE_MIN_VALUE)
    labels = np.full(f.shape, -1, np.int64)
    labels[flat] = palette.classify(f.hsv[flat])
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
