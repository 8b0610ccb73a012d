"""`validate(root)`: the full report behind `palme-dataset validate`."""

from __future__ import annotations

from pathlib import Path

from training.dataset.checks import Problem, check_episode_data, check_episode_row, check_meta_files
from training.dataset.schema import (
    CODEBASE_VERSION,
    INFO_PATH,
    SCHEMA_VERSION,
    arrow_schema,
    load_info,
)

REQUIRED_INFO = ("codebase_version", "fps", "features", "total_episodes", "total_frames", "total_tasks",
                 "chunks_size", "data_path", "robot_type", "splits")


def validate(root: str | Path, images: bool = True) -> list[Problem]:
    """Every problem found in the folder (NotADatasetError when it is not a dataset at all)."""
    root = Path(root)
    info = load_info(root)
    problems: list[Problem] = []
    if info.get("codebase_version") != CODEBASE_VERSION:
        problems.append(Problem("error", f"codebase_version {info.get('codebase_version')!r}, expected {CODEBASE_VERSION!r}", None, INFO_PATH))
    found = (info.get("palme") or {}).get("schema_version")
    if found != SCHEMA_VERSION:
        problems.append(Problem("error", f"palme schema_version {found!r}, expected {SCHEMA_VERSION}", None, INFO_PATH))
    missing = [k for k in REQUIRED_INFO if k not in info]
    if missing:
        problems.append(Problem("error", f"info.json lacks {missing}", None, INFO_PATH))
    if problems:
        return problems
    try:
        arrow_schema(info["features"])
    except (KeyError, TypeError, ValueError) as e:
        return [Problem("error", f"features are malformed ({e})", None, INFO_PATH)]
    total = int(info["total_episodes"])
    if total:
        problems += check_meta_files(root, info)
    frames = 0
    for ep in range(total):
        row, found_problems = check_episode_row(root, info, ep)
        problems += found_problems
        if row is None:
            continue
        frames += int(row["length"])
        _, found_problems = check_episode_data(root, info, ep, row, images=images)
        problems += found_problems
    if frames != int(info["total_frames"]) and not any(p.level == "error" and p.episode is not None for p in problems):
        problems.append(Problem("error", f"episodes hold {frames} frames, info.json says {info['total_frames']}", None, INFO_PATH))
    problems += _leftovers(root, total, int(info["chunks_size"]))
    return problems


def _leftovers(root: Path, total: int, chunks_size: int) -> list[Problem]:
    """Files past the committed episodes: an interrupted write (removed by the next append)."""
    out = []
    for folder in ("data", "meta/episodes"):
        for path in sorted((root / folder).glob("chunk-*/file-*.parquet")):
            chunk, file = int(path.parent.name.split("-")[1]), int(path.stem.split("-")[1])
            ep = chunk * chunks_size + file
            if ep >= total:
                out.append(Problem("warning", "uncommitted file of an interrupted write (ignored; the next "
                                   "append removes it)", ep, path.relative_to(root).as_posix()))
    return out

