"""Checks of a dataset folder: the one gate behind `palme-dataset validate`, the training loader and the writer.

`scan` checks every field and cross-reference that training or evaluation reads, and every invariant
FORMAT.md promises, before anything is built from a folder:
- info.json: versions, the types and ranges of its keys, the features palme-train reads (shapes and
  names), the `palme` block (known world and tasks, control rate, camera, table, workspace);
- meta/tasks.parquet (unique instructions, task_index 0..n-1) and meta/stats.json;
- each episode's metadata row: column types, no nulls where a value is needed, the JSON columns
  (`objects`, `names`, `plan_steps`, `frame_t`) parsed and typed, file pointers, index ranges, split
  and seed range, (task, seed) unique in the folder (a held-out twin of a training scene is refused);
- each episode's data file: checksum, schema, counts, indices, finiteness, object/zone rows that agree
  with `objects`, timestamps that agree with `frame_t`, plan steps that agree with the language rows,
  and (optionally) every PNG frame.
Every problem names the episode and the file it was found in, so a user can delete or re-collect
exactly that episode; episode problems are skippable (`on_error="skip"`), folder problems are not.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import math
import os
import re
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from envs.catalogue import (
    COLOR_NAMES,
    MAX_OBJECTS,
    MAX_ZONES,
    OBJ_DIM,
    ROBOT_DIM,
    ROBOT_FIELDS,
    SHAPE_NAMES,
    SIZE_EDGES,
    ObjectDesc,
)
from envs.vocab import SkillCall, object_names, world_skills
from training.dataset.episode import STYLE_ORDER, decode_png, memory_text
from training.dataset.schema import (
    _SCALAR_TYPES,
    CODEBASE_VERSION,
    DATA_PATH,
    ENV_STATE_KEY,
    EPISODES_PATH,
    IMAGE_KEY,
    INDEX_KEYS,
    INFO_PATH,
    LANGUAGE_KEY,
    PALME_COLUMNS,
    SCHEMA_VERSION,
    STAT_NAMES,
    STATE_KEY,
    STATS_PATH,
    TASKS_PATH,
    VIDEO_PATH,
    arrow_schema,
    chunk_file,
    contiguous_splits,
    data_path,
    env_state_names,
    episode_schema,
    episodes_path,
    load_info,
    parse_json,
    stats_keys,
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


MAX_LISTED_LINKS = 20  # link_problems names this many entries, then counts the rest


def _kind_of(mode: int) -> str:
    """What a file of st_mode `mode` is, in words."""
    kinds = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def link_problems(root: str | Path) -> list[Problem]:
    """An error for every symbolic link, FIFO, device or socket inside the dataset folder (links not followed).

    A dataset folder holds its own files: the writer writes and deletes only inside it, and a
    link (`data/chunk-000 -> /elsewhere`) would take its deletions elsewhere; a FIFO or a device
    would block or never end a read. The folder `root` itself may be a link.
    """
    found = []
    for parent, dirs, files in os.walk(root):  # followlinks=False: a linked folder is listed, not entered
        for name in sorted(dirs + files):
            path = Path(parent) / name
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue  # removed meanwhile
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                target = f" to {os.readlink(path)!r:.80}" if stat.S_ISLNK(mode) else ""
                found.append((path.relative_to(root).as_posix(), f"is {_kind_of(mode)}{target}"))
    problems = [Problem("error", f"{why}: a dataset folder holds regular files and folders only (links are not "
                        "followed; copy the files in, e.g. cp -rL)", None, rel) for rel, why in found[:MAX_LISTED_LINKS]]
    if len(found) > MAX_LISTED_LINKS:
        problems.append(Problem("error", f"and {len(found) - MAX_LISTED_LINKS} more links or special files", None, None))
    return problems


def read_plain_file(path: Path) -> bytes:
    """The bytes of a regular file that is not a symbolic link (opened with O_NOFOLLOW, non-blocking).

    Raises FileNotFoundError when missing, OSError (its strerror says why: "is a symbolic link",
    "is a FIFO (named pipe)", ...) for anything else: a link is not followed, a FIFO or device not read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ELOOP:  # O_NOFOLLOW on a link
            raise OSError(errno.ELOOP, "is a symbolic link (not followed)", str(path)) from None
        raise
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"is {'a folder' if stat.S_ISDIR(mode) else _kind_of(mode)}", str(path))
        return f.read()


def read_parquet(root: Path, rel: str, columns: list[str] | None = None) -> tuple[pa.Table | None, str | None, str]:
    """(table, None, sha256 of the bytes) or (None, why it could not be read: missing, a link or special file,
    truncated, corrupt, "")."""
    path = root / rel
    try:
        data = read_plain_file(path)
    except FileNotFoundError:
        return None, "file is missing", ""
    except OSError as err:
        return None, f"cannot be read ({err.strerror or type(err).__name__})", ""
    try:
        pf = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
        return pf.read(columns=columns, use_threads=False), None, hashlib.sha256(data).hexdigest()
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for truncated / corrupt files
        return None, f"unreadable parquet (truncated or corrupt): {type(err).__name__}: {one_line(err)[:160]}", ""


# ---------------------------------------------------------------------------------------------
# info.json


