"""`DatasetWriter`: appends episodes to a LeRobotDataset v3.0 folder, crash-safely and without duplicates.

Write order per episode: data file, episode-metadata file, tasks.parquet (when the task string is
new), stats.json, and last info.json, each replaced atomically (temp file + os.replace).
info.json's `total_episodes` is the commit point: files of episodes past it are leftovers of an
interrupted write; the next writer removes them and readers ignore them. Episodes are keyed by
(task name, seed): adding one that is already there is a no-op.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import re
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from training.dataset.checks import (
    DatasetError,
    check_episode_row,
    check_info,
    link_problems,
    one_line,
    read_tasks,
)
from training.dataset.episode import EncodedEpisode, with_language_form
from training.dataset.schema import (
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_PATH,
    EPISODE_COLUMNS,  # noqa: F401 - re-exported (the columns of meta/episodes rows)
    INFO_PATH,
    LANGUAGE_KEY,
    LEGACY_LANGUAGE_KEY,
    OBSERVED_STATE_KEY,
    SCHEMA_VERSION,
    STAT_NAMES,
    STATS_PATH,
    TASKS_PATH,
    VIDEO_PATH,
    atomic_write_bytes,
    atomic_write_json,
    chunk_file,
    contiguous_splits,
    data_path,
    episode_schema,
    episodes_path,
    load_info,
    parse_json,
    stats_keys,
)

LOCK_NAME = ".writer.lock"  # held (flock) by the one writer of a folder; holds who that writer is (JSON)

_FILE_RE = re.compile(r"chunk-(\d{3,})/file-(\d{3,})\.parquet$")


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy", write_page_checksum=True)
    return buf.getvalue()


def tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet as pandas writes it (task string as the index, task_index column),
    so LeRobot's `pd.read_parquet(...).loc[task]` works."""
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.0",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})



def block_sets_of(palme: dict[str, Any]) -> tuple[str, ...]:
    """The block sets a folder's scenes were drawn from (info.json palme.block_sets); push folders written before
    the key existed drew the split's blocks (N_CHOOSE_K); worlds without block sets: ()."""
    sets = palme.get("block_sets")
    return tuple(sets) if sets else (("N_CHOOSE_K",) if palme.get("world") == "push" else ())

