"""Video of an episode at a fixed fps, with the current plan step written on the frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np

from envs.base import TabletopEnv


def caption(frame: np.ndarray, text: str) -> np.ndarray:
    """A copy of `frame` with `text` written on a dark band at the bottom (scaled to the frame, wrapped to fit)."""
    out = np.ascontiguousarray(frame.copy())
    h, w = out.shape[:2]
    scale = max(0.3, w / 640)
    thick = 1
    lines = _wrap(text, w - 8, scale, thick)
    (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    line_h = th + base + 2
    band = min(h, line_h * len(lines) + 4)
    out[h - band :, :] = (out[h - band :, :] * 0.35).astype(np.uint8)
    for k, line in enumerate(lines):
        y = h - band + 2 + th + k * line_h
        cv2.putText(out, line, (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def _wrap(text: str, width: int, scale: float, thick: int) -> list[str]:
    """Greedy word wrap of `text` into lines at most `width` pixels wide (a word longer than that stays whole)."""
    lines: list[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(trial, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] <= width:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines or [""]


MIN_VIDEO_WIDTH = 256  # px: smaller camera frames are upscaled (nearest) so the caption band stays a strip


class VideoRecorder:
    """Attach to an env: renders a frame every `control_hz / fps` control steps; `text` is written on it.

    `size` (H, W) resizes every frame; without it, frames narrower than MIN_VIDEO_WIDTH are
    upscaled by the smallest integer factor that reaches it (a 64 px camera gives 256 px videos),
    so the caption covers a strip of the frame rather than half of it.
    """

    def __init__(self, env: TabletopEnv, fps: int | None = None, size: tuple[int, int] | None = None) -> None:
        self.env = env
        self.fps = fps or env.metadata["render_fps"]
        self.every = max(1, round(env.control_hz / self.fps))
        self.text = ""
        self.size = tuple(size) if size is not None else None  # (H, W) of the video; frames are resized to it
        self.frames: list[np.ndarray] = []
        env.step_hooks.append(self._on_step)

    def _on_step(self, env: TabletopEnv) -> None:
        if env.t % self.every == 0:
            self.capture()

    def capture(self) -> None:
        """Add a frame now (e.g. at the start of a step)."""
        self.frames.append(caption(self._frame(), self.text))

    def frame(self) -> np.ndarray:
        """The camera's current frame at this recorder's video size (H', W', 3) uint8, uncaptioned."""
        return self._frame()

    def _frame(self) -> np.ndarray:
        frame = self.env.camera_image()
        if self.size is not None and frame.shape[:2] != self.size:
            frame = cv2.resize(frame, (self.size[1], self.size[0]), interpolation=cv2.INTER_LINEAR)
        elif self.size is None and frame.shape[1] < MIN_VIDEO_WIDTH:
            k = -(-MIN_VIDEO_WIDTH // frame.shape[1])
            frame = cv2.resize(frame, (frame.shape[1] * k, frame.shape[0] * k), interpolation=cv2.INTER_NEAREST)
        return frame

    def detach(self) -> None:
        if self._on_step in self.env.step_hooks:
            self.env.step_hooks.remove(self._on_step)

    def save(self, path: str | Path) -> Path:
        """Write the frames as H.264 mp4 (imageio-ffmpeg)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        frames = self.frames or [caption(self._frame(), self.text)]
        write_video(path, frames, self.fps)
        return path


def write_video(path: str | Path, frames: list[np.ndarray], fps: int) -> None:
    """Frames (H, W, 3) uint8 to an mp4; sizes are padded to even numbers for H.264."""
    h, w = frames[0].shape[:2]
    ph, pw = h + h % 2, w + w % 2
    with imageio.get_writer(str(path), fps=fps, codec="libx264", quality=7, macro_block_size=1) as writer:
        for f in frames:
            if f.shape[:2] != (ph, pw):
                f = np.pad(f, ((0, ph - h), (0, pw - w), (0, 0)))
            writer.append_data(f)
