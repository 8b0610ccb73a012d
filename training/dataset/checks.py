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

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from training.dataset.checks_core import (
    _FILE_RE,
    _HEX64,
    _PNG_SIGNATURE,
    FAILURE_KINDS,
    MAX_CONTROL_HZ,
    MAX_IMAGE_SIDE,
    MAX_T,
    MISSING_EPISODES_SCANNED,
    NUMERIC_KEYS,
    OBJECT_KEYS,
    REQUIRED_INFO,
    SIZE_TOL,
    STEP_KEYS,
    DatasetError,
    Problem,
    _bad_int,
    _finite_floats,
    _is_int,
    _is_num,
    _num_list,
    errors_of,
    one_line,
    summarize,
)
from training.dataset.checks_episode import (
    EpisodeRow,
    _call_problem,
    _frame_t_problem,
    _json_column,
    _language_problem,
    _names_problem,
    _object_rows_problem,
    _objects_problem,
    _stats_problems,
    _steps_problem,
    check_episode_data,
    check_episode_row,
)
from training.dataset.checks_files import (
    MAX_LISTED_LINKS,
    _kind_of,
    check_images,
    decode_checked,
    image_problem,
    link_problems,
    read_parquet,
    read_plain_file,
)
from training.dataset.checks_info import (
    _expected_features,
    _feature_problems,
    _palme_problems,
    check_info,
    check_stats_file,
    not_palme_message,
    read_tasks,
)
from training.dataset.schema import (
    INFO_PATH,
    contiguous_splits,
    episodes_path,
    load_info,
)

__all__ = [
    "FAILURE_KINDS",
    "MAX_CONTROL_HZ",
    "MAX_IMAGE_SIDE",
    "MAX_LISTED_LINKS",
    "MAX_T",
    "MISSING_EPISODES_SCANNED",
    "NUMERIC_KEYS",
    "OBJECT_KEYS",
    "REQUIRED_INFO",
    "SIZE_TOL",
    "STEP_KEYS",
    "_FILE_RE",
    "_HEX64",
    "_PNG_SIGNATURE",
    "DatasetError",
    "EpisodeRow",
    "Keep",
    "Problem",
    "_bad_int",
    "_call_problem",
    "_expected_features",
    "_feature_problems",
    "_finite_floats",
    "_frame_t_problem",
    "_is_int",
    "_is_num",
    "_json_column",
    "_kind_of",
    "_language_problem",
    "_names_problem",
    "_num_list",
    "_object_rows_problem",
    "_objects_problem",
    "_palme_problems",
    "_stats_problems",
    "_steps_problem",
    "check_episode_data",
    "check_episode_row",
    "check_images",
    "check_info",
    "check_stats_file",
    "decode_checked",
    "errors_of",
    "image_problem",
    "link_problems",
    "not_palme_message",
    "one_line",
    "read_parquet",
    "read_plain_file",
    "read_tasks",
    "scan",
    "summarize",
]


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
