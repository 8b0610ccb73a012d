"""`LogDataset`: reads a demonstration-log folder; frames are PNG-decoded once and cached.

Only committed episodes are read (those info.json counts). At open, the folder goes through the same
checks as `palme-dataset validate` (`checks.scan`; PNG decoding only with `images=True`), so a folder
that opens yields examples without surprises. A folder problem stops loading (DatasetError, one line);
a bad episode stops loading too, or is skipped with `on_error="skip"` (`skipped` lists them and why).
Images are decoded on first access and kept in an LRU cache bounded by `cache_mb`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from envs.catalogue import MAX_OBJECTS, MAX_ZONES, OBJ_DIM
from training.dataset.checks import (
    DatasetError,
    EpisodeRow,
    Problem,
    decode_checked,
    errors_of,
    read_tasks,
    scan,
)
from training.dataset.schema import (
    DATA_PATH,
    ENV_STATE_KEY,
    IMAGE_KEY,
    OBSERVED_STATE_KEY,
    STATE_KEY,
    TASKS_PATH,
)


@dataclass
class EpisodeLog:
    """One committed episode: metadata and numeric columns (images stay compressed until asked for)."""

    index: int
    task_name: str
    seed: int
    split: str
    instruction: str
    success: bool
    failure: str | None
    objects: list[dict[str, Any]]  # ObjectDesc fields per slot
    names: list[str]  # object names in the plan language
    steps: list[dict[str, Any]]  # PlanStep dicts: text, start_t, end_t, success, reason, call
    frame_t: list[int]  # control step of each frame
    robot: np.ndarray  # (N, ROBOT_DIM)
    env_state: np.ndarray  # (N, MAX_OBJECTS, OBJ_DIM) object rows
    zones: np.ndarray  # (N, MAX_ZONES, OBJ_DIM) zone rows (all zero in a world without zones)
    action: np.ndarray  # (N, A)
    timestamp: np.ndarray  # (N,)
    frame_success: np.ndarray  # (N,) bool
    language: list[dict[str, Any]]  # language rows {role, content, style, timestamp (s), camera, tool_calls}
    file: str
    meta: dict[str, Any] = field(default_factory=dict)
    # The rows the planner saw, in folders collected with state=estimated|noisy (schema.OBSERVED_STATE_KEY):
    # (N, MAX_OBJECTS, OBJ_DIM) and (N, MAX_ZONES, OBJ_DIM); None elsewhere (env_state / zones are the simulator's).
    observed: np.ndarray | None = None
    observed_zones: np.ndarray | None = None

    @property
    def length(self) -> int:
        return len(self.frame_t)

    def frame_at(self, t: int) -> int:
        """Index of the frame recorded at control step t (every plan step's start has one)."""
        try:
            return self.frame_t.index(t)
        except ValueError as err:
            raise ValueError(f"episode {self.index} has no frame at control step {t}") from err

    def plans(self) -> list[tuple[float, str]]:
        """(timestamp, whole-plan text) rows of style `plan`."""
        return [(r["timestamp"], r["content"]) for r in self.language if r["style"] == "plan"]


class LogDataset:
    """Episodes of a dataset folder; `frame(ep, i)` gives an observation dict like the env's.

    `on_error`: "raise" (DatasetError naming the first problem) or "skip" (bad episodes are left out
    and listed in `skipped`, one Problem each; a folder problem still raises). `images=True` also
    decodes every frame at open (what validate does), so a bad frame is found before training.
    `problems` holds everything the checks found (warnings included).
    """

    def __init__(self, root: str | Path, on_error: str = "raise", cache_mb: float = 1024.0,
                 images: bool = False) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.root = Path(root)
        self.on_error = on_error
        self.episodes: list[EpisodeLog] = []
        self._images: dict[int, list[bytes]] = {}
        self.info, self.problems = scan(self.root, images=images, keep=self._keep)
        errors = errors_of(self.problems)
        if errors and (on_error == "raise" or any(p.episode is None for p in errors)):
            first = next((p for p in errors if p.episode is None), errors[0]) if on_error == "skip" else errors[0]
            hint = ("" if first.episode is None or on_error == "skip" else " or load with on_error='skip'")
            raise DatasetError(f"{self.root}: {first}" + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")
                               + f"; run `palme-dataset validate {self.root}` for the full report{hint}", errors)
        firsts: dict[int, Problem] = {}
        for p in errors:
            firsts.setdefault(p.episode, p)
        self.skipped: list[Problem] = list(firsts.values())  # the first error of each skipped episode
        self.invalid_frames = sum(p.frame is not None for p in errors)  # frames with an unusable image
        self.fps = int(self.info["fps"])
        self.image_shape = tuple(self.info["features"][IMAGE_KEY]["shape"])
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_limit = int(cache_mb * 2**20 / max(1, int(np.prod(self.image_shape))))
        self.decoded = 0  # PNG decodes done (a cache hit does not decode)
        self.tasks = self._tasks()

    def __len__(self) -> int:
        return len(self.episodes)

    def _keep(self, ep: int, er: EpisodeRow, table: pa.Table) -> None:
        """An episode that passed every check: keep its metadata and numeric columns (PNG bytes stay compressed)."""
        row, n = er.row, table.num_rows

        def mat(key: str) -> np.ndarray:
            return np.asarray(table.column(key).combine_chunks().flatten().to_numpy(zero_copy_only=False)).reshape(n, -1)

        self._images[len(self.episodes)] = [c["bytes"] for c in table.column(IMAGE_KEY).to_pylist()]
        env = mat(ENV_STATE_KEY).astype(np.float32)  # object rows, then zone rows (schema.env_state_names)
        seen = mat(OBSERVED_STATE_KEY).astype(np.float32) if OBSERVED_STATE_KEY in table.column_names else None
        cut = MAX_OBJECTS * OBJ_DIM
        self.episodes.append(EpisodeLog(
            index=ep, task_name=row["task_name"], seed=int(row["seed"]), split=row["split"],
            instruction=row["instruction"], success=bool(row["success"]), failure=row["failure"],
            objects=er.objects, names=er.names, steps=er.steps, frame_t=er.frame_t, robot=mat(STATE_KEY).astype(np.float32),
            env_state=env[:, : MAX_OBJECTS * OBJ_DIM].reshape(n, MAX_OBJECTS, OBJ_DIM),
            zones=env[:, MAX_OBJECTS * OBJ_DIM :].reshape(n, MAX_ZONES, OBJ_DIM),
            action=mat("action").astype(np.float32), timestamp=table.column("timestamp").to_numpy(),
            frame_success=table.column("next.success").to_numpy(zero_copy_only=False).astype(bool),
            language=er.language,
            file=DATA_PATH.format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]),
            meta={k: v for k, v in row.items() if not k.startswith("stats/")},
            observed=None if seen is None else seen[:, :cut].reshape(n, MAX_OBJECTS, OBJ_DIM),
            observed_zones=None if seen is None else seen[:, cut:].reshape(n, MAX_ZONES, OBJ_DIM),
        ))

    def keep_only(self, positions: Iterable[int]) -> None:
        """Keep only the episodes at these positions (in their order); positions are renumbered from 0."""
        keep = sorted(set(positions))
        self.episodes = [self.episodes[p] for p in keep]
        self._images = {new: self._images[old] for new, old in enumerate(keep)}
        self._cache.clear()

    def _tasks(self) -> list[str]:
        """Instructions by task_index (checked by the scan when the folder has episodes)."""
        if not (self.root / TASKS_PATH).exists():
            return []
        return read_tasks(self.root, self.info)[0] or []

    def image(self, pos: int, i: int) -> np.ndarray:
        """Frame i of the episode at position `pos` in `episodes`, decoded once and cached (read-only array)."""
        key = (pos, i)
        img = self._cache.get(key)
        if img is not None:
            self._cache.move_to_end(key)
            return img
        img, why = decode_checked(self._images[pos][i], self.image_shape)
        if img is None:
            ep = self.episodes[pos]
            raise DatasetError(f"{self.root}: ERROR [episode {ep.index}: {ep.file}] frame {i} image: {why}")
        img.setflags(write=False)
        self.decoded += 1
        self._cache[key] = img
        if len(self._cache) > self._cache_limit:
            self._cache.popitem(last=False)
        return img

    def frame(self, pos: int, i: int, image: bool = True, observed: bool = False) -> dict[str, Any]:
        """Observation dict of frame i (keys as the env's: rgb, robot, objects, zones, instruction).

        `objects` and `zones` are the simulator's rows; with `observed`, the rows the planner saw (a folder collected
        with state=estimated|noisy; ValueError naming the episode in a folder without them).
        """
        ep = self.episodes[pos]
        objects, zones = ep.env_state[i], ep.zones[i]
        if observed:
            if ep.observed is None or ep.observed_zones is None:
                raise ValueError(f"{self.root}: episode {ep.index} has no observed rows ({OBSERVED_STATE_KEY}): it was "
                                 "collected with state=privileged")
            objects, zones = ep.observed[i], ep.observed_zones[i]
        obs: dict[str, Any] = {"robot": ep.robot[i], "objects": objects, "zones": zones,
                               "instruction": ep.instruction}
        if image:
            obs["rgb"] = self.image(pos, i)
        return obs
