"""Checks of a dataset folder, shared by `palme-dataset validate` and the training loader.

Every problem names the episode and the file it was found in, so a user can delete or re-collect
exactly that episode.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from training.dataset.episode import decode_png
from training.dataset.schema import (
    ENV_STATE_KEY,
    IMAGE_KEY,
    INDEX_KEYS,
    LANGUAGE_KEY,
    STATE_KEY,
    STATS_PATH,
    TASKS_PATH,
    arrow_schema,
    data_path,
    episodes_path,
)
from training.dataset.writer import EPISODE_COLUMNS

NUMERIC_KEYS: tuple[str, ...] = (STATE_KEY, ENV_STATE_KEY, "action")


@dataclass(frozen=True)
class Problem:
    """One finding: `error` means the episode (or dataset) must not be trained on; `warning` is informational."""

    level: str  # "error" | "warning"
    message: str
    episode: int | None = None
    file: str | None = None

    def __str__(self) -> str:
        where = []
        if self.episode is not None:
            where.append(f"episode {self.episode}")
        if self.file:
            where.append(self.file)
        loc = f" [{': '.join(where)}]" if where else ""
        return f"{self.level.upper()}{loc} {self.message}"


class DatasetError(ValueError):
    """A dataset problem that stops loading; the message names the episode and the file."""


def read_parquet(root: Path, rel: str, columns: list[str] | None = None) -> tuple[pa.Table | None, str | None, str]:
    """(table, None, sha256 of the bytes) or (None, why it could not be read: missing, truncated, corrupt, "")."""
    path = root / rel
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, "file is missing", ""
    try:
        pf = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
        return pf.read(columns=columns, use_threads=False), None, hashlib.sha256(data).hexdigest()
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for truncated / corrupt files
        return None, f"unreadable parquet (truncated or corrupt): {type(err).__name__}: {str(err)[:160]}", ""


def check_episode_row(
    root: Path, info: dict[str, Any], ep: int, stats: bool = True
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Read and check episode `ep`'s metadata row (without the wide stats/ columns when `stats` is False)."""
    rel = episodes_path(ep, int(info["chunks_size"]))
    table, why, _ = read_parquet(root, rel, None if stats else [n for n, _ in EPISODE_COLUMNS])
    if table is None:
        return None, [Problem("error", f"episode metadata {why}", ep, rel)]
    rows = table.to_pylist()
    if len(rows) != 1 or rows[0].get("episode_index") != ep:
        return None, [Problem("error", f"expected one row with episode_index {ep}, got {len(rows)} rows", ep, rel)]
    return rows[0], []


def check_episode_data(
    root: Path, info: dict[str, Any], ep: int, row: dict[str, Any], images: bool = True
) -> tuple[pa.Table | None, list[Problem]]:
    """Read episode `ep`'s data file and check schema, counts, indices, finiteness and (optionally) every image."""
    rel = data_path(ep, int(info["chunks_size"]))
    table, why, digest = read_parquet(root, rel)
    if table is None:
        return None, [Problem("error", f"data {why}", ep, rel)]
    problems: list[Problem] = []
    if row.get("data/sha256") and digest != row["data/sha256"]:
        problems.append(Problem("error", "data file bytes differ from the checksum recorded when it was written "
                                "(changed or corrupted on disk)", ep, rel))

    def err(msg: str) -> None:
        problems.append(Problem("error", msg, ep, rel))

    before = len(problems)
    for f in arrow_schema(info["features"]):
        if f.name not in table.column_names:
            err(f"column {f.name!r} is missing")
        elif not table.schema.field(f.name).type.equals(f.type):
            err(f"column {f.name!r} has type {table.schema.field(f.name).type}, expected {f.type}")
    if len(problems) > before:
        return None, problems
    n = table.num_rows
    if n != row["length"]:
        err(f"{n} frames in the file, episode metadata says {row['length']}")
    idx = {k: table.column(k).to_numpy() for k in INDEX_KEYS}
    if not np.array_equal(idx["frame_index"], np.arange(n)):
        err("frame_index is not 0..n-1")
    if not np.all(idx["episode_index"] == ep):
        err(f"episode_index column is not {ep} everywhere")
    if not np.array_equal(idx["index"], np.arange(row["dataset_from_index"], row["dataset_from_index"] + n)):
        err(f"index column does not run from {row['dataset_from_index']} to {row['dataset_to_index']}")
    if np.any(idx["task_index"] < 0) or np.any(idx["task_index"] >= int(info["total_tasks"])):
        err(f"task_index outside [0, {info['total_tasks']})")
    ts = table.column("timestamp").to_numpy()
    if not np.all(np.isfinite(ts)) or np.any(np.diff(ts) < 0):
        err("timestamp is not finite and non-decreasing")
    for key in NUMERIC_KEYS:
        values = np.asarray(table.column(key).combine_chunks().flatten().to_numpy(zero_copy_only=False))
        values = values.reshape(n, -1)
        bad = ~np.isfinite(values)
        if bad.any():
            frame, dim = (int(v) for v in np.argwhere(bad)[0])
            names = info["features"][key].get("names") or []
            dim_name = names[dim] if dim < len(names) else str(dim)
            err(f"{key} has {int(bad.sum())} NaN/inf values (first: frame {frame}, {dim_name})")
    if not any(r["style"] == "plan" for r in (table.column(LANGUAGE_KEY)[0].as_py() or [])):
        err(f"{LANGUAGE_KEY} has no plan row")
    if images:
        problems += check_images(table, info, ep, rel)
    return table, problems


def check_images(table: pa.Table, info: dict[str, Any], ep: int, rel: str) -> list[Problem]:
    """Decode every frame's PNG and check its shape."""
    shape = tuple(info["features"][IMAGE_KEY]["shape"])
    problems = []
    for i, cell in enumerate(table.column(IMAGE_KEY).to_pylist()):
        why = image_problem(cell, shape)
        if why:
            problems.append(Problem("error", f"frame {i} image: {why}", ep, rel))
    return problems


def image_problem(cell: dict[str, Any] | None, shape: tuple[int, ...]) -> str | None:
    """Why a stored image cell is unusable, or None."""
    data = (cell or {}).get("bytes")
    if not data:
        return "missing (no PNG bytes)"
    try:
        img = decode_png(data)
    except ValueError as e:
        return str(e)
    return None if img.shape == shape else f"shape {img.shape}, expected {shape}"


def check_meta_files(root: Path, info: dict[str, Any]) -> list[Problem]:
    """tasks.parquet and stats.json: present, readable, consistent with info.json."""
    problems = []
    table, why, _ = read_parquet(root, TASKS_PATH)
    if table is None:
        problems.append(Problem("error", f"tasks {why}", None, TASKS_PATH))
    elif table.num_rows != int(info["total_tasks"]):
        problems.append(Problem("error", f"{table.num_rows} tasks, info.json says {info['total_tasks']}", None, TASKS_PATH))
    try:
        stats = json.loads((root / STATS_PATH).read_text())
        missing = [k for k in (STATE_KEY, ENV_STATE_KEY, "action") if k not in stats]
        if missing:
            problems.append(Problem("error", f"stats for {missing} are missing", None, STATS_PATH))
    except FileNotFoundError:
        problems.append(Problem("error", "file is missing", None, STATS_PATH))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        problems.append(Problem("error", f"not valid JSON ({e})", None, STATS_PATH))
    return problems