def _expected_features(info: dict[str, Any]) -> dict[str, tuple[str, list[int] | None, list[str] | None]]:
    """feature -> (dtype, shape or None = checked apart, names or None = free) that palme-train reads."""
    scalar = [1]
    return {
        IMAGE_KEY: ("image", None, None),
        STATE_KEY: ("float32", [ROBOT_DIM], list(ROBOT_FIELDS)),
        ENV_STATE_KEY: ("float32", [(MAX_OBJECTS + MAX_ZONES) * OBJ_DIM], env_state_names()),
        "action": ("float32", None, None),
        "next.success": ("bool", scalar, None),
        "next.done": ("bool", scalar, None),
        "timestamp": ("float32", scalar, None),
        **{k: ("int64", scalar, None) for k in INDEX_KEYS},
        LANGUAGE_KEY: ("language", scalar, None),
    }


def _feature_problems(info: dict[str, Any]) -> list[str]:
    """What is wrong with info.json's `features` (empty when every feature is well-formed and the ones
    palme-train reads have the expected dtype, shape and names)."""
    feats = info["features"]
    if not isinstance(feats, dict):
        return [f"features is {type(feats).__name__}, expected an object of feature -> {{dtype, shape, names}}"]
    out = []
    for key, ft in feats.items():
        if not isinstance(ft, dict) or "dtype" not in ft or "shape" not in ft:
            out.append(f"feature {key!r} is {ft!r:.80}, expected an object with dtype and shape")
            continue
        dtype, shape = ft["dtype"], ft["shape"]
        if dtype not in (*_SCALAR_TYPES, "image", "language"):
            out.append(f"feature {key!r} has dtype {dtype!r:.40}, expected one of {[*_SCALAR_TYPES, 'image', 'language']}")
        elif not isinstance(shape, list) or not shape or not all(_is_int(d) and 1 <= d <= 2**20 for d in shape):
            out.append(f"feature {key!r} has shape {shape!r:.60}, expected a list of positive integers")
        elif len(shape) != (3 if dtype == "image" else 1):
            out.append(f"feature {key!r} has shape {shape}, expected {'[height, width, 3]' if dtype == 'image' else 'one dimension'}")
        names = ft.get("names")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            out.append(f"feature {key!r} has names {names!r:.60}, expected a list of strings or null")
    if out:
        return out
    for key, (dtype, shape, names) in _expected_features(info).items():
        ft = feats.get(key)
        if ft is None:
            out.append(f"feature {key!r} is missing")
        elif ft["dtype"] != dtype or (shape is not None and ft["shape"] != shape):
            out.append(f"feature {key!r} is {ft['dtype']} {ft['shape']}, expected {dtype} {shape or ''}".rstrip())
        elif names is not None and ft.get("names") != names:
            out.append(f"feature {key!r} names are not the expected {names[:3]}...")
    image = feats.get(IMAGE_KEY)
    if image and image["dtype"] == "image":
        h, w, c = image["shape"]
        if c != 3 or h > MAX_IMAGE_SIDE or w > MAX_IMAGE_SIDE:
            out.append(f"feature {IMAGE_KEY!r} has shape {image['shape']}, expected [height, width, 3] with sides "
                       f"up to {MAX_IMAGE_SIDE}")
    return out


def not_palme_message(root: Path | str, info: dict[str, Any]) -> str:
    """One line: what a LeRobot v3.0 folder not written by palme-collect lacks for palme-train."""
    feats = info.get("features") if isinstance(info.get("features"), dict) else {}
    lacking = [k for k in _expected_features(info) if k not in feats]
    msg = (f"not a palme dataset: {INFO_PATH} has no \"palme\" block (palme-collect writes it: schema_version "
           f"{SCHEMA_VERSION}, world, control_hz, tasks, camera, table_z, workspace)")
    if lacking:
        msg += f"; features lack {lacking}"
    rel = EPISODES_PATH.format(chunk_index=0, file_index=0)
    try:
        names = pq.read_schema(Path(root) / rel).names
    except Exception:  # noqa: BLE001 - missing or unreadable: name the columns without checking
        names = None
    cols = [c for c in PALME_COLUMNS if names is None or c not in names]
    if cols:
        msg += f"; {'meta/episodes rows lack' if names is not None else 'meta/episodes rows need'} the columns {cols}"
    return msg + "; palme-train reads all of these, so collect the data with palme-collect"


