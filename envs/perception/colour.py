"""Colour classes: a pixel takes the nearest class colour in the chroma plane (S cos H, S sin H) of cv2's HSV.

`_Palette.build` makes one world's classes (its object colours or zone pastels, and the distractor paints);
`_Palette.classify` maps (N, 3) uint8 HSV_FULL pixels to (N,) colour ids (-1: no class, or a distractor) through
a (256, 256) look-up table over hue and saturation and a brightness range.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def _chroma(hsv: np.ndarray) -> np.ndarray:
    """(..., 2) chroma vectors (S cos H, S sin H), S in [0, 1], of cv2 HSV_FULL pixels (..., 3) uint8."""
    h = hsv[..., 0].astype(np.float32) * np.float32(2 * np.pi / 256)
    s = hsv[..., 1].astype(np.float32) / np.float32(255)
    return np.stack([s * np.cos(h), s * np.sin(h)], axis=-1)


@dataclass(frozen=True)
class _Palette:
    """Colour classes: chroma prototypes, tolerances and brightness ranges; `labels[k] >= 0` are wanted."""

    chroma: np.ndarray  # (K, 2)
    tol: np.ndarray  # (K,) chroma distance accepted
    vmax: np.ndarray  # (K,) brightness (0-255) of the unshaded albedo
    shade: tuple[float, float]  # accepted V / vmax range
    labels: np.ndarray  # (K,) int: the colour id a class stands for, -1 for distractors

    @staticmethod
    def build(classes: list[tuple[tuple[float, ...], int]], shade: tuple[float, float]) -> _Palette:
        rgb = np.array([[c[:3] for c, _ in classes]], dtype=np.float64)  # (1, K, 3)
        hsv = cv2.cvtColor(np.round(rgb * 255 * 0.8).astype(np.uint8), cv2.COLOR_RGB2HSV_FULL)
        chroma = _chroma(hsv)[0]
        d = np.linalg.norm(chroma[:, None] - chroma[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        tol = np.minimum(0.4 * d.min(axis=1), 0.12).astype(np.float32)
        return _Palette(chroma, tol, rgb[0].max(axis=1) * 255, shade, np.array([k for _, k in classes]))

    def lut(self) -> tuple[np.ndarray, np.ndarray]:
        """(class (256, 256) int, accepted (256, 256) bool) per (hue, saturation) byte pair."""
        if "_lut" not in self.__dict__:
            hs = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), -1).astype(np.uint8)
            c = _chroma(np.concatenate([hs, np.zeros_like(hs[..., :1])], axis=-1))
            d = np.linalg.norm(c[..., None, :] - self.chroma, axis=-1)  # (256, 256, K)
            k = d.argmin(axis=-1)
            ok = np.take_along_axis(d, k[..., None], -1)[..., 0] <= self.tol[k]
            object.__setattr__(self, "_lut", (k, ok))
        return self.__dict__["_lut"]

    def classify(self, hsv: np.ndarray) -> np.ndarray:
        """(N,) colour id of each pixel (N, 3) uint8 HSV (cv2's HSV_FULL), -1 for none or a distractor."""
        if len(hsv) == 0:
            return np.zeros(0, np.int64)
        lut_k, lut_ok = self.lut()
        k = lut_k[hsv[:, 0], hsv[:, 1]]
        shade = hsv[:, 2] / self.vmax[k]
        ok = lut_ok[hsv[:, 0], hsv[:, 1]] & (shade >= self.shade[0]) & (shade <= self.shade[1])
        return np.where(ok, self.labels[k], -1)
