"""Closed-loop success by how the instruction names its blocks: a shape alone ("the pentagon"), a colour alone ("the red
block"), or both ("the red pentagon"), from a palme-eval run's episodes.jsonl (no simulator, no model).

Language-Table names a block by its colour when no other block has it, by its shape when no other block has it, and
always by both (`envs.push_blocks.block_synonyms`); the push world's grammar says any of them. A planner that binds
only colour words to its object tokens fails the instructions whose blocks are named by shape alone, which a success
rate over all instructions hides. Each episode is put in the class of the hardest name it holds: "shape only" if
any block is named by its shape alone, else "colour only" if any by its colour alone, else "colour and shape";
episodes whose instruction names no block by colour or shape (a corner, a side, "every block") are left out.

    python benchmarks/reference_forms.py outputs/eval/episodes.jsonl [more.jsonl ...] [--tasks block2block ...]

Prints, per run, success per class with its 95% Wilson interval (agent.eval_metrics.wilson_interval).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.eval_metrics import wilson_interval
from envs.catalogue import COLOR_NAMES, SHAPE_NAMES

GENERIC = ("block", "one")  # nouns that name no shape ("the red block", "the red one")
CLASSES = ("shape only", "colour only", "colour and shape")
_COLORS, _NOUNS = "|".join(COLOR_NAMES), "|".join((*SHAPE_NAMES, *GENERIC))
_NAME = re.compile(rf"\b(?:({_COLORS}) )?({_NOUNS})\b")


def reference_class(instruction: str) -> str | None:
    """The class of the hardest block name in `instruction` (see the module docstring), None if it names none."""
    forms = set()
    for m in _NAME.finditer(instruction.lower()):
        color, noun = m.group(1), m.group(2)
        if noun in GENERIC:
            if color:
                forms.add("colour only")
        else:
            forms.add("colour and shape" if color else "shape only")
    return next((c for c in CLASSES if c in forms), None)


def by_class(episodes: Iterable[dict], tasks: set[str] | None = None) -> dict[str, tuple[int, int]]:
    """{class: (successes, episodes)} over the episodes of `tasks` (all when None) whose instruction names a block."""
    out = {c: [0, 0] for c in CLASSES}
    for e in episodes:
        if tasks and e.get("task") not in tasks:
            continue
        c = reference_class(e.get("instruction") or "")
        if c is not None:
            out[c][0] += bool(e.get("success"))
            out[c][1] += 1
    return {c: (k, n) for c, (k, n) in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("episodes", nargs="+", help="episodes.jsonl files of palme-eval runs")
    p.add_argument("--tasks", nargs="+", help="only these tasks (default: every task with a named block)")
    args = p.parse_args(argv)
    for path in args.episodes:
        try:
            with open(path) as f:
                episodes = [json.loads(line) for line in f if line.strip()]
        except (OSError, json.JSONDecodeError) as err:
            print(f"reference_forms: expected a palme-eval episodes.jsonl, could not read {path}: {err}", file=sys.stderr)
            return 2
        print(path)
        for c, (k, n) in by_class(episodes, set(args.tasks) if args.tasks else None).items():
            if n:
                lo, hi = wilson_interval(k, n)
                print(f"  {c:17s} {k:4d}/{n:<4d} {100 * k / n:5.1f}%  [{100 * lo:.1f}, {100 * hi:.1f}]")
            else:
                print(f"  {c:17s}    0/0")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