def _palme_problems(info: dict[str, Any]) -> list[str]:
    """What is wrong with the `palme` block's keys that training, evaluation and validation read."""
    from envs import WORLDS, load_world
    from envs.tasks.base import SPLITS, seed_range, task_names

    palme = info["palme"]
    out = []
    world = palme.get("world")
    if world not in WORLDS:
        return [f"palme.world is {world!r:.40}, expected one of {sorted(WORLDS)} (the world the episodes ran in)"]
    load_world(world)
    why = _bad_int(palme.get("control_hz"), 1, MAX_CONTROL_HZ)
    if why:
        out.append(f"palme.control_hz {why} (control steps per second; timestamps are control step / control_hz)")
    elif _bad_int(info["fps"], 1, palme["control_hz"]):
        out.append(f"fps {_bad_int(info['fps'], 1, palme['control_hz'])} (frames per second, at most palme.control_hz)")
    tasks = palme.get("tasks")
    if tasks is not None and (not isinstance(tasks, list) or not all(t in task_names(world) for t in tasks)):
        out.append(f"palme.tasks is {tasks!r:.80}, expected a list of {world} tasks {task_names(world)}")
    splits = palme.get("collected_splits")
    if splits is not None and (not isinstance(splits, list) or not all(s in SPLITS for s in splits)):
        out.append(f"palme.collected_splits is {splits!r:.80}, expected a list of splits {list(SPLITS)}")
    ranges = palme.get("seed_ranges")
    expected = {"train": list(seed_range("train")), "test": list(seed_range("L1"))}
    if ranges is not None and ranges != expected:
        out.append(f"palme.seed_ranges is {ranges!r:.80}, expected {expected} (train and test seeds never meet)")
    planners = palme.get("planners")
    if planners is not None and (not isinstance(planners, list) or not planners
                                 or not all(isinstance(p, str) for p in planners)):
        out.append(f"palme.planners is {planners!r:.60}, expected a non-empty list of planner names")
    cam = palme.get("camera")
    if cam is not None:
        image = info["features"][IMAGE_KEY]["shape"][:2]
        if not isinstance(cam, dict) or not _num_list(cam.get("view"), 16) or not _num_list(cam.get("proj"), 16):
            out.append("palme.camera needs view and proj: 16 finite numbers each (column-major 4x4 matrices)")
        elif cam.get("image_size") != image:
            out.append(f"palme.camera.image_size is {cam.get('image_size')!r:.40}, expected the frames' {image}")
        else:
            rot = np.asarray(cam["view"], np.float64).reshape(4, 4)[:3, :3]
            if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-4):
                out.append("palme.camera.view is not a rigid transform (its rotation part is not orthonormal)")
    if "table_z" in palme and not _is_num(palme["table_z"]):
        out.append(f"palme.table_z is {palme['table_z']!r:.40}, expected a finite number (m)")
    ws = palme.get("workspace")
    if ws is not None and not (isinstance(ws, list) and len(ws) == 2 and _num_list(ws[0]) and _num_list(ws[1])
                               and len(ws[0]) == len(ws[1]) >= 2 and all(a < b for a, b in zip(ws[0], ws[1]))):
        out.append(f"palme.workspace is {ws!r:.80}, expected [[x_lo, y_lo, ...], [x_hi, y_hi, ...]] with lo < hi")
    return out


def check_info(info: dict[str, Any], root: Path | str = "") -> list[Problem]:
    """Problems of meta/info.json alone: versions, required keys and their types, features, the palme block."""

    def err(msg: str) -> Problem:
        return Problem("error", msg, None, INFO_PATH)

    out = []
    if info.get("codebase_version") != CODEBASE_VERSION:
        out.append(err(f"codebase_version {info.get('codebase_version')!r:.40}, expected {CODEBASE_VERSION!r} (LeRobot v3.0)"))
    palme = info.get("palme")
    if palme is None:
        return [*out, err(not_palme_message(root, info))]
    if not isinstance(palme, dict):
        return [*out, err(f"palme is {palme!r:.40}, expected an object (the block palme-collect writes)")]
    if palme.get("schema_version") != SCHEMA_VERSION:
        return [*out, err(f"palme schema_version {palme.get('schema_version')!r:.40}, expected {SCHEMA_VERSION}")]
    missing = [k for k in REQUIRED_INFO if k not in info]
    if missing:
        return [*out, err(f"info.json lacks {missing}")]
    for key, lo in (("total_episodes", 0), ("total_frames", 0), ("total_tasks", 0), ("chunks_size", 1)):
        why = _bad_int(info[key], lo)
        if why:
            out.append(err(f"{key} {why}"))
    if info["data_path"] != DATA_PATH:
        out.append(err(f"data_path is {info['data_path']!r:.80}, expected {DATA_PATH!r} (one episode per file)"))
    if info.get("video_path") not in (None, VIDEO_PATH):
        out.append(err(f"video_path is {info.get('video_path')!r:.80}, expected null or {VIDEO_PATH!r}"))
    if info["robot_type"] is not None and not isinstance(info["robot_type"], str):
        out.append(err(f"robot_type is {info['robot_type']!r:.40}, expected a string or null"))
    if not isinstance(info["splits"], dict) or not all(
            isinstance(v, str) and re.fullmatch(r"\d+:\d+", v) for v in info["splits"].values()):
        out.append(err(f"splits is {info['splits']!r:.80}, expected an object of split -> \"start:end\""))
    found = _feature_problems(info)
    out += [err(m) for m in found]
    if found:
        return out
    if _bad_int(info["fps"], 1) is not None:
        out.append(err(f"fps {_bad_int(info['fps'], 1)} (frames per second)"))
        return out
    out += [err(m) for m in _palme_problems(info)]
    return out


# ---------------------------------------------------------------------------------------------
# meta files