class RunningStats:
    """Dataset-level mean/std/min/max/count merged from per-episode stats (parallel-variance formula)."""

    def __init__(self) -> None:
        self.acc: dict[str, dict[str, np.ndarray]] = {}

    def add(self, stats: dict[str, dict[str, np.ndarray]]) -> None:
        for key, s in stats.items():
            n = float(np.asarray(s["count"]).reshape(-1)[0])
            mean, std = np.asarray(s["mean"], np.float64), np.asarray(s["std"], np.float64)
            a = self.acc.get(key)
            if a is None:
                self.acc[key] = {"n": np.array(n), "sum": n * mean, "sumsq": n * (std**2 + mean**2),
                                 "min": np.asarray(s["min"], np.float64), "max": np.asarray(s["max"], np.float64)}
                continue
            a["n"] = a["n"] + n
            a["sum"] = a["sum"] + n * mean
            a["sumsq"] = a["sumsq"] + n * (std**2 + mean**2)
            a["min"] = np.minimum(a["min"], s["min"])
            a["max"] = np.maximum(a["max"], s["max"])

    def to_json(self, features: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """stats.json content; image stats shaped (3, 1, 1) as LeRobot stores them."""
        out: dict[str, dict[str, Any]] = {}
        for key, a in self.acc.items():
            n = float(a["n"])
            mean = a["sum"] / n
            std = np.sqrt(np.maximum(a["sumsq"] / n - mean**2, 0.0))
            vals = {"min": a["min"], "max": a["max"], "mean": mean, "std": std}
            shape = (3, 1, 1) if features.get(key, {}).get("dtype") == "image" else (-1,)
            out[key] = {k: np.asarray(v).reshape(shape).tolist() for k, v in vals.items()}
            out[key]["count"] = [int(n)]
        return out


class WriterConflictError(ValueError):
    """Another process is appending to the dataset folder (the message names the folder and that writer)."""


def _holder(lock: Any) -> str:
    """Who holds a writer lock, in words, from the open lock file's JSON (pid, host, start time, command)."""
    try:
        lock.seek(0)
        who = parse_json(lock.read(4096))
    except (OSError, ValueError):
        who = None
    if not isinstance(who, dict):
        return "another process (it did not record who it is)"
    argv = " ".join(str(a) for a in who.get("argv", [])) if isinstance(who.get("argv"), list) else "?"
    return one_line(f"pid {str(who.get('pid', '?'))[:20]} on {str(who.get('host', '?'))[:80]}, since "
                    f"{str(who.get('started', '?'))[:40]} ({argv[:200]})")


def _open_lock(path: Path) -> Any:
    """The writer lock file, opened read-write (created if absent; its content kept for `_holder`).

    Never through a symbolic link (O_NOFOLLOW: a link planted as `.writer.lock` would otherwise have
    the writer overwrite its target) and only a regular file. Raises DatasetError (one line) otherwise.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as err:
        if err.errno != errno.ELOOP:
            raise
        raise DatasetError(f"{path} is a symbolic link; the writer lock must be a regular file of the dataset "
                           "folder (remove the link)") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise DatasetError(f"{path} is not a regular file (st_mode {stat.filemode(mode)}); the writer lock must be "
                           "a regular file of the dataset folder (remove it)")
    return os.fdopen(fd, "r+")


def _lock_record() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv})


class DatasetWriter:
    """Appends encoded episodes to `root`; creates the dataset on first use. One writer per folder at a time
    (a second one gets WriterConflictError); an existing folder whose info.json fails `check_info` is refused
    with DatasetError (one line)."""

    def __init__(
        self,
        root: str | Path,
        features: dict[str, dict[str, Any]] | None = None,
        fps: int | None = None,
        robot_type: str | None = None,
        palme: dict[str, Any] | None = None,
        chunks_size: int = CHUNKS_SIZE,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        lock_path = self.root / LOCK_NAME
        made_lock = not lock_path.exists() and not lock_path.is_symlink()
        self._lock = _open_lock(lock_path)  # held for the writer's lifetime
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _holder(self._lock)
            self._lock.close()
            raise WriterConflictError(f"{self.root}: another writer is appending to this dataset: "
                                      f"{holder}; wait for it to finish or stop it") from err
        self._lock.truncate(0)
        self._lock.write(_lock_record())
        self._lock.flush()
        try:
            self._open(features, fps, robot_type, palme, chunks_size)
        except BaseException:
            if made_lock:  # a refused folder (e.g. a foreign dataset) is left as it was
                lock_path.unlink(missing_ok=True)
            self.close()
            raise

    def _open(self, features, fps, robot_type, palme, chunks_size) -> None:
        links = link_problems(self.root)  # nothing is written or deleted through a link out of the folder
        if links:
            raise DatasetError(f"{self.root}: cannot append: {links[0]}")
        if (self.root / INFO_PATH).exists():
            self.info = load_info(self.root)
            errors = [p for p in check_info(self.info, self.root) if p.level == "error"]
            if errors:
                raise DatasetError(f"{self.root}: cannot append: {errors[0]}; run `palme-dataset validate {self.root}`")
            self._check_compatible(features, fps)
        else:
            if features is None or fps is None:
                raise ValueError(f"{self.root}: a new dataset needs `features` and `fps`")
            missing = [k for k in ("world", "control_hz") if not (palme or {}).get(k)]
            if missing:
                raise ValueError(f"{self.root}: a new dataset needs palme[{missing}] (the world and its control rate)")
            self.info = self._new_info(features, fps, robot_type, palme or {}, chunks_size)
        if palme:
            self._merge_palme(palme)
        self.features = self.info["features"]
        self.chunks_size = int(self.info["chunks_size"])
        self._remove_leftovers()
        self.rows: list[dict[str, Any]] = []
        self.stats = RunningStats()
        self._load_committed()
        self.tasks: list[str] = self._load_tasks()
        self.keys = {(r["task_name"], int(r["seed"])) for r in self.rows}

    # ---- public ---------------------------------------------------------------------------
    @property
    def total_episodes(self) -> int:
        return int(self.info["total_episodes"])

    def has(self, task: str, seed: int) -> bool:
        """Whether an episode of (task, seed) is already in the dataset."""
        return (task, int(seed)) in self.keys

    def add(self, enc: EncodedEpisode) -> int | None:
        """Write one encoded episode; returns its episode index, or None when (task, seed) is already there."""
        key = (enc.meta["task_name"], int(enc.meta["seed"]))
        if key in self.keys:
            return None
        ep = self.total_episodes
        start = int(self.info["total_frames"])
        n = enc.table.num_rows
        if enc.instruction not in self.tasks:
            self.tasks.append(enc.instruction)
            new_task = True
        else:
            new_task = False
        task_index = self.tasks.index(enc.instruction)
        table = self._with_indices(with_language_form(enc.table, self.features), ep, start, task_index)
        data = _parquet_bytes(table)
        atomic_write_bytes(self.root / data_path(ep, self.chunks_size), data)
        stats = dict(enc.stats)
        for name, value in (("episode_index", ep), ("task_index", task_index)):
            stats[name] = _const_stats(value, n)
        stats["index"] = _range_stats(start, start + n)
        row = self._episode_row(enc, ep, start, n, stats)
        row["data/sha256"] = hashlib.sha256(data).hexdigest()
        atomic_write_bytes(self.root / episodes_path(ep, self.chunks_size),
                           _parquet_bytes(pa.Table.from_pylist([row], schema=episode_schema(self.features))))
        if new_task:
            atomic_write_bytes(self.root / TASKS_PATH, _parquet_bytes(tasks_table(self.tasks)))
        self.stats.add(stats)
        atomic_write_json(self.root / STATS_PATH, self.stats.to_json(self.features))
        self.rows.append(row)
        self.keys.add(key)
        self._commit(ep + 1, start + n)
        return ep

    def close(self) -> None:
        """Release the folder's writer lock."""
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- internals ------------------------------------------------------------------------
    def _new_info(self, features, fps, robot_type, palme, chunks_size) -> dict[str, Any]:
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type,
            "total_episodes": 0,
            "total_frames": 0,
            "total_tasks": 0,
            "chunks_size": int(chunks_size),
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200,
            "fps": int(fps),
            "splits": {},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if palme.get("videos") else None,
            "features": features,
            "palme": {"schema_version": SCHEMA_VERSION, **palme},
        }
        atomic_write_json(self.root / INFO_PATH, info)
        return info

    def _merge_palme(self, palme: dict[str, Any]) -> None:
        """Record what this run adds (tasks collected, seed ranges) without losing earlier runs' entries."""
        block = self.info.setdefault("palme", {"schema_version": SCHEMA_VERSION})
        if block.get("world") and palme.get("world") and block["world"] != palme["world"]:
            raise ValueError(f"{self.root}: dataset holds the {block['world']!r} world, this run collects {palme['world']!r}")
        if self.total_episodes and palme.get("world") and block_sets_of(block) != block_sets_of(palme):
            have, want = (", ".join(block_sets_of(b)) for b in (block, palme))
            raise ValueError(f"{self.root}: dataset holds scenes drawn from block set {have}, this run draws "
                             f"from {want}; the seed alone names a scene within one block set: collect into "
                             "another folder")
        for key, value in palme.items():
            if isinstance(value, list) and isinstance(block.get(key), list):
                block[key] = block[key] + [v for v in value if v not in block[key]]
            elif isinstance(value, dict) and isinstance(block.get(key), dict):
                block[key] = {**block[key], **value}
            else:
                block[key] = value

    def _check_compatible(self, features, fps) -> None:
        if fps is not None and int(fps) != int(self.info["fps"]):
            raise ValueError(f"{self.root}: dataset records at fps={self.info['fps']}, this run asks for fps={fps}")
        if features is not None:  # the language column may be in either form (`add` writes the folder's)
            features, theirs = _one_language_form(features), _one_language_form(self.info["features"])
            if (OBSERVED_STATE_KEY in features) != (OBSERVED_STATE_KEY in theirs):  # a clearer word than the loop's
                have, want = ("state=estimated|noisy" if OBSERVED_STATE_KEY in f else "state=privileged"
                              for f in (theirs, features))
                raise ValueError(f"{self.root}: the dataset holds episodes collected with {have}, this run collects "
                                 f"with {want} ({OBSERVED_STATE_KEY}); collect into another folder")
            for key in sorted(set(features) | set(theirs)):
                a, b = features.get(key), theirs.get(key)
                if a is None or b is None or a["dtype"] != b["dtype"] or list(a["shape"]) != list(b["shape"]):
                    raise ValueError(f"{self.root}: feature {key!r} is {b} in the dataset, this run writes {a}")

    def _episode_files(self, folder: str) -> list[tuple[int, Path]]:
        out = []
        for path in (self.root / folder).glob("chunk-*/file-*.parquet"):
            m = _FILE_RE.search(path.as_posix())
            if m:
                out.append((int(m.group(1)) * self.chunks_size + int(m.group(2)), path))
        return out

    def _remove_leftovers(self) -> None:
        """Delete files an interrupted write left past the committed episodes, and temp files."""
        total = self.total_episodes
        for folder in ("data", "meta/episodes"):
            for ep, path in self._episode_files(folder):
                if ep >= total:
                    path.unlink()
        for tmp in self.root.rglob(".*.tmp"):
            tmp.unlink()

    def _load_committed(self) -> None:
        """The committed rows (keys and stats of what is there); a row that fails its checks stops the append."""
        keys = stats_keys(self.features)
        for ep in range(self.total_episodes):
            er, problems = check_episode_row(self.root, self.info, ep)
            errors = [p for p in problems if p.level == "error"]
            if er is None or errors:
                raise DatasetError(f"{self.root}: cannot append: {errors[0]}; run `palme-dataset validate {self.root}`")
            row = er.row
            self.rows.append(row)
            self.stats.add({k: {s: np.asarray(row[f"stats/{k}/{s}"]) for s in STAT_NAMES} for k in keys
                            if row.get(f"stats/{k}/mean") is not None})

    def _load_tasks(self) -> list[str]:
        if not (self.root / TASKS_PATH).exists():
            return []
        tasks, problems = read_tasks(self.root, self.info)
        if tasks is None:
            raise DatasetError(f"{self.root}: cannot append: {problems[0]}; run `palme-dataset validate {self.root}`")
        return tasks

    def _with_indices(self, table: pa.Table, ep: int, start: int, task_index: int) -> pa.Table:
        n = table.num_rows
        for name, values in (
            ("episode_index", np.full(n, ep, np.int64)),
            ("index", np.arange(start, start + n, dtype=np.int64)),
            ("task_index", np.full(n, task_index, np.int64)),
        ):
            table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, pa.int64()))
        return table

    def _episode_row(self, enc: EncodedEpisode, ep: int, start: int, n: int, stats) -> dict[str, Any]:
        chunk, file = chunk_file(ep, self.chunks_size)
        row: dict[str, Any] = {
            "episode_index": ep, "tasks": [enc.instruction], "length": n,
            "data/chunk_index": chunk, "data/file_index": file,
            "dataset_from_index": start, "dataset_to_index": start + n,
            "meta/episodes/chunk_index": chunk, "meta/episodes/file_index": file,
            **enc.meta,
        }
        for key in stats_keys(self.features):
            for s in STAT_NAMES:
                v = stats.get(key, {}).get(s)
                row[f"stats/{key}/{s}"] = None if v is None else np.asarray(v).reshape(-1).tolist()
        return row

    def _commit(self, total_episodes: int, total_frames: int) -> None:
        self.info["total_episodes"] = total_episodes
        self.info["total_frames"] = total_frames
        self.info["total_tasks"] = len(self.tasks)
        self.info["splits"] = _contiguous_splits([r["split"] for r in self.rows])
        atomic_write_json(self.root / INFO_PATH, self.info)


def _one_language_form(features: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`features` with a LEGACY_LANGUAGE_KEY feature (LeRobot 0.6's form) shown as the LANGUAGE_KEY one, to compare."""
    if LEGACY_LANGUAGE_KEY not in features or LANGUAGE_KEY in features:
        return features
    return {LANGUAGE_KEY if k == LEGACY_LANGUAGE_KEY else k: ({**ft, "dtype": "string"} if k == LEGACY_LANGUAGE_KEY else ft)
            for k, ft in features.items()}


def _const_stats(value: float, n: int) -> dict[str, np.ndarray]:
    v = np.array([float(value)])
    return {"min": v, "max": v, "mean": v, "std": np.zeros(1), "count": np.array([n])}


def _range_stats(lo: int, hi: int) -> dict[str, np.ndarray]:
    x = np.arange(lo, hi, dtype=np.float64)
    return {"min": x.min(keepdims=True), "max": x.max(keepdims=True), "mean": x.mean(keepdims=True),
            "std": x.std(keepdims=True), "count": np.array([len(x)])}


_contiguous_splits = contiguous_splits  # (kept under its old name)
