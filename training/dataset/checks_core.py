"""Shared pieces of the dataset checks (see `checks`): constants, `Problem`, `DatasetError`, typed readers."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.dataset.schema import (
    ENV_STATE_KEY,
    STATE_KEY,
)

NUMERIC_KEYS: tuple[str, ...] = (STATE_KEY, ENV_STATE_KEY, "action")
REQUIRED_INFO = ("codebase_version", "fps", "features", "total_episodes", "total_frames", "total_tasks",
                 "chunks_size", "data_path", "robot_type", "splits")
STEP_KEYS = ("text", "start_t", "end_t", "success", "reason", "call", "label")  # a plan_steps entry
OBJECT_KEYS = ("color", "shape", "size")  # an objects entry (ObjectDesc fields)
FAILURE_KINDS = ("parse_error", "invalid_reference", "precondition", "skill_failure", "consecutive_failures",
                 "step_budget", "premature_done", "physics", "exception")  # agent.loop.FAILURE_KINDS
MAX_CONTROL_HZ = 10_000
MAX_IMAGE_SIDE = 8192
MAX_T = 2**40  # control steps: far above any episode, far below float precision trouble
SIZE_TOL = 0.0025  # m: a row's size column names a size word within this (catalogue.descs_from_rows)
MISSING_EPISODES_SCANNED = 1000  # info.json counting this many more episodes than files: one folder problem
_FILE_RE = re.compile(r"chunk-(\d{3,})/file-(\d{3,})\.parquet$")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def one_line(text: object) -> str:
    """`text` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split())


@dataclass(frozen=True)
class Problem:
    """One finding: `error` means the episode (or, with `episode` None, the folder) must not be trained on;
    `warning` is informational. `frame` is set for a problem of one frame (an unreadable image)."""

    level: str  # "error" | "warning"
    message: str
    episode: int | None = None
    file: str | None = None
    frame: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", one_line(self.message))  # a report line is one line

    def __str__(self) -> str:
        where = []
        if self.episode is not None:
            where.append(f"episode {self.episode}")
        if self.file:
            where.append(self.file)
        loc = f" [{': '.join(where)}]" if where else ""
        return f"{self.level.upper()}{loc} {self.message}"


class DatasetError(ValueError):
    """A dataset problem that stops loading; the message (one line) names the episode and the file.
    `problems`: every error found, when the whole folder was checked (else empty)."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems: list[Problem] = list(problems or [])


def errors_of(problems: list[Problem]) -> list[Problem]:
    """The problems of level `error`."""
    return [p for p in problems if p.level == "error"]


def summarize(problems: list[Problem]) -> str:
    """One line: how many errors, in which episodes, and the first one."""
    errors = errors_of(problems)
    bad = sorted({p.episode for p in errors if p.episode is not None})
    where = f" in episode(s) {bad[:20]}" + ("..." if len(bad) > 20 else "") if bad else ""
    return f"{len(errors)} error(s){where}; first: {errors[0]}" if errors else "no errors"


# ---------------------------------------------------------------------------------------------
# small typed readers


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _bad_int(v: Any, lo: int, hi: int | None = None) -> str | None:
    """Why `v` is not an integer in [lo, hi], or None."""
    if not _is_int(v) or v < lo or (hi is not None and v > hi):
        return f"is {v!r:.60}, expected an integer in [{lo}, {'...' if hi is None else hi}]"
    return None


def _finite_floats(v: Any, n: int) -> bool:
    """Whether `v` (a list read from a float64 parquet column) holds n finite numbers (vectorized)."""
    if not isinstance(v, list) or len(v) != n:
        return False
    try:
        return bool(np.isfinite(np.asarray(v, np.float64)).all())
    except (TypeError, ValueError):  # a null inside
        return False


def _num_list(v: Any, n: int | None = None) -> bool:
    return isinstance(v, list) and (n is None or len(v) == n) and all(_is_num(x) for x in v)