def read_tasks(root: Path, info: dict[str, Any]) -> tuple[list[str] | None, list[Problem]]:
    """Instructions by task_index from meta/tasks.parquet (unique, indices 0..n-1), or None and the problem."""

    def bad(msg: str) -> tuple[None, list[Problem]]:
        return None, [Problem("error", msg, None, TASKS_PATH)]

    table, why, _ = read_parquet(root, TASKS_PATH)
    if table is None:
        return bad(f"tasks {why}")
    if table.schema.get_field_index("task_index") < 0 or table.schema.get_field_index("task") < 0:
        return bad(f"tasks has columns {table.column_names}, expected task_index and task")
    if not table.schema.field("task_index").type.equals(pa.int64()) or not table.schema.field("task").type.equals(pa.string()):
        return bad("tasks columns have the wrong types (task_index int64, task string expected)")
    idx, text = table.column("task_index").to_pylist(), table.column("task").to_pylist()
    if table.num_rows != info["total_tasks"]:
        return bad(f"{table.num_rows} tasks, info.json says {info['total_tasks']}")
    if sorted(i for i in idx if i is not None) != list(range(len(idx))):
        return bad(f"task_index is not a permutation of 0..{len(idx) - 1}")
    if any(t is None or not t for t in text) or len(set(text)) != len(text):
        return bad("task strings are empty or repeated (each instruction is one task)")
    return [t for _, t in sorted(zip(idx, text))], []


def check_stats_file(root: Path, info: dict[str, Any]) -> list[Problem]:
    """meta/stats.json: present, valid JSON, with min/max/mean/std/count for the numeric features."""

    def bad(msg: str) -> list[Problem]:
        return [Problem("error", msg, None, STATS_PATH)]

    try:
        stats = parse_json(read_plain_file(root / STATS_PATH))
    except FileNotFoundError:
        return bad("file is missing")
    except OSError as err:
        return bad(f"cannot be read ({err.strerror or err})")
    except ValueError as err:
        return bad(f"not valid JSON ({err})")
    if not isinstance(stats, dict):
        return bad(f"is {type(stats).__name__}, expected an object of feature -> statistics")
    missing = [k for k in NUMERIC_KEYS if not isinstance(stats.get(k), dict) or not all(s in stats[k] for s in STAT_NAMES)]
    if missing:
        return bad(f"stats for {missing} are missing (min/max/mean/std/count)")
    return []


# ---------------------------------------------------------------------------------------------
# one episode: the metadata row


@dataclass
class EpisodeRow:
    """An episode's metadata row (stats columns included) with its JSON columns decoded and typed."""

    row: dict[str, Any]
    objects: list[dict[str, Any]]
    names: list[str]
    steps: list[dict[str, Any]]
    frame_t: list[int]


def _json_column(row: dict[str, Any], key: str, check: Callable[[Any], str | None]) -> tuple[Any, str | None]:
    """(decoded value, None) or (None, why the column `key` is not what it must be)."""
    try:
        value = parse_json(row[key])
    except ValueError as err:
        return None, f"{key} is not valid JSON ({err})"
    why = check(value)
    return (None, f"{key}{'' if why.startswith('[') else ' '}{why}") if why else (value, None)


def _objects_problem(v: Any) -> str | None:
    if not isinstance(v, list) or not 1 <= len(v) <= MAX_OBJECTS:
        return f"is {v!r:.60}, expected a list of 1..{MAX_OBJECTS} objects"
    for j, o in enumerate(v):
        if not isinstance(o, dict) or sorted(o) != sorted(OBJECT_KEYS):
            return f"[{j}] is {o!r:.60}, expected an object with exactly {list(OBJECT_KEYS)}"
        try:
            ObjectDesc(**o)
        except (TypeError, ValueError) as err:
            return f"[{j}]: {one_line(err)}"
    if len({o["size"] is None for o in v}) > 1:
        return "gives a size for some objects and not others"
    return None


def _names_problem(v: Any) -> str | None:
    if not isinstance(v, list) or not all(isinstance(n, str) for n in v):
        return f"is {v!r:.60}, expected a list of strings"
    return None


def _frame_t_problem(v: Any) -> str | None:
    if not isinstance(v, list) or not v or not all(_is_int(t) and 0 <= t < MAX_T for t in v):
        return f"is {v!r:.60}, expected a non-empty list of control steps (integers >= 0)"
    if any(b <= a for a, b in itertools.pairwise(v)):
        return "is not strictly increasing"
    return None


def _steps_problem(v: Any) -> str | None:
    if not isinstance(v, list):
        return f"is {v!r:.60}, expected a list of steps"
    for k, s in enumerate(v):
        if not isinstance(s, dict) or not all(key in s for key in STEP_KEYS):
            return f"[{k}] is {s!r:.60}, expected an object with {list(STEP_KEYS)}"
        if not isinstance(s["text"], str) or not s["text"].strip() or not isinstance(s["reason"], str):
            return f"[{k}] text/reason are {s['text']!r:.40}/{s['reason']!r:.40}, expected a non-empty text and a reason string"
        if not _is_int(s["start_t"]) or not _is_int(s["end_t"]) or not 0 <= s["start_t"] <= s["end_t"] < MAX_T:
            return f"[{k}] start_t/end_t are {s['start_t']!r:.20}/{s['end_t']!r:.20}, expected integers 0 <= start_t <= end_t"
        if not isinstance(s["success"], bool):
            return f"[{k}] success is {s['success']!r:.20}, expected true or false"
        if s["call"] is not None and not isinstance(s["call"], dict):
            return f"[{k}] call is {s['call']!r:.40}, expected an object or null"
        if s["label"] is not None and not isinstance(s["label"], str):
            return f"[{k}] label is {s['label']!r:.40}, expected a string or null"
    if any(b["start_t"] < a["end_t"] for a, b in itertools.pairwise(v)):
        return "overlap: a step starts before the previous one ended"
    if len({s["label"] is None for s in v}) > 1:
        return "label some steps and not others (a model-acted episode labels every step)"
    return None


