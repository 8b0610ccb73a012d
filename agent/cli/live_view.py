"""palme-run's live view: the camera frame, captioned, shown after every step of an episode.

`view=window`: an opencv (highgui) window, redrawn after each step. `view=file`: `live.png` in the run
folder, replaced atomically after each step (envs.fileio.write_atomic), so an image viewer that reloads
the file (or a browser tab, a remote file manager) follows the session on a machine without a display.
`view=auto` (the default) gives interactive sessions and the `human` planner a window where a display
works (DISPLAY or WAYLAND_DISPLAY set, or macOS / Windows, and a probe window opens in a child process:
a headless opencv build refuses, and a dead display must not abort this process) and the file where not;
other runs get none. `view=none`: nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from envs.fileio import write_atomic
from envs.video import caption

FILE_NAME = "live.png"
WINDOW_NAME = "palme-run"
MIN_WIDTH = 384  # px: smaller camera frames are upscaled (nearest) so the scene and its caption stay readable
_PROBE = f"import cv2; cv2.namedWindow({WINDOW_NAME!r}); cv2.waitKey(1); cv2.destroyAllWindows()"


def display_available(timeout: float = 10.0) -> bool:
    """Whether an opencv window can be shown here: a display is named (or the OS has one) and a child process
    opens a window (headless opencv builds, unreachable displays and missing GUI libraries all fail there)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and sys.platform not in ("darwin", "win32"):
        return False
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def resolve_view(view: str, interactive_use: bool) -> str:
    """The view to use: `window`, `file` or `none`. `auto`: for interactive use a window where a display works,
    else the file; otherwise none. `window` without a display raises ValueError (one line)."""
    if view == "auto":
        if not interactive_use:
            return "none"
        return "window" if display_available() else "file"
    if view == "window" and not display_available():
        raise ValueError("view=window needs a display (DISPLAY set and an opencv build with GUI support, e.g. "
                         "opencv-python rather than opencv-python-headless); use view=file (live.png) or view=auto")
    if view not in ("window", "file", "none"):
        raise ValueError(f"view must be one of ['auto', 'window', 'file', 'none'], got {view!r}")
    return view


def frame_for_view(rgb: np.ndarray, text: str, min_width: int = MIN_WIDTH) -> np.ndarray:
    """The camera frame upscaled (nearest, integer factor) to at least `min_width` px, with `text` captioned."""
    if rgb.shape[1] < min_width:
        k = -(-min_width // rgb.shape[1])
        rgb = cv2.resize(rgb, (rgb.shape[1] * k, rgb.shape[0] * k), interpolation=cv2.INTER_NEAREST)
    return caption(rgb, text)


class LiveView:
    """Shows the env's camera frame with a caption: in a window (`mode="window"`) or as `path` (`mode="file"`)."""

    def __init__(self, env: Any, mode: str, path: Path | None = None) -> None:
        if mode not in ("window", "file"):
            raise ValueError(f"LiveView mode must be 'window' or 'file', got {mode!r}")
        if mode == "file" and path is None:
            raise ValueError("LiveView mode 'file' needs a path")
        self.u = env.unwrapped
        self.mode = mode
        self.path = path
        self.updates = 0

    def where(self) -> str:
        """Where the view is, in words (printed once at the start)."""
        if self.mode == "window":
            return f"a window ({WINDOW_NAME!r}), redrawn after every step"
        return f"{self.path} (replaced after every step; open it in an image viewer that reloads)"

    def show(self, text: str) -> None:
        """Draw the current scene with `text` (already printable) under it."""
        bgr = np.ascontiguousarray(frame_for_view(self.u.camera_image(), text)[:, :, ::-1])
        if self.mode == "window":
            cv2.imshow(WINDOW_NAME, bgr)
            cv2.waitKey(1)  # let highgui draw it
        else:
            ok, png = cv2.imencode(".png", bgr)
            if not ok:
                raise ValueError(f"could not PNG-encode the live view frame of shape {bgr.shape}")
            assert self.path is not None
            write_atomic(self.path, png.tobytes(), fsync=False)
        self.updates += 1

    def close(self) -> None:
        if self.mode == "window":
            try:
                cv2.destroyWindow(WINDOW_NAME)
                cv2.waitKey(1)
            except cv2.error:  # already closed by the user
                pass


def open_live_view(mode: str, env: Any, out_dir: Path, out: TextIO) -> LiveView | None:
    """The live view of a resolved `mode` (`resolve_view`), its place printed once to `out`; None for none."""
    if mode == "none":
        return None
    live = LiveView(env, mode, Path(out_dir) / FILE_NAME if mode == "file" else None)
    print(f"live view: {live.where()}", file=out, flush=True)
    return live
