"""Dataset checks of info.json and the meta files (see `checks`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from envs.catalogue import (
    MAX_OBJECTS,
    MAX_ZONES,
    OBJ_DIM,
    ROBOT_DIM,
    ROBOT_FIELDS,
)
from training.dataset.checks_core import (
    MAX_CONTROL_HZ,
    MAX_IMAGE_SIDE,
    NUMERIC_KEYS,
    REQUIRED_INFO,
    Problem,
    _bad_int,
    _is_int,
    _is_num,
    _num_list,
)
from training.dataset.checks_files import (
    read_parquet,
    read_plain_file,
)
from training.dataset.schema import (
    _SCALAR_TYPES,
    CODEBASE_VERSION,
    DATA_PATH,
    ENV_STATE_KEY,
    EPISODES_PATH,
    IMAGE_KEY,
    INDEX_KEYS,
    INFO_PATH,
    LEGACY_LANGUAGE_KEY,
    OBSERVED_STATE_KEY,
    PALME_COLUMNS,
    SCHEMA_VERSION,
    STAT_NAMES,
    STATE_KEY,
    STATS_PATH,
    TASKS_PATH,
    VIDEO_PATH,
    env_state_names,
    language_key,
    parse_json,
)

# ---------------------------------------------------------------------------------------------
# info.json


def _expected_features(info: dict[str, Any]) -> dict[str, tuple[str, list[int] | None, list[str] | None]]:
    """feature -> (dtype, shape or None = checked apart, names or None = free) that palme-train reads. The language
    column: JSON text (dtype string), or in a folder written before, LeRobot 0.6's `language_persistent` (language)."""
    scalar = [1]
    feats = info.get("features") if isinstance(info.get("features"), dict) else {}
    lang = language_key(feats)
    return {
        IMAGE_KEY: ("image", None, None),
        STATE_KEY: ("float32", [ROBOT_DIM], list(ROBOT_FIELDS)),
        ENV_STATE_KEY: ("float32", [(MAX_OBJECTS + MAX_ZONES) * OBJ_DIM], env_state_names()),
        "action": ("float32", None, None),
        "next.success": ("bool", scalar, None),
        "next.done": ("bool", scalar, None),
        "timestamp": ("float32", scalar, None),
        **{k: ("int64", scalar, None) for k in INDEX_KEYS},
        lang: ("language" if lang == LEGACY_LANGUAGE_KEY else "string", scalar, None),
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
    seen = feats.get(OBSERVED_STATE_KEY)  # optional: the planner's rows of an estimated or noisy state source
    if seen is not None and (seen["dtype"] != "float32" or seen["shape"] != [(MAX_OBJECTS + MAX_ZONES) * OBJ_DIM]
                             or seen.get("names") != env_state_names()):
        out.append(f"feature {OBSERVED_STATE_KEY!r} is {seen['dtype']} {seen['shape']}, expected {ENV_STATE_KEY!r}'s "
                   f"float32 [{(MAX_OBJECTS + MAX_ZONES) * OBJ_DIM}] with its names")
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
    from envs.push_blocks import BLOCK_SETS
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
    block_sets = palme.get("block_sets")
    if block_sets is not None and (not isinstance(block_sets, list) or not block_sets
                                   or not all(b in BLOCK_SETS for b in block_sets)):
        out.append(f"palme.block_sets is {block_sets!r:.80}, expected a non-empty list of block sets {list(BLOCK_SETS)}")
    ranges = palme.get("seed_ranges")
    expected = {"train": list(seed_range("train")), "test": list(seed_range("L1"))}
    if ranges is not None and ranges != expected:
        out.append(f"palme.seed_ranges is {ranges!r:.80}, expected {expected} (train and test seeds never meet)")
    planners = palme.get("planners")
    if planners is not None and (not isinstance(planners, list) or not planners
                                 or not all(isinstance(p, str) for p in planners)):
        out.append(f"palme.planners is {planners!r:.60}, expected a non-empty list of planner names")
    blank = palme.get("blank_frames")
    if blank is not None and not (isinstance(blank, list) and blank and all(isinstance(b, bool) for b in blank)):
        out.append(f"palme.blank_frames is {blank!r:.60}, expected a non-empty list of true/false (whether the "
                   "acting planner and perception saw a blank camera)")
    observed = palme.get("observed_state")
    if observed is not None and not (isinstance(observed, list) and observed and all(
            isinstance(o, dict) and isinstance(o.get("source"), str) for o in observed)):
        out.append(f"palme.observed_state is {observed!r:.60}, expected a non-empty list of {{source, ...}} objects")
    elif (observed is not None) != (OBSERVED_STATE_KEY in info["features"]):
        out.append(f"palme.observed_state and the feature {OBSERVED_STATE_KEY!r} come together (the state source of "
                   "the observed rows), but only one is there")
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
