"""Push blocks: shape, yaw and centre of a block from its top face's outline matched to the catalogue footprints.

`_templates` rasterises every block shape's footprint on a GRID_N x GRID_N grid of GRID_MM (mm) cells every
ANGLE_STEP degrees; `_block_row` carries a cluster's top outline to the world plane (mm), fills it on that grid
and takes the shape and yaw of the best IoU (the yaw refined by a parabola), the centre from the outline's area
centroid (m).
"""

from __future__ import annotations

import math
from functools import cache

import cv2
import numpy as np

from envs.catalogue import OBJ_DIM, SHAPE_NAMES
from envs.perception.config import ANGLE_STEP, GRID_MM, GRID_N, _World
from envs.perception.geometry import _fold, _Frame, _yaw_quat


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


def _block_row(cfg: _World, f: _Frame, o: dict) -> dict | None:
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
    for shape in cfg.shapes:
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
    row[2] = o["z_top"] - cfg.block_height / 2
    row[3:7] = _yaw_quat(_fold(yaw, period))
    row[7] = 2 * bounding_radius(shape)
    row[8] = o["cid"]
    row[9] = SHAPE_NAMES.index(shape)
    row[10] = 1.0
    o["row"] = row
    o["conf"] = float(np.clip((iou - 0.4) / 0.5, 0.0, 1.0))
    return o
