"""An episode in memory (`EpisodeData`) and its encoding into one data-file table (`encode_episode`).

Encoding (PNG compression, per-episode statistics) is the costly part of writing, so it is a
pure function that collection runs in the worker processes; the parent only assigns the global
indices (episode, frame, task) and writes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from agent.prompts import render_whole_plan
from envs.catalogue import MAX_ZONES, OBJ_DIM
from training.dataset.schema import (
    ENV_STATE_KEY,
    IMAGE_KEY,
    LANGUAGE_KEY,
    LANGUAGE_ROW_TYPE,
    LEGACY_LANGUAGE_KEY,
    OBSERVED_STATE_KEY,
    STATE_KEY,
    arrow_schema,
    language_key,
    parse_json,
)


@dataclass
class Frame:
    """One recorded frame: the state at control step `t` and the action taken from it."""

    t: int  # control steps since reset
    rgb: np.ndarray  # (H, W, 3) uint8
    robot: np.ndarray  # (ROBOT_DIM,) float32
    objects: np.ndarray  # (MAX_OBJECTS, OBJ_DIM) float32
    zones: np.ndarray | None = None  # (MAX_ZONES, OBJ_DIM) float32; None: the world has no zones (stored as zeros)
    # The rows the planner saw when a state source other than the simulator's gave them (objects, zones above are
    # then the simulator's): (MAX_OBJECTS, OBJ_DIM) and (MAX_ZONES, OBJ_DIM) float32; None with privileged state.
    observed_objects: np.ndarray | None = None
    observed_zones: np.ndarray | None = None
    action: np.ndarray | None = None  # the next control action after this frame (None: none followed)
    success: bool = False  # whether the task's goal held at this frame


@dataclass
class PlanStep:
    """One executed plan step: its text, when it ran (control steps) and how it ended."""

    text: str
    start_t: int
    end_t: int
    success: bool
    reason: str
    call: dict[str, Any] | None = None  # the SkillCall as a dict, when the text parsed
    label: str | None = None  # the oracle's step at this decision when another planner acted ("" = none); None: oracle acted


@dataclass
class EpisodeData:
    """Everything collection records about one episode, before encoding."""

    world: str
    task: str  # task name in the registry (e.g. "stack")
    seed: int
    split: str
    instruction: str
    control_hz: int
    frames: list[Frame]
    steps: list[PlanStep]
    plans: list[tuple[int, list[str]]]  # (control step, whole plan incl. "done") at the start and after each replan
    success: bool
    failure: str | None = None
    reason: str = ""
    objects: list[dict[str, Any]] = field(default_factory=list)  # ObjectDesc fields per slot
    names: list[str] = field(default_factory=list)  # object names as the plan language uses them
    wall_s: float = 0.0

    def timestamp(self, t: int) -> float:
        """Seconds since the episode start for control step t (float32 precision, as stored)."""
        return float(np.float32(t / self.control_hz))


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 RGB frame."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError(f"could not PNG-encode a frame of shape {rgb.shape}")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 RGB from PNG bytes; ValueError when the bytes are not a readable image."""
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if arr is None:
        raise ValueError("not a readable PNG image")
    return arr[:, :, ::-1].copy()


STYLE_ORDER: tuple[str, ...] = ("memory", "plan", "subtask")  # order of language rows at one instant


def memory_text(text: str, success: bool, reason: str) -> str:
    """Content of a step's `memory` row: "<step>. Result: ok." or "<step>. Result: failed: <reason>."."""
    result = "ok" if success else f"failed: {reason.strip().rstrip('.')}"
    return f"{text}. Result: {result}."


def language_rows(ep: EpisodeData) -> list[dict[str, Any]]:
    """LeRobot `language_persistent` rows: `plan` at the start and after replans, `subtask` per step
    (timestamp = start), `memory` per step end (timestamp = end, content = step and its result)."""
    rows: list[dict[str, Any]] = []

    def row(content: str, style: str, t: int) -> dict[str, Any]:
        return {"role": "assistant", "content": content, "style": style, "timestamp": ep.timestamp(t),
                "camera": None, "tool_calls": None}

    for t, plan in ep.plans:
        rows.append(row(render_whole_plan(plan), "plan", t))
    for s in ep.steps:
        rows.append(row(s.text, "subtask", s.start_t))
        rows.append(row(memory_text(s.text, s.success, s.reason), "memory", s.end_t))
    # at one instant: the previous step's result, then a replanned plan, then the next step
    rows.sort(key=lambda r: (r["timestamp"], STYLE_ORDER.index(r["style"])))
    return rows