def _call_problem(call: dict[str, Any], n_objects: int, world: str) -> str | None:
    """Why a plan step's `call` is not a call of the plan vocabulary in this episode, or None.

    It must build a `SkillCall` (known skill, one of its forms, known zone / location / relation
    words; no other key), name a skill of the folder's world, and give `obj` / `target` as indices
    of the episode's `n_objects` objects.
    """
    try:
        c = SkillCall(**call)
    except (TypeError, ValueError) as err:  # an unknown key, an unknown skill, not one of its forms
        return one_line(err)[:200]
    for slot in ("obj", "target"):
        value = getattr(c, slot)
        if value is not None and not (_is_int(value) and 0 <= value < n_objects):
            return f"{slot} is {value!r:.20}, expected the index of one of the episode's {n_objects} objects"
    if c.skill not in world_skills(world):
        return f"skill {c.skill!r} is not a skill of the {world} world {list(world_skills(world))}"
    return None


def _stats_problems(row: dict[str, Any], info: dict[str, Any]) -> list[str]:
    """The per-episode stats columns: per feature, all null, or min/max/mean/std of the feature's width
    (3 for images) and a count, all finite (the writer merges them into stats.json on the next append)."""
    out = []
    n = row["length"]
    for key in stats_keys(info["features"]):
        values = {s: row.get(f"stats/{key}/{s}") for s in STAT_NAMES}
        if all(v is None for v in values.values()):
            continue
        ft = info["features"][key]
        width = 3 if ft["dtype"] == "image" else ft["shape"][0]
        if any(not _finite_floats(values[s], width) for s in ("min", "max", "mean", "std")) or not (
                _num_list(values["count"], 1) and 1 <= values["count"][0] <= n):
            out.append(f"stats of {key!r} are malformed (expected {width} finite values per statistic and a count)")
    return out


def check_episode_row(root: Path, info: dict[str, Any], ep: int) -> tuple[EpisodeRow | None, list[Problem]]:
    """Read and check episode `ep`'s metadata row on its own (no other file is read)."""
    from envs.tasks.base import SPLITS, seed_range, task_names

    rel = episodes_path(ep, int(info["chunks_size"]))
    table, why, _ = read_parquet(root, rel)

    def fail(msg: str) -> tuple[None, list[Problem]]:
        return None, [Problem("error", msg, ep, rel)]

    if table is None:
        return fail(f"episode metadata {why}")
    expected = episode_schema(info["features"])
    wrong = [f"{f.name} ({'missing' if table.schema.get_field_index(f.name) < 0 else table.schema.field(f.name).type})"
             for f in expected if table.schema.get_field_index(f.name) < 0
             or not table.schema.field(f.name).type.equals(f.type)]
    if wrong:
        return fail(f"episode metadata columns missing or of the wrong type: {wrong[:6]}" + ("..." if len(wrong) > 6 else ""))
    if table.num_rows != 1:
        return fail(f"expected one row with episode_index {ep}, got {table.num_rows} rows")
    row = table.to_pylist()[0]
    if row["episode_index"] != ep:
        return fail(f"expected one row with episode_index {ep}, got episode_index {row['episode_index']}")
    nulls = [f.name for f in expected if row[f.name] is None and f.name != "failure" and not f.name.startswith("stats/")]
    if nulls:
        return fail(f"episode metadata has no value for {nulls[:6]}")
    problems: list[str] = []
    objects, why = _json_column(row, "objects", _objects_problem)
    problems += [why] if why else []
    names, why = _json_column(row, "names", _names_problem)
    problems += [why] if why else []
    steps, why = _json_column(row, "plan_steps", _steps_problem)
    problems += [why] if why else []
    frame_t, why = _json_column(row, "frame_t", _frame_t_problem)
    problems += [why] if why else []
    n = row["length"]
    if n < 1:
        problems.append(f"length is {n}, expected at least one frame")
    chunk, file = chunk_file(ep, int(info["chunks_size"]))
    for prefix in ("data", "meta/episodes"):
        got = (row[f"{prefix}/chunk_index"], row[f"{prefix}/file_index"])
        if got != (chunk, file):
            problems.append(f"{prefix}/chunk_index, {prefix}/file_index are {got}, expected {(chunk, file)} "
                            f"(episode {ep}'s file)")
    if row["dataset_from_index"] < 0 or row["dataset_to_index"] != row["dataset_from_index"] + n:
        problems.append(f"dataset_from_index/dataset_to_index are {row['dataset_from_index']}/{row['dataset_to_index']}, "
                        f"expected from >= 0 and to = from + length ({n})")
    if not row["instruction"].strip() or row["tasks"] != [row["instruction"]]:
        problems.append(f"tasks is {row['tasks']!r:.80}, expected [instruction] with a non-empty instruction")
    palme = info["palme"]
    world = palme["world"]
    if row["task_name"] not in task_names(world) or (palme.get("tasks") is not None
                                                     and row["task_name"] not in palme["tasks"]):
        problems.append(f"task_name {row['task_name']!r:.40} is not one of the folder's {world} tasks "
                        f"{palme.get('tasks') or task_names(world)}")
    if row["split"] not in SPLITS or (palme.get("collected_splits") is not None
                                      and row["split"] not in palme["collected_splits"]):
        problems.append(f"split {row['split']!r:.20} is not one of {palme.get('collected_splits') or list(SPLITS)}")
    else:
        lo, hi = seed_range(row["split"])
        if not lo <= row["seed"] < hi:
            problems.append(f"seed {row['seed']} is outside the {row['split']} seed range [{lo}, {hi}) "
                            "(training and held-out seeds never meet)")
    if row["failure"] is not None and row["failure"] not in FAILURE_KINDS:
        problems.append(f"failure {row['failure']!r:.40} is not one of {list(FAILURE_KINDS)}")
    if row["success"] and row["failure"] is not None:
        problems.append(f"success is true but failure is {row['failure']!r}")
    if not isinstance(row["data/sha256"], str) or not _HEX64.fullmatch(row["data/sha256"]):
        problems.append("data/sha256 is not a sha256 hex digest (the data file's checksum)")
    if objects is not None and names is not None and names != object_names([ObjectDesc(**o) for o in objects]):
        problems.append(f"names {names!r:.80} are not the plan-language names of objects")
    if frame_t is not None:
        if len(frame_t) != n:
            problems.append(f"frame_t holds {len(frame_t)} control steps for {n} frames")
        elif row["control_steps"] != frame_t[-1]:
            problems.append(f"control_steps is {row['control_steps']}, expected the last frame's {frame_t[-1]}")
    if steps is not None and objects is not None:
        for k, step in enumerate(steps):
            why = None if step["call"] is None else _call_problem(step["call"], len(objects), world)
            if why:
                problems.append(f"plan_steps[{k}].call: {why}")
                break
    if steps is not None:
        if row["n_steps"] != len(steps):
            problems.append(f"n_steps is {row['n_steps']}, plan_steps holds {len(steps)}")
        if frame_t is not None:
            have = set(frame_t)
            lost = [(k, t) for k, s in enumerate(steps) for t in (s["start_t"], s["end_t"]) if t not in have]
            if lost:
                problems.append(f"plan_steps[{lost[0][0]}] starts or ends at control step {lost[0][1]}, "
                                "which has no frame (every step's start and end is recorded)")
    problems += _stats_problems(row, info)
    if problems:
        return None, [Problem("error", m, ep, rel) for m in problems]
    return EpisodeRow(row, objects, names, steps, frame_t), []


