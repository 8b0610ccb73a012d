"""benchmarks/state_vs_image.py (PaLM-E Table 1 at small scale): its rows, mixtures, cells and refusals, without
training anything (the command itself is smoke-run by hand: it trains and evaluates 16 models)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import state_vs_image as svi

from agent.eval_metrics import wilson_interval

RECIPE = ["image", "object", "instruction", "robot"]


def test_rows_drop_one_token_type_and_no_vqa_keeps_only_the_planning_weights():
    assert {k: svi.tokens_of(r, RECIPE) for k, r in svi.ROWS.items()} == {
        "privileged": ["object", "instruction", "robot"], "estimated": ["object", "instruction", "robot"],
        "image": ["image", "instruction", "robot"], "estimated+image": RECIPE}
    assert [svi.ROWS[k].data_state for k in svi.ROWS] == ["privileged", "observed", "privileged", "observed"]
    with pytest.raises(ValueError, match="needs \\['image'\\]"):
        svi.tokens_of(svi.ROWS["image"], ["object", "robot"])
    weights = {"plan": 0.6, "plan_full": 0.03, "vqa_color": 0.03, "success": 0.1, "goal": 0.06}
    assert svi.plan_only(weights) == {"plan": 0.6, "plan_full": 0.03, "vqa_color": 0.0, "success": 0.0, "goal": 0.0}


def test_a_cell_pools_the_seeds_and_shows_each():
    lo, hi = wilson_interval(3, 4)
    assert svi.cell([[True, False], [True, True]]) == f"75.0 [{100 * lo:.1f}, {100 * hi:.1f}] (50, 100)"
    assert svi.cell([]) == "-"


@pytest.mark.parametrize("argv, says", [
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--rows", "state"], "unknown --rows ['state']"),
    (["--seeds", "1", "1"], "--seeds repeats a seed"),
    (["--episodes", "many"], "argument --episodes: invalid int value"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as out:
        svi.main([*argv, "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert out.value.code == 2 and err.startswith("state_vs_image.py: error: ") and says in err
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_bad_tasks_and_folders_are_one_line_and_exit_2(tmp_path, capsys):
    for argv, says in ((["--tasks", "juggle"], "unknown --tasks ['juggle']"),
                       (["--data", str(tmp_path / "none")], "not a dataset")):
        assert svi.main([*argv, "--run-dir", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("state_vs_image.py: error: ") and says in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()
