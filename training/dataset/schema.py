"""The on-disk layout of demonstration logs: LeRobotDataset v3.0 paths, features and our schema version.

One episode per data file (`data/chunk-CCC/file-FFF.parquet`, file index = episode index within
its chunk) and one row per episode in `meta/episodes/chunk-CCC/file-FFF.parquet` (same numbering),
so an interrupted collection leaves every finished episode readable and nothing half-written.
`meta/info.json` is the commit record: an episode exists once info.json counts it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa

from envs.catalogue import MAX_OBJECTS, MAX_ZONES, OBJ_FIELDS, ROBOT_FIELDS

CODEBASE_VERSION = "v3.0"  # LeRobotDataset format version
SCHEMA_VERSION = 2  # our own extensions (info.json "palme" block, episode columns); bump on change
# 2: observation.environment_state also holds the zone rows (zone1.x ... zone4.present) after the object rows
CHUNKS_SIZE = 1000  # files per chunk folder (LeRobot's default)
IMAGE_KEY = "observation.images.front"
STATE_KEY = "observation.state"
ENV_STATE_KEY = "observation.environment_state"
LANGUAGE_KEY = "language_persistent"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
INDEX_KEYS: tuple[str, ...] = ("frame_index", "episode_index", "index", "task_index")


def env_state_names() -> list[str]:
    """Names of the flattened object rows, then zone rows: `obj1.x` ... `obj8.present`, `zone1.x` ... `zone4.present`."""
    objects = [f"obj{j}.{f}" for j in range(1, MAX_OBJECTS + 1) for f in OBJ_FIELDS]
    return objects + [f"zone{k}.{f}" for k in range(1, MAX_ZONES + 1) for f in OBJ_FIELDS]


def make_features(image_size: tuple[int, int], action_names: list[str]) -> dict[str, dict[str, Any]]:
    """The info.json `features` block (dtype, shape, names) for images of `image_size` (H, W)."""
    h, w = image_size

    def vec(names: list[str], dtype: str = "float32") -> dict[str, Any]:
        return {"dtype": dtype, "shape": [len(names)], "names": list(names)}

    def scalar(dtype: str) -> dict[str, Any]:
        return {"dtype": dtype, "shape": [1], "names": None}

    return {
        IMAGE_KEY: {"dtype": "image", "shape": [h, w, 3], "names": ["height", "width", "channels"]},
        STATE_KEY: vec(list(ROBOT_FIELDS)),
        ENV_STATE_KEY: vec(env_state_names()),
        "action": vec(action_names),
        "next.success": scalar("bool"),
        "next.done": scalar("bool"),
        "timestamp": scalar("float32"),
        "frame_index": scalar("int64"),
        "episode_index": scalar("int64"),
        "index": scalar("int64"),
        "task_index": scalar("int64"),
        LANGUAGE_KEY: {"dtype": "language", "shape": [1], "names": None},
    }


_SCALAR_TYPES = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_()}
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # HF `datasets.Image` storage
LANGUAGE_ROW_TYPE = pa.struct(
    [
        ("role", pa.string()),
        ("content", pa.string()),
        ("style", pa.string()),
        ("timestamp", pa.float32()),
        ("camera", pa.string()),
        ("tool_calls", pa.list_(pa.string())),
    ]
)


def arrow_schema(features: dict[str, dict[str, Any]]) -> pa.Schema:
    """The Arrow schema of a data file for `features` (scalars plain, vectors fixed-size lists)."""
    fields = []
    for key, ft in features.items():
        if ft["dtype"] == "image":
            fields.append(pa.field(key, IMAGE_TYPE))
        elif ft["dtype"] == "language":
            fields.append(pa.field(key, pa.list_(LANGUAGE_ROW_TYPE)))
        elif list(ft["shape"]) == [1]:
            fields.append(pa.field(key, _SCALAR_TYPES[ft["dtype"]]))
        else:
            fields.append(pa.field(key, pa.list_(_SCALAR_TYPES[ft["dtype"]], int(ft["shape"][0]))))
    return pa.schema(fields)


def chunk_file(episode_index: int, chunks_size: int = CHUNKS_SIZE) -> tuple[int, int]:
    """(chunk_index, file_index) of an episode: one data file per episode."""
    return divmod(episode_index, chunks_size)


def data_path(episode_index: int, chunks_size: int = CHUNKS_SIZE) -> str:
    """Relative path of an episode's data file."""
    c, f = chunk_file(episode_index, chunks_size)
    return DATA_PATH.format(chunk_index=c, file_index=f)


def episodes_path(episode_index: int, chunks_size: int = CHUNKS_SIZE) -> str:
    """Relative path of an episode's metadata row."""
    c, f = chunk_file(episode_index, chunks_size)
    return EPISODES_PATH.format(chunk_index=c, file_index=f)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so readers see the old or the new content, never a torn one (temp + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON file replaced atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


class NotADatasetError(ValueError):
    """The folder has no meta/info.json of a LeRobot dataset."""


def load_info(root: Path) -> dict[str, Any]:
    """meta/info.json, or NotADatasetError (one line) when the folder is not a dataset."""
    path = Path(root) / INFO_PATH
    if not Path(root).is_dir():
        raise NotADatasetError(f"{root}: not a dataset (no such folder)")
    if not path.is_file():
        raise NotADatasetError(f"{root}: not a dataset (no {INFO_PATH})")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NotADatasetError(f"{root}: {INFO_PATH} is not valid JSON ({err})") from err
    if not isinstance(info, dict) or "codebase_version" not in info or "features" not in info:
        raise NotADatasetError(f"{root}: not a LeRobot dataset ({INFO_PATH} lacks codebase_version/features)")
    return info


def check_versions(info: dict[str, Any], root: Path | str = "") -> None:
    """ValueError naming expected and found versions when the folder was written by another schema."""
    if info.get("codebase_version") != CODEBASE_VERSION:
        raise ValueError(
            f"{root}: codebase_version {info.get('codebase_version')!r}, expected {CODEBASE_VERSION!r} (LeRobot v3.0)"
        )
    found = (info.get("palme") or {}).get("schema_version")
    if found != SCHEMA_VERSION:
        raise ValueError(f"{root}: palme schema_version {found!r}, expected {SCHEMA_VERSION}")