# ---------------------------------------------------------------------------------------------
# one episode: the data file


def _object_rows_problem(env: np.ndarray, objects: list[dict[str, Any]]) -> str | None:
    """Object rows (n, MAX_OBJECTS, OBJ_DIM) that disagree with `objects`, and zone rows that are not zones."""
    obj, zones = env[:, :MAX_OBJECTS], env[:, MAX_OBJECTS:]
    k = len(objects)
    present = obj[:, :, -1]
    expect = np.zeros(MAX_OBJECTS)
    expect[:k] = 1
    bad = np.argwhere(present != expect)
    if len(bad):
        f, j = (int(x) for x in bad[0])
        return (f"observation.environment_state frame {f}: obj{j + 1}.present is {present[f, j]}, expected "
                f"{int(expect[j])} (objects lists {k} objects in the first slots)")
    color = np.array([COLOR_NAMES.index(o["color"]) for o in objects], np.float64)
    shape = np.array([SHAPE_NAMES.index(o["shape"]) for o in objects], np.float64)
    for col, want, what in ((8, color, "colour"), (9, shape, "shape")):
        bad = np.argwhere(obj[:, :k, col] != want)
        if len(bad):
            f, j = (int(x) for x in bad[0])
            return (f"observation.environment_state frame {f}: obj{j + 1} has {what} id {obj[f, j, col]}, but "
                    f"objects[{j}] is {objects[j]['color']} {objects[j]['shape']}")
    if objects[0]["size"] is not None:
        edge = np.array([SIZE_EDGES[o["size"]] for o in objects])
        bad = np.argwhere(np.abs(obj[:, :k, 7] - edge) >= SIZE_TOL)
        if len(bad):
            f, j = (int(x) for x in bad[0])
            return (f"observation.environment_state frame {f}: obj{j + 1} has size {obj[f, j, 7]:.4f} m, but "
                    f"objects[{j}] is {objects[j]['size']}")
    zp = zones[:, :, -1]
    zone_ok = (zp == 0) | ((zp == 1) & (zones[:, :, 9] == len(SHAPE_NAMES)) & (zones[:, :, 8] == np.round(zones[:, :, 8]))
                           & (zones[:, :, 8] >= 0) & (zones[:, :, 8] < len(COLOR_NAMES)))
    bad = np.argwhere(~zone_ok)
    if len(bad):
        f, j = (int(x) for x in bad[0])
        return f"observation.environment_state frame {f}: zone{j + 1} is not an absent or a target-zone row"
    return None


