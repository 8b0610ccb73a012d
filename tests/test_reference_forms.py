"""benchmarks/reference_forms.py: closed-loop success split by how the instruction names its blocks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from reference_forms import by_class, main, reference_class


def test_an_instruction_is_classed_by_its_hardest_block_name():
    assert reference_class("slide the pentagon close to the red star") == "shape only"
    assert reference_class("Put the red block next to the blue moon!") == "colour only"
    assert reference_class("push the red one next to the green cube") == "colour only"
    assert reference_class("move the yellow moon to the top left corner") == "colour and shape"
    assert reference_class("push the block closest to the top left corner to the other block of its color") is None


def test_success_is_counted_per_class_and_task(tmp_path, capsys):
    episodes = [
        {"task": "block2block", "instruction": "slide the pentagon close to the red star", "success": False},
        {"task": "block2block", "instruction": "push the star next to the moon", "success": True},
        {"task": "block2block", "instruction": "push the red star next to the blue moon", "success": True},
        {"task": "separate", "instruction": "separate the red block from the blue moon", "success": True},
        {"task": "side_together", "instruction": "gather the blocks on the left side", "success": False},
    ]
    assert by_class(episodes) == {"shape only": (1, 2), "colour only": (1, 1), "colour and shape": (1, 1)}
    assert by_class(episodes, {"separate"}) == {"shape only": (0, 0), "colour only": (1, 1), "colour and shape": (0, 0)}
    path = tmp_path / "episodes.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in episodes))
    assert main([str(path)]) == 0
    assert "shape only           1/2     50.0%" in capsys.readouterr().out


def test_a_file_that_is_not_an_episodes_log_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "episodes.jsonl"
    bad.write_text("not json\n")
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected a palme-eval episodes.jsonl" in err
