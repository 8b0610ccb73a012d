"""benchmarks/phrasing_gap.py's table: paired grammar vs new phrasing per task, and new phrasings alone."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from phrasing_gap import table


def _row(task, grammar, new):
    row = {"task": task, "seed": 0}
    if grammar is not None:
        row["grammar"] = grammar
    row["new"] = new
    return row


def test_the_gap_is_paired_on_seeds_both_phrasings_ran_and_unsayable_seeds_are_counted():
    rows = [_row("stack", 1, 1), _row("stack", 1, 0), _row("stack", 0, None), _row("grasp", 1, 1)]
    lines = table(rows).splitlines()
    stack = next(line for line in lines if line.startswith("| stack "))
    assert "100.0% [34.2, 100.0] of 2" in stack and " 50.0% [9.5, 90.5] of 2" in stack
    assert "| -50.0 | 1 |" in stack
    assert lines[-1].startswith("| all ") and "| -33.3 | 1 |" in lines[-1]


def test_new_phrasings_alone_leave_the_grammar_column_empty():
    rows = [{"task": "grasp", "seed": s, "new": s % 2} for s in range(4)]
    grasp = table(rows).splitlines()[2]
    assert grasp.startswith("| grasp | - |  50.0% [15.0, 85.0] of 4 | - | 0 |")