def _language_problem(lang: list[dict[str, Any]], steps: list[dict[str, Any]], hz: int) -> str | None:
    """Why the language rows disagree with plan_steps (subtask at each start, memory with the result at each end)."""
    if any(r is None or r.get("style") not in STYLE_ORDER or not isinstance(r.get("content"), str)
           or not _is_num(r.get("timestamp")) for r in lang):
        return f"{LANGUAGE_KEY} has a row without a known style ({list(STYLE_ORDER)}), a content or a finite timestamp"
    if not any(r["style"] == "plan" for r in lang):
        return f"{LANGUAGE_KEY} has no plan row"

    def ts(t: int) -> float:
        return float(np.float32(t / hz))

    expected = []
    for s in steps:
        expected.append((ts(s["start_t"]), "subtask", s["text"]))
        expected.append((ts(s["end_t"]), "memory", memory_text(s["text"], s["success"], s["reason"])))
    expected.sort(key=lambda r: (r[0], STYLE_ORDER.index(r[1])))
    stored = [(float(r["timestamp"]), r["style"], r["content"]) for r in lang if r["style"] != "plan"]
    if stored != expected:
        first = next((k for k, (a, b) in enumerate(zip(stored, expected)) if a != b), min(len(stored), len(expected)))
        return (f"plan_steps disagree with the {LANGUAGE_KEY} rows (subtask/memory row {first}: stored "
                f"{stored[first] if first < len(stored) else None!r:.80}, plan_steps give "
                f"{expected[first] if first < len(expected) else None!r:.80})")
    return None


def check_episode_data(
    root: Path, info: dict[str, Any], ep: int, er: EpisodeRow, images: bool = True, tasks: list[str] | None = None
) -> tuple[pa.Table | None, list[Problem]]:
    """Read episode `ep`'s data file and check it, and its agreement with the metadata row `er`
    (and with meta/tasks.parquet when `tasks` is given); with `images`, decode every PNG."""
    row = er.row
    rel = data_path(ep, int(info["chunks_size"]))
    table, why, digest = read_parquet(root, rel)
    if table is None:
        return None, [Problem("error", f"data {why}", ep, rel)]
    problems: list[Problem] = []

    def err(msg: str) -> None:
        problems.append(Problem("error", msg, ep, rel))

    if digest != row["data/sha256"]:
        err("data file bytes differ from the checksum recorded when it was written (changed or corrupted on disk)")
    before = len(problems)
    for f in arrow_schema(info["features"]):
        if f.name not in table.column_names:
            err(f"column {f.name!r} is missing")
        elif not table.schema.field(f.name).type.equals(f.type):
            err(f"column {f.name!r} has type {table.schema.field(f.name).type}, expected {f.type}")
        elif table.column(f.name).null_count:
            err(f"column {f.name!r} has {table.column(f.name).null_count} empty (null) values")
    if len(problems) > before:
        return None, problems
    n = table.num_rows
    if n != row["length"]:
        err(f"{n} frames in the file, episode metadata says {row['length']}")
        return None, problems
    idx = {k: table.column(k).to_numpy() for k in INDEX_KEYS}
    if not np.array_equal(idx["frame_index"], np.arange(n)):
        err("frame_index is not 0..n-1")
    if not np.all(idx["episode_index"] == ep):
        err(f"episode_index column is not {ep} everywhere")
    if not np.array_equal(idx["index"], np.arange(row["dataset_from_index"], row["dataset_from_index"] + n)):
        err(f"index column does not run from {row['dataset_from_index']} to {row['dataset_to_index']}")
    task_index = idx["task_index"]
    if np.any(task_index < 0) or np.any(task_index >= int(info["total_tasks"])) or np.any(task_index != task_index[0]):
        err(f"task_index is not one value in [0, {info['total_tasks']})")
    elif tasks is not None and tasks[int(task_index[0])] != row["instruction"]:
        err(f"task_index {int(task_index[0])} is the task {tasks[int(task_index[0])]!r:.60}, but the episode's "
            f"instruction is {row['instruction']!r:.60}")
    ts = table.column("timestamp").to_numpy()
    if not np.all(np.isfinite(ts)) or np.any(np.diff(ts) < 0):
        err("timestamp is not finite and non-decreasing")
    elif not np.array_equal(ts, (np.asarray(er.frame_t, np.float64) / info["palme"]["control_hz"]).astype(np.float32)):
        err("timestamp disagrees with frame_t / palme.control_hz (the frames' control steps)")
    done = table.column("next.done").to_numpy(zero_copy_only=False)
    if not np.array_equal(done, np.arange(n) == n - 1):
        err("next.done is not true on the last frame only")
    frame_success = table.column("next.success").to_numpy(zero_copy_only=False)
    if row["success"] and not frame_success[-1]:
        err("success is true but the goal does not hold on the last frame (next.success)")
    if not row["success"] and row["failure"] is None and frame_success[-1]:
        err("success is false with no failure kind, but the goal holds on the last frame (next.success)")
    values: dict[str, np.ndarray] = {}
    for key in NUMERIC_KEYS:
        v = np.asarray(table.column(key).combine_chunks().flatten().to_numpy(zero_copy_only=False)).reshape(n, -1)
        values[key] = v
        bad = ~np.isfinite(v)
        if bad.any():
            frame, dim = (int(x) for x in np.argwhere(bad)[0])
            names = info["features"][key].get("names") or []
            dim_name = names[dim] if dim < len(names) else str(dim)
            err(f"{key} has {int(bad.sum())} NaN/inf values (first: frame {frame}, {dim_name})")
    why = _object_rows_problem(values[ENV_STATE_KEY].reshape(n, MAX_OBJECTS + MAX_ZONES, OBJ_DIM), er.objects)
    if why:
        err(why)
    lang = table.column(LANGUAGE_KEY)
    first = lang[0].as_py() or []
    if any(lang[i].as_py() != first for i in range(1, n)):
        err(f"{LANGUAGE_KEY} differs between frames (it is the episode's list, the same on every frame)")
    else:
        why = _language_problem(first, er.steps, info["palme"]["control_hz"])
        if why:
            err(why)
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
            problems.append(Problem("error", f"frame {i} image: {why}", ep, rel, frame=i))
    return problems