LANGUAGE_ROW_FIELDS: tuple[str, ...] = tuple(f.name for f in LANGUAGE_ROW_TYPE)  # role, content, style, timestamp, ...


def language_text(rows: list[dict[str, Any]]) -> str:
    """The LANGUAGE_KEY value of every frame: the rows as compact JSON (fields in LANGUAGE_ROW_FIELDS order)."""
    return json.dumps([{k: r[k] for k in LANGUAGE_ROW_FIELDS} for r in rows], separators=(",", ":"))


def parse_language_text(text: str) -> list[dict[str, Any]]:
    """Rows from a LANGUAGE_KEY value (untrusted text): a JSON list of objects with exactly the LANGUAGE_ROW_FIELDS,
    `role`/`content`/`style` strings, `timestamp` a finite number (s, returned as float), `camera` a string or null,
    `tool_calls` a list of strings or null. Returns them as LEGACY_LANGUAGE_KEY's rows read back (same fields,
    same order); ValueError (one line) saying what is wrong otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"is {text!r:.40}, expected JSON text")  # noqa: TRY004 - bad file content is a ValueError
    try:
        rows = parse_json(text)
    except ValueError as err:
        raise ValueError(f"is not valid JSON ({err})") from err
    if not isinstance(rows, list):
        raise ValueError(f"is {type(rows).__name__}, expected a JSON list of rows")  # noqa: TRY004 - as above
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or sorted(r) != sorted(LANGUAGE_ROW_FIELDS):
            raise ValueError(f"row {i} is {r!r:.80}, expected an object with the keys {list(LANGUAGE_ROW_FIELDS)}")
        ts = r["timestamp"]
        if (not all(isinstance(r[k], str) for k in ("role", "content", "style"))
                or not isinstance(ts, int | float) or isinstance(ts, bool) or not math.isfinite(ts)
                or not (r["camera"] is None or isinstance(r["camera"], str))
                or not (r["tool_calls"] is None or (isinstance(r["tool_calls"], list)
                                                    and all(isinstance(c, str) for c in r["tool_calls"])))):
            raise ValueError(f"row {i} is {r!r:.80}, expected role/content/style strings, a finite timestamp, "
                             "camera a string or null, tool_calls a list of strings or null")
        out.append({k: float(ts) if k == "timestamp" else r[k] for k in LANGUAGE_ROW_FIELDS})
    return out


def language_column(rows: list[dict[str, Any]], n: int, key: str) -> pa.Array:
    """The language column of an n-frame episode (the same rows on every frame): JSON text for LANGUAGE_KEY,
    a list of row structs for LEGACY_LANGUAGE_KEY."""
    if key == LEGACY_LANGUAGE_KEY:
        return pa.array([rows] * n, type=pa.list_(LANGUAGE_ROW_TYPE))
    return pa.array([language_text(rows)] * n, type=pa.string())


def read_language(column: pa.ChunkedArray, key: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    """(rows, None) from an episode's language column `key` (in either form), or (None, why not, one line):
    every frame must hold the same rows, and JSON text must parse (`parse_language_text`); the rows' content is
    checked against plan_steps by `checks_episode._language_problem`. An empty column gives []."""
    if len(column) == 0:
        return [], None
    if key == LEGACY_LANGUAGE_KEY:
        first = column[0].as_py() or []
        if any(column[i].as_py() != first for i in range(1, len(column))):
            return None, f"{key} differs between frames (it is the episode's list, the same on every frame)"
        return first, None
    values = column.unique()
    if len(values) != 1:
        return None, f"{key} differs between frames (it is the episode's list, the same on every frame)"
    try:
        return parse_language_text(values[0].as_py()), None
    except ValueError as err:
        return None, f"{key} {err}"


def with_language_form(table: pa.Table, features: dict[str, dict[str, Any]]) -> pa.Table:
    """`table` with its language column in the form `features` declare (`language_key`), converted from the
    other form when needed (appending new episodes to a folder written before keeps that folder's form).
    ValueError when the column it has cannot be read (`read_language`)."""
    want = language_key(features)
    have = LANGUAGE_KEY if LANGUAGE_KEY in table.column_names else LEGACY_LANGUAGE_KEY
    if want == have or have not in table.column_names:
        return table
    rows, why = read_language(table.column(have), have)
    if rows is None:
        raise ValueError(why)
    col = language_column(rows, table.num_rows, want)
    return table.set_column(table.schema.get_field_index(have), pa.field(want, col.type), col)


def _vector_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    x = x.astype(np.float64).reshape(len(x), -1)
    return {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0), "count": np.array([len(x)])}


def _image_stats(frames: list[Frame]) -> dict[str, np.ndarray]:
    """Per-channel stats in [0, 1] (LeRobot's image convention), on a 4x subsample to stay cheap."""
    px = np.stack([f.rgb[::4, ::4] for f in frames]).reshape(-1, 3).astype(np.float64) / 255.0
    s = _vector_stats(px)
    s["count"] = np.array([len(frames)])
    return s


@dataclass
class EncodedEpisode:
    """An episode as a data-file table (global indices still zero) with its metadata and statistics."""

    table: pa.Table
    meta: dict[str, Any]  # our per-episode columns (task_name, seed, success, ...)
    stats: dict[str, dict[str, np.ndarray]]  # per-feature stats of this episode (index columns filled later)
    instruction: str


def encode_episode(ep: EpisodeData, features: dict[str, dict[str, Any]]) -> EncodedEpisode:
    """PNG-compress the frames and build the data-file table of one episode."""
    if not ep.frames:
        raise ValueError(f"episode (task={ep.task!r}, seed={ep.seed}) has no frames")
    n = len(ep.frames)
    action_dim = int(features["action"]["shape"][0])
    actions = np.stack([f.action if f.action is not None else np.zeros(action_dim, np.float32) for f in ep.frames])
    robot = np.stack([f.robot for f in ep.frames]).astype(np.float32)
    no_zones = np.zeros(MAX_ZONES * OBJ_DIM, np.float32)
    env_state = np.stack([  # object rows, then zone rows (schema.env_state_names)
        np.concatenate([f.objects.reshape(-1), no_zones if f.zones is None else f.zones.reshape(-1)]) for f in ep.frames
    ]).astype(np.float32)
    observed = OBSERVED_STATE_KEY in features
    if observed:
        if any(f.observed_objects is None for f in ep.frames):
            raise ValueError(f"episode (task={ep.task!r}, seed={ep.seed}): the dataset records the planner's observed "
                             f"rows ({OBSERVED_STATE_KEY}), but a frame has none")
        seen = np.stack([
            np.concatenate([f.observed_objects.reshape(-1),
                            no_zones if f.observed_zones is None else f.observed_zones.reshape(-1)]) for f in ep.frames
        ]).astype(np.float32)
    lang = language_rows(ep)
    columns: dict[str, Any] = {
        IMAGE_KEY: [{"bytes": encode_png(f.rgb), "path": None} for f in ep.frames],
        STATE_KEY: robot.tolist(),
        ENV_STATE_KEY: env_state.tolist(),
        **({OBSERVED_STATE_KEY: seen.tolist()} if observed else {}),
        "action": actions.astype(np.float32).tolist(),
        "next.success": [bool(f.success) for f in ep.frames],
        "next.done": [i == n - 1 for i in range(n)],
        "timestamp": np.array([ep.timestamp(f.t) for f in ep.frames], np.float32),
        "frame_index": np.arange(n, dtype=np.int64),
        "episode_index": np.zeros(n, np.int64),
        "index": np.zeros(n, np.int64),
        "task_index": np.zeros(n, np.int64),
    }
    lang_key = language_key(features)
    schema = arrow_schema(features)
    arrays = [language_column(lang, n, k) if k == lang_key else pa.array(columns[k], type=schema.field(k).type)
              for k in schema.names]
    table = pa.Table.from_arrays(arrays, schema=schema)
    stats = {
        IMAGE_KEY: _image_stats(ep.frames),
        STATE_KEY: _vector_stats(robot),
        ENV_STATE_KEY: _vector_stats(env_state),
        **({OBSERVED_STATE_KEY: _vector_stats(seen)} if observed else {}),
        "action": _vector_stats(actions),
        "next.success": _vector_stats(np.array(columns["next.success"], np.float64)[:, None]),
        "timestamp": _vector_stats(columns["timestamp"][:, None]),
        "frame_index": _vector_stats(columns["frame_index"][:, None]),
    }
    meta = {
        "task_name": ep.task, "seed": int(ep.seed), "split": ep.split, "success": bool(ep.success),
        "failure": ep.failure, "reason": ep.reason, "instruction": ep.instruction,
        "n_steps": len(ep.steps), "control_steps": int(ep.frames[-1].t),
        "objects": json.dumps(ep.objects), "names": json.dumps(ep.names),
        "plan_steps": json.dumps([asdict(s) for s in ep.steps]),
        "frame_t": json.dumps([int(f.t) for f in ep.frames]), "wall_s": float(ep.wall_s),
    }
    return EncodedEpisode(table=table, meta=meta, stats=stats, instruction=ep.instruction)
