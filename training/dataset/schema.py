"""The on-disk layout of demonstration logs: LeRobotDataset v3.0 paths, features and our schema version.

One episode per data file (`data/chunk-CCC/file-FFF.parquet`, file index = episode index within
its chunk) and one row per episode in `meta/episodes/chunk-CCC/file-FFF.parquet` (same numbering),
so an interrupted collection leaves every finished episode readable and nothing half-written.
`meta/info.json` is the commit record: an episode exists once info.json counts it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from envs.catalogue import MAX_OBJECTS, MAX_ZONES, OBJ_FIELDS, ROBOT_FIELDS
from envs.fileio import write_atomic

CODEBASE_VERSION = "v3.0"  # LeRobotDataset format version
SCHEMA_VERSION = 2  # our own extensions (info.json "palme" block, episode columns); bump on change
# 2: observation.environment_state also holds the zone rows (zone1.x ... zone4.present) after the object rows
CHUNKS_SIZE = 1000  # files per chunk folder (LeRobot's default)
IMAGE_KEY = "observation.images.front"
STATE_KEY = "observation.state"
ENV_STATE_KEY = "observation.environment_state"
# The rows the planner saw, when they were not the simulator's (palme-collect state=estimated|noisy): the same
# layout and names as ENV_STATE_KEY, which keeps the simulator's rows (what validation, VQA answers and success
# read). Only in folders collected with such a state source (info.json palme.observed_state says which).
OBSERVED_STATE_KEY = "observation.environment_state.observed"
# The language rows (LeRobot 0.6's `language_persistent` rows: role, content, style, timestamp, camera, tool_calls)
# as JSON text, dtype "string": LeRobot 0.4.x maps that to a plain string column (it has no "language" dtype) and
# LeRobot >= 0.6 too (it claims only the names `language_persistent` / `language_events`), so both open the folder.
LANGUAGE_KEY = "language_persistent_json"
# Folders written before: the rows as LeRobot >= 0.6 stores them (dtype "language", a list of row structs);
# read, validated and appended to in that form, but LeRobot 0.4.x cannot open them.
LEGACY_LANGUAGE_KEY = "language_persistent"
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


def make_features(image_size: tuple[int, int], action_names: list[str], observed: bool = False) -> dict[str, dict[str, Any]]:
    """The info.json `features` block (dtype, shape, names) for images of `image_size` (H, W); `observed`: also
    OBSERVED_STATE_KEY (the planner's rows from a state source other than the simulator's)."""
    h, w = image_size

    def vec(names: list[str], dtype: str = "float32") -> dict[str, Any]:
        return {"dtype": dtype, "shape": [len(names)], "names": list(names)}

    def scalar(dtype: str) -> dict[str, Any]:
        return {"dtype": dtype, "shape": [1], "names": None}

    return {
        IMAGE_KEY: {"dtype": "image", "shape": [h, w, 3], "names": ["height", "width", "channels"]},
        STATE_KEY: vec(list(ROBOT_FIELDS)),
        ENV_STATE_KEY: vec(env_state_names()),
        **({OBSERVED_STATE_KEY: vec(env_state_names())} if observed else {}),
        "action": vec(action_names),
        "next.success": scalar("bool"),
        "next.done": scalar("bool"),
        "timestamp": scalar("float32"),
        "frame_index": scalar("int64"),
        "episode_index": scalar("int64"),
        "index": scalar("int64"),
        "task_index": scalar("int64"),
        LANGUAGE_KEY: {"dtype": "string", "shape": [1], "names": None},
    }


def language_key(features: dict[str, Any]) -> str:
    """The language column a folder declares: LANGUAGE_KEY (JSON text), or LEGACY_LANGUAGE_KEY in a folder
    written before (and only that one); LANGUAGE_KEY when neither is there."""
    return LEGACY_LANGUAGE_KEY if LEGACY_LANGUAGE_KEY in features and LANGUAGE_KEY not in features else LANGUAGE_KEY


_SCALAR_TYPES = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_(), "string": pa.string()}
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # HF `datasets.Image` storage
LANGUAGE_ROW_TYPE = pa.struct(  # one row of LEGACY_LANGUAGE_KEY (LeRobot >= 0.6's language_persistent row)
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
    """Write a file so readers see the old or the new content, never a torn one (temp + fsync + os.replace),
    with mode `0o666 & ~umask` (envs.fileio.write_atomic)."""
    write_atomic(path, data)


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON file replaced atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


class NotADatasetError(ValueError):
    """The folder has no readable meta/info.json of a LeRobot dataset (one-line message)."""


def parse_json(text: str | bytes) -> Any:
    """json.loads that fails only with ValueError (also for nesting too deep to parse, or bad UTF-8)."""
    try:
        return json.loads(text)
    except RecursionError as err:
        raise ValueError("JSON nested too deeply") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(" ".join(str(err).split())[:200]) from err


def load_info(root: str | Path) -> dict[str, Any]:
    """meta/info.json, or NotADatasetError (one line) when the folder is not a dataset or the file unreadable."""
    path = Path(root) / INFO_PATH
    if not Path(root).is_dir():
        raise NotADatasetError(f"{root}: not a dataset (no such folder)")
    if not path.is_file():
        raise NotADatasetError(f"{root}: not a dataset (no {INFO_PATH})")
    try:
        info = parse_json(path.read_bytes())
    except OSError as err:
        raise NotADatasetError(f"{root}: cannot read {INFO_PATH} ({err.strerror or err})") from err
    except ValueError as err:
        raise NotADatasetError(f"{root}: {INFO_PATH} is not valid JSON ({err})") from err
    if not isinstance(info, dict) or "codebase_version" not in info or "features" not in info:
        raise NotADatasetError(f"{root}: not a LeRobot dataset ({INFO_PATH} lacks codebase_version/features)")
    return info


STAT_NAMES = ("min", "max", "mean", "std", "count")
# Columns of meta/episodes rows: LeRobot's, then ours (palme), then stats/<feature>/<stat>.
EPISODE_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("episode_index", pa.int64()),
    ("tasks", pa.list_(pa.string())),
    ("length", pa.int64()),
    ("data/chunk_index", pa.int64()),
    ("data/file_index", pa.int64()),
    ("dataset_from_index", pa.int64()),
    ("dataset_to_index", pa.int64()),
    ("meta/episodes/chunk_index", pa.int64()),
    ("meta/episodes/file_index", pa.int64()),
    ("task_name", pa.string()),
    ("seed", pa.int64()),
    ("split", pa.string()),
    ("success", pa.bool_()),
    ("failure", pa.string()),
    ("reason", pa.string()),
    ("instruction", pa.string()),
    ("n_steps", pa.int64()),
    ("control_steps", pa.int64()),
    ("objects", pa.string()),
    ("names", pa.string()),
    ("plan_steps", pa.string()),
    ("frame_t", pa.string()),
    ("wall_s", pa.float64()),
    ("data/sha256", pa.string()),  # of the data file's bytes: any later change to the file is detected
]
PALME_COLUMNS: tuple[str, ...] = tuple(n for n, _ in EPISODE_COLUMNS[EPISODE_COLUMNS.index(("task_name", pa.string())):])


def stats_keys(features: dict[str, dict[str, Any]]) -> list[str]:
    """Features that get statistics (everything numeric or image; not language or other text)."""
    return [k for k, ft in features.items() if ft["dtype"] not in ("language", "string")]


def episode_schema(features: dict[str, dict[str, Any]]) -> pa.Schema:
    """Arrow schema of one meta/episodes row, stats columns included."""
    fields = [pa.field(n, t) for n, t in EPISODE_COLUMNS]
    for key in stats_keys(features):
        for s in STAT_NAMES:
            fields.append(pa.field(f"stats/{key}/{s}", pa.list_(pa.int64() if s == "count" else pa.float64())))
    return pa.schema(fields)


def contiguous_splits(splits: list[str]) -> dict[str, str]:
    """LeRobot's `splits` ("name": "start:end") for every split whose episodes form one contiguous range."""
    out = {}
    for name in dict.fromkeys(splits):
        idx = [i for i, s in enumerate(splits) if s == name]
        if idx[-1] - idx[0] + 1 == len(idx):
            out[name] = f"{idx[0]}:{idx[-1] + 1}"
    return out
