"""`palme-dataset info|validate|render DIR`: inspect, check and watch demonstration logs.

Every error (not a dataset, a folder that fails validation, a bad argument) is one line on stderr,
`palme-dataset: error: <message>`, and exit status 2; `validate` prints its full report on stdout first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from envs.video import caption, write_video
from training.dataset.checks import errors_of, scan, summarize
from training.dataset.reader import LogDataset

PROG = "palme-dataset"


def _size_mb(root: Path) -> float:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20


def cmd_info(root: Path) -> int:
    """Print episodes, frames, tasks, success ratio and size."""
    ds = LogDataset(root, on_error="skip")
    info = ds.info
    n = len(ds.episodes)
    ok = sum(e.success for e in ds.episodes)
    palme = info.get("palme", {})
    by_task: dict[str, int] = {}
    for e in ds.episodes:
        by_task[e.task_name] = by_task.get(e.task_name, 0) + 1
    size = _size_mb(root)
    print(f"dataset      {root}")
    print(f"format       LeRobotDataset {info['codebase_version']} (palme schema {palme.get('schema_version')})")
    print(f"world        {palme.get('world')}  robot {info.get('robot_type')}  fps {info['fps']}")
    print(f"episodes     {info['total_episodes']}" + (f" ({len(ds.skipped)} invalid: run validate)" if ds.skipped else ""))
    print(f"frames       {info['total_frames']}")
    print(f"tasks        {info['total_tasks']} instructions; episodes per task: "
          + ", ".join(f"{k} {v}" for k, v in sorted(by_task.items())))
    print(f"success      {ok}/{n}" + (f" ({100 * ok / n:.1f}%)" if n else ""))
    failures: dict[str, int] = {}
    for e in ds.episodes:
        if not e.success:
            failures[e.failure or "unknown"] = failures.get(e.failure or "unknown", 0) + 1
    if failures:
        print("failures     " + ", ".join(f"{k} {v}" for k, v in sorted(failures.items())))
    print(f"splits       {info.get('splits')}  seed ranges {palme.get('seed_ranges')}")
    print(f"size         {size:.1f} MB" + (f" ({size / n:.2f} MB per episode)" if n else ""))
    return 0


class ValidationFailed(ValueError):
    """The folder has errors (the report is on stdout; the message is its one-line summary)."""


def cmd_validate(root: Path, images: bool) -> int:
    """Print every problem on stdout; ValidationFailed (exit 2) when any is an error."""
    info, problems = scan(root, images=images)
    errors = errors_of(problems)
    for p in problems:
        print(p)
    if errors:
        bad = sorted({p.episode for p in errors if p.episode is not None})
        print(f"INVALID: {len(errors)} error(s)" + (f" in episode(s) {bad}" if bad else ""))
        raise ValidationFailed(f"{root} failed validation: {summarize(problems)}")
    print(f"OK: {info['total_episodes']} episodes, {info['total_frames']} frames"
          + (f", {len(problems)} warning(s)" if problems else ""))
    return 0


def cmd_render(root: Path, episode: int, out: Path | None, fps: int | None, scale: int = 2) -> int:
    """Write an mp4 of one episode with the plan step active at each frame written on it."""
    ds = LogDataset(root, on_error="skip")
    pos = next((k for k, e in enumerate(ds.episodes) if e.index == episode), None)
    if pos is None:
        raise ValueError(f"episode {episode} is not a readable episode of {root} (0..{ds.info['total_episodes'] - 1})")
    ep = ds.episodes[pos]
    frames = []
    for i, t in enumerate(ep.frame_t):
        active = [s for s in ep.steps if s["start_t"] <= t]
        text = f"{len(active)}. {active[-1]['text']}" if active else ep.instruction
        img = ds.image(pos, i)
        if scale > 1:  # upscale so the caption is readable
            img = cv2.resize(img, (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
        frames.append(caption(img, text))
    out = out or Path("outputs") / "renders" / f"{root.name}_episode_{episode:06d}.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_video(out, frames, fps or ds.fps)
    print(f"wrote {out} ({len(frames)} frames, {'success' if ep.success else 'failure'}: {ep.instruction})")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line too (`palme-dataset: error: ...`, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{PROG}: error: {' '.join(message.split())} (see {PROG} --help)\n")


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (0 OK, 2 any error, reported on one stderr line)."""
    parser = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    sub.add_parser("info", help="episodes, frames, tasks, success, size").add_argument("dir", type=Path)
    v = sub.add_parser("validate", help="check every file; exit 2 on any error")
    v.add_argument("dir", type=Path)
    v.add_argument("--no-images", action="store_true", help="skip decoding every PNG (faster)")
    r = sub.add_parser("render", help="mp4 of an episode with the plan step on the frames")
    r.add_argument("dir", type=Path)
    r.add_argument("--episode", type=int, required=True)
    r.add_argument("--out", type=Path, default=None)
    r.add_argument("--fps", type=int, default=None)
    r.add_argument("--scale", type=int, default=2, help="upscale frames by this factor (readable captions)")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "info":
            return cmd_info(args.dir)
        if args.cmd == "validate":
            return cmd_validate(args.dir, images=not args.no_images)
        if args.scale < 1:
            raise ValueError(f"--scale must be >= 1, got {args.scale}")
        return cmd_render(args.dir, args.episode, args.out, args.fps, args.scale)
    except ValueError as err:  # NotADatasetError, DatasetError, ValidationFailed, bad arguments: user errors
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except OSError as err:  # e.g. --out not writable
        print(f"{PROG}: error: {err.filename or ''}: {err.strerror or err}".replace(": : ", ": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
