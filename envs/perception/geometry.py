"""Camera geometry: PyBullet's depth buffer back to world points, a frame's surface data, planar helpers.

Matrices are PyBullet's 16-number (column-major 4x4) view and projection matrices. `backproject` turns a depth
buffer (H, W) of values in [0, 1] into (H, W, 3) float32 world points (m); `linear_depth` into metric depth (m);
`near_far` gives the clip distances (m), `camera_position` the (3,) camera position (m). `_Frame` holds one frame's
world points, pixel footprints (m), depth discontinuities and (on demand) surface normals. Last, the small planar
helpers the estimators share: yaw quaternions, yaw folding, horizontal normal directions, extents along a yaw.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from envs.perception.config import JUMP_FOOTPRINTS, OCCLUDER_GAP


def _matrix(m: Any, name: str) -> np.ndarray:
    a = np.asarray(m, dtype=np.float64).reshape(-1)
    if a.shape != (16,):
        raise ValueError(f"{name} must hold 16 numbers (PyBullet's column-major 4x4 matrix), got {a.size}")
    return a.reshape(4, 4).T


def near_far(proj: Any) -> tuple[float, float]:
    """(near, far) clip distances (m) of a PyBullet (OpenGL) projection matrix."""
    p = _matrix(proj, "proj")
    return float(p[2, 3] / (p[2, 2] - 1.0)), float(p[2, 3] / (p[2, 2] + 1.0))


def linear_depth(depth: np.ndarray, proj: Any) -> np.ndarray:
    """Metric depth along the optical axis (m) of depth-buffer values in [0, 1]."""
    n, f = near_far(proj)
    return (n * f / (f - (f - n) * np.asarray(depth, np.float64))).astype(np.float32)


def backproject(depth: np.ndarray, view: Any, proj: Any) -> np.ndarray:
    """(H, W, 3) float32 world points (m) of a depth buffer (H, W) rendered with `view` and `proj`."""
    h, w = depth.shape
    try:
        inv = np.linalg.inv(_matrix(proj, "proj") @ _matrix(view, "view"))
    except np.linalg.LinAlgError:
        raise ValueError("proj @ view is singular: pass the view and projection matrices the frame was "
                         "rendered with") from None
    x = 2.0 * np.arange(w, dtype=np.float64) / w - 1.0
    y = 1.0 - 2.0 * (np.arange(h, dtype=np.float64) + 1.0) / h
    z = 2.0 * np.asarray(depth, np.float64) - 1.0
    # inv @ (x, y, z, 1), expanded so no (H, W, 4) homogeneous array is built per axis
    out = [inv[i, 0] * x[None, :] + inv[i, 1] * y[:, None] + inv[i, 2] * z + inv[i, 3] for i in range(4)]
    return (np.stack(out[:3], axis=-1) / out[3][..., None]).astype(np.float32)


def camera_position(view: Any) -> np.ndarray:
    """(3,) world position of the camera of a view matrix."""
    return np.linalg.inv(_matrix(view, "view"))[:3, 3]


class _Frame:
    """A frame's world points, pixel footprints, depth discontinuities and (on demand) surface normals."""

    def __init__(self, rgb: np.ndarray, depth: np.ndarray, view: Any, proj: Any) -> None:
        self.hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
        self.shape = depth.shape
        h = depth.shape[0]
        self.valid = (depth < 0.9999) & np.isfinite(depth)
        depth = np.where(self.valid, depth, 0.5)
        self.X = backproject(depth, view, proj)
        self.points = self.X.reshape(-1, 3)
        self.cam = camera_position(view)
        p = _matrix(proj, "proj")
        # pixel size at the point (m): linear depth x the pixel's angular size
        self.footprint = linear_depth(depth, proj) * np.float32(2.0 / (p[1, 1] * h))
        gu = cv2.Sobel(self.X, cv2.CV_32F, 1, 0, ksize=1) * np.float32(0.5)  # central differences per pixel
        gv = cv2.Sobel(self.X, cv2.CV_32F, 0, 1, ksize=1) * np.float32(0.5)
        step2 = np.maximum(np.einsum("ijk,ijk->ij", gu, gu), np.einsum("ijk,ijk->ij", gv, gv))
        self.jump = (step2 > (JUMP_FOOTPRINTS * self.footprint) ** 2) | ~self.valid
        self._gu, self._gv = gu.reshape(-1, 3), gv.reshape(-1, 3)
        self._depth, self._proj = depth, proj

    def dz_per_row(self, idx: np.ndarray) -> np.ndarray:
        """Height change (m) from one pixel row to the next at flat pixel indices `idx`."""
        return self._gv[idx, 2]

    @property
    def occluded(self) -> np.ndarray:
        """(H, W) bool: the pixel borders a surface at least OCCLUDER_GAP nearer the camera (an occluder's edge)."""
        if not hasattr(self, "_occluded"):
            lin = linear_depth(self._depth, self._proj)
            self._occluded = cv2.erode(lin, np.ones((3, 3), np.uint8)) < lin - OCCLUDER_GAP
        return self._occluded

    def normals(self, idx: np.ndarray) -> np.ndarray:
        """(N, 3) unit surface normals, facing the camera, at flat pixel indices `idx`."""
        n = np.cross(self._gu[idx], self._gv[idx])
        n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
        flip = np.einsum("ij,ij->i", n, self.cam.astype(np.float32) - self.points[idx]) < 0
        n[flip] *= -1
        return n


def _unit_xy(n: np.ndarray) -> np.ndarray:
    xy = n[:, :2].astype(np.float64)
    return xy / np.maximum(np.linalg.norm(xy, axis=1, keepdims=True), 1e-12)


def _extent(xy: np.ndarray, yaw: float) -> tuple[float, float]:
    axes = np.array([[math.cos(yaw), math.sin(yaw)], [-math.sin(yaw), math.cos(yaw)]])
    proj = xy @ axes.T
    ext = proj.max(axis=0) - proj.min(axis=0)
    return float(ext[0]), float(ext[1])


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)])


def _fold(yaw: float, period: float) -> float:
    """`yaw` folded into [-period / 2, period / 2)."""
    return float((yaw + period / 2) % period - period / 2)