def decode_checked(data: bytes | None, shape: tuple[int, ...]) -> tuple[np.ndarray | None, str]:
    """(H, W, 3) uint8 RGB of stored PNG bytes, or (None, why it is unusable). The PNG header's size is
    checked before decoding, so a header claiming a huge image is refused without allocating it."""
    if not data:
        return None, "missing (no PNG bytes)"
    if data[:8] != _PNG_SIGNATURE or len(data) < 24 or data[12:16] != b"IHDR":
        return None, "not a readable PNG image"
    w, h = struct.unpack(">II", data[16:24])
    if (h, w) != tuple(shape[:2]):
        return None, f"shape {(h, w, shape[2])}, expected {shape}"
    try:
        img = decode_png(data)
    except ValueError as e:
        return None, str(e)
    return (img, "") if img.shape == shape else (None, f"shape {img.shape}, expected {shape}")


def image_problem(cell: dict[str, Any] | None, shape: tuple[int, ...]) -> str | None:
    """Why a stored image cell is unusable, or None."""
    img, why = decode_checked((cell or {}).get("bytes"), shape)
    return None if img is not None else why


# ---------------------------------------------------------------------------------------------
# the whole folder


def _episode_files(root: Path, folder: str, chunks_size: int) -> dict[int, str]:
    """Episode index -> relative path of every chunk-CCC/file-FFF.parquet under `folder`."""
    out = {}
    for path in (root / folder).glob("chunk-*/file-*.parquet"):
        m = _FILE_RE.search(path.as_posix())
        if m:
            out[int(m.group(1)) * chunks_size + int(m.group(2))] = path.relative_to(root).as_posix()
    return out


Keep = Callable[[int, EpisodeRow, pa.Table], None]


def scan(root: str | Path, images: bool = True, keep: Keep | None = None) -> tuple[dict[str, Any], list[Problem]]:
    """Check the whole folder; `keep(ep, row, table)` receives every episode that has no error (in order).

    Returns (info, every problem found). Raises NotADatasetError (one line) when the folder has no
    readable info.json. Episode problems carry the episode index; folder problems have none.
    """
    root = Path(root)
    info = load_info(root)
    problems = link_problems(root) + check_info(info, root)
    if errors_of(problems):
        return info, problems
    total, chunks = info["total_episodes"], info["chunks_size"]
    tasks = None
    if total:
        tasks, found = read_tasks(root, info)
        problems += found + check_stats_file(root, info)
    files = {**_episode_files(root, "meta/episodes", chunks), **_episode_files(root, "data", chunks)}
    last = max(files, default=-1) + 1
    if total > last + MISSING_EPISODES_SCANNED:
        problems.append(Problem("error", f"total_episodes is {total}, but episode files stop at episode {last - 1}",
                                None, INFO_PATH))
        total = last
    frames, prev_to, seen, splits = 0, 0, {}, []
    for ep in range(total):
        er, found = check_episode_row(root, info, ep)
        problems += found
        if er is None:
            prev_to = None
            continue
        row = er.row
        frames += row["length"]
        splits.append(row["split"])
        rel = episodes_path(ep, chunks)
        if prev_to is not None and row["dataset_from_index"] != prev_to:
            problems.append(Problem("error", f"dataset_from_index is {row['dataset_from_index']}, expected {prev_to} "
                                    "(where the previous episode's frames end)", ep, rel))
        prev_to = row["dataset_to_index"]
        key = (row["task_name"], row["seed"])
        if key in seen:
            problems.append(Problem("error", f"same task and seed ({key[0]}, seed {key[1]}) as episode {seen[key]}: "
                                    "a scene is recorded once (a held-out twin would be trained on)", ep, rel))
            continue
        seen[key] = ep
        table, found = check_episode_data(root, info, ep, er, images=images, tasks=tasks)
        problems += found
        if table is not None and not any(p.level == "error" and p.episode == ep for p in problems) and keep:
            keep(ep, er, table)
    if not any(p.level == "error" and p.episode is not None for p in problems):
        if frames != info["total_frames"]:
            problems.append(Problem("error", f"episodes hold {frames} frames, info.json says {info['total_frames']}",
                                    None, INFO_PATH))
        if contiguous_splits(splits) != info["splits"]:
            problems.append(Problem("error", f"splits is {info['splits']!r:.80}, the episodes give "
                                    f"{contiguous_splits(splits)!r:.80}", None, INFO_PATH))
    problems += _leftovers(root, info["total_episodes"], chunks)
    return info, problems


def _leftovers(root: Path, total: int, chunks_size: int) -> list[Problem]:
    """Files past the committed episodes: an interrupted write (removed by the next append)."""
    out = []
    for folder in ("data", "meta/episodes"):
        for ep, rel in sorted(_episode_files(root, folder, chunks_size).items()):
            if ep >= total:
                out.append(Problem("warning", "uncommitted file of an interrupted write (ignored; the next "
                                   "append removes it)", ep, rel))
    return out
