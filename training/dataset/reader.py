"""`LogDataset`: reads a demonstration-log folder; frames are PNG-decoded once and cached.

Only committed episodes are read (those info.json counts). At open, every episode's metadata and
numeric columns are read and checked; a bad episode stops loading with a message naming the
episode and the file, or is skipped with `on_error="skip"` (`skipped` lists them and why).
Images are decoded on first access and kept in an LRU cache bounded by `cache_mb`.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from envs.catalogue import MAX_OBJECTS, MAX_ZONES, OBJ_DIM
from training.dataset.checks import (
    DatasetError,
    Problem,
    check_episode_data,
    check_episode_row,
    image_problem,
)
from training.dataset.episode import decode_png
from training.dataset.schema import (
    ENV_STATE_KEY,
    IMAGE_KEY,
    LANGUAGE_KEY,
    STATE_KEY,
    TASKS_PATH,
    check_versions,
    data_path,
    load_info,
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
    language: list[dict[str, Any]]  # language_persistent rows
    file: str
    meta: dict[str, Any] = field(default_factory=dict)

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
    """Episodes of a dataset folder; `frame(ep, i)` gives an observation dict like the env's."""

    def __init__(self, root: str | Path, on_error: str = "raise", cache_mb: float = 1024.0) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.root = Path(root)
        self.info = load_info(self.root)
        check_versions(self.info, self.root)
        self.on_error = on_error
        self.fps = int(self.info["fps"])
        self.image_shape = tuple(self.info["features"][IMAGE_KEY]["shape"])
        self.skipped: list[Problem] = []
        self.episodes: list[EpisodeLog] = []
        self._images: dict[int, list[bytes]] = {}
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_limit = int(cache_mb * 2**20 / max(1, int(np.prod(self.image_shape))))
        self.decoded = 0  # PNG decodes done (a cache hit does not decode)
        for ep in range(int(self.info["total_episodes"])):
            self._load(ep)
        self.tasks = self._tasks()

    def __len__(self) -> int:
        return len(self.episodes)

    def _fail(self, problems: list[Problem]) -> None:
        errors = [p for p in problems if p.level == "error"]
        if self.on_error == "raise":
            raise DatasetError(f"{self.root}: {errors[0]}" + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else "")
                               + "; run `palme-dataset validate` for the full report or load with on_error='skip'")
        self.skipped.append(errors[0])

    def _load(self, ep: int) -> None:
        row, problems = check_episode_row(self.root, self.info, ep, stats=False)
        if row is None:
            self._fail(problems)
            return
        table, problems = check_episode_data(self.root, self.info, ep, row, images=False)
        if table is None or any(p.level == "error" for p in problems):
            self._fail(problems)
            return
        n = table.num_rows

        def mat(key: str) -> np.ndarray:
            return np.asarray(table.column(key).combine_chunks().flatten().to_numpy(zero_copy_only=False)).reshape(n, -1)

        self._images[len(self.episodes)] = [c["bytes"] for c in table.column(IMAGE_KEY).to_pylist()]
        env = mat(ENV_STATE_KEY).astype(np.float32)  # object rows, then zone rows (schema.env_state_names)
        self.episodes.append(EpisodeLog(
            index=ep, task_name=row["task_name"], seed=int(row["seed"]), split=row["split"],
            instruction=row["instruction"], success=bool(row["success"]), failure=row["failure"],
            objects=json.loads(row["objects"]), names=json.loads(row["names"]), steps=json.loads(row["plan_steps"]),
            frame_t=json.loads(row["frame_t"]), robot=mat(STATE_KEY).astype(np.float32),
            env_state=env[:, : MAX_OBJECTS * OBJ_DIM].reshape(n, MAX_OBJECTS, OBJ_DIM),
            zones=env[:, MAX_OBJECTS * OBJ_DIM :].reshape(n, MAX_ZONES, OBJ_DIM),
            action=mat("action").astype(np.float32), timestamp=table.column("timestamp").to_numpy(),
            frame_success=table.column("next.success").to_numpy(zero_copy_only=False).astype(bool),
            language=table.column(LANGUAGE_KEY)[0].as_py() or [], file=data_path(ep, int(self.info["chunks_size"])),
            meta={k: v for k, v in row.items() if not k.startswith("stats/")},
        ))

    def _tasks(self) -> list[str]:
        if not (self.root / TASKS_PATH).exists():
            return []
        t = pq.read_table(self.root / TASKS_PATH).to_pydict()
        return [task for _, task in sorted(zip(t["task_index"], t["task"]))]

    def image(self, pos: int, i: int) -> np.ndarray:
        """Frame i of the episode at position `pos` in `episodes`, decoded once and cached (read-only array)."""
        key = (pos, i)
        img = self._cache.get(key)
        if img is not None:
            self._cache.move_to_end(key)
            return img
        data = self._images[pos][i]
        why = image_problem({"bytes": data}, self.image_shape)
        if why:
            ep = self.episodes[pos]
            raise DatasetError(f"{self.root}: ERROR [episode {ep.index}: {ep.file}] frame {i} image: {why}")
        img = decode_png(data)
        img.setflags(write=False)
        self.decoded += 1
        self._cache[key] = img
        if len(self._cache) > self._cache_limit:
            self._cache.popitem(last=False)
        return img

    def frame(self, pos: int, i: int, image: bool = True) -> dict[str, Any]:
        """Observation dict of frame i (keys as the env's: rgb, robot, objects, zones, instruction)."""
        ep = self.episodes[pos]
        obs: dict[str, Any] = {"robot": ep.robot[i], "objects": ep.env_state[i], "zones": ep.zones[i],
                               "instruction": ep.instruction}
        if image:
            obs["rgb"] = self.image(pos, i)
        return obs
