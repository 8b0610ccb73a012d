"""Dataset checks of one episode: its metadata row and its data file (see `checks`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from envs.catalogue import (
    COLOR_NAMES,
    MAX_OBJECTS,
    MAX_ZONES,
    OBJ_DIM,
    SHAPE_NAMES,
    SIZE_EDGES,
    ObjectDesc,
)
from envs.vocab import SkillCall, object_names, world_skills
from training.dataset.checks_core import (
    _HEX64,
    FAILURE_KINDS,
    MAX_T,
    NUMERIC_KEYS,
    OBJECT_KEYS,
    SIZE_TOL,
    STEP_KEYS,
    Problem,
    _finite_floats,
    _is_int,
    _is_num,
    _num_list,
    one_line,
)
from training.dataset.checks_files import (
    check_images,
    read_parquet,
)
from training.dataset.episode import STYLE_ORDER, memory_text, read_language
from training.dataset.schema import (
    ENV_STATE_KEY,
    INDEX_KEYS,
    LANGUAGE_KEY,
    OBSERVED_STATE_KEY,
    STAT_NAMES,
    arrow_schema,
    chunk_file,
    data_path,
    episode_schema,
    episodes_path,
    language_key,
    parse_json,
    stats_keys,
)

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
    language: list[dict[str, Any]] = field(default_factory=list)  # the language rows, set by check_episode_data


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


def _language_problem(lang: list[dict[str, Any]], steps: list[dict[str, Any]], hz: int,
                      key: str = LANGUAGE_KEY) -> str | None:
    """Why the language rows (of column `key`) disagree with plan_steps (subtask at each start, memory with the
    result at each end)."""
    if any(r is None or r.get("style") not in STYLE_ORDER or not isinstance(r.get("content"), str)
           or not _is_num(r.get("timestamp")) for r in lang):
        return f"{key} has a row without a known style ({list(STYLE_ORDER)}), a content or a finite timestamp"
    if not any(r["style"] == "plan" for r in lang):
        return f"{key} has no plan row"

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
        return (f"plan_steps disagree with the {key} rows (subtask/memory row {first}: stored "
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
    seen = (OBSERVED_STATE_KEY,) if OBSERVED_STATE_KEY in info["features"] else ()  # optional: estimated rows
    for key in (*NUMERIC_KEYS, *seen):
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
    if seen:  # estimates need not match the objects (missed, misread), but each row is present or absent
        present = values[OBSERVED_STATE_KEY].reshape(n, MAX_OBJECTS + MAX_ZONES, OBJ_DIM)[:, :, -1]
        if not np.all((present == 0) | (present == 1)):
            err(f"{OBSERVED_STATE_KEY} has a present column other than 0 or 1")
    lang_key = language_key(info["features"])  # JSON text, or LeRobot 0.6's row structs in folders written before
    lang, why = read_language(table.column(lang_key), lang_key)
    if lang is None:
        err(why)
    else:
        why = _language_problem(lang, er.steps, info["palme"]["control_hz"], lang_key)
        if why:
            err(why)
        else:
            er.language = lang
    if images:
        problems += check_images(table, info, ep, rel)
    return table, problems
