"""benchmarks/push_demo_curve.py (PaLM-E Table 2 at small scale): what a user of the one command relies on.

The demos of a smaller count are a prefix of those of a larger one, on training seeds, and a fine-tune on N
trains on exactly the first N; a bad argument is one line with exit status 2, before any work; the table puts
the right numbers, intervals and demo counts in the right rows. The whole pipeline (fine-tunes, evaluations)
is too slow for the suite: run it with --steps 5 --episodes 2 --counts 2 4 --tasks T1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import push_demo_curve as pdc

from envs.tasks.base import TEST_SEED_START


def test_demos_are_nested_training_seed_prefixes_and_a_fine_tune_trains_on_exactly_the_first_n(tmp_path):
    from agent.prompts import PromptBuilder
    from training.data import load_data
    from training.train import compose_config

    folder, start = tmp_path / "demos", 500_000
    first = pdc.ensure_demos(folder, "corner_to_same_color", 2, start, 32, log=lambda *_: None)
    grown = pdc.ensure_demos(folder, "corner_to_same_color", 3, start, 32, log=lambda *_: None)
    assert grown[:2] == first and len(grown) == 3  # the larger count adds demos after the smaller one's
    assert grown == sorted(grown) and start <= grown[0] and grown[-1] < TEST_SEED_START  # training seeds, in order
    assert pdc.ensure_demos(folder, "corner_to_same_color", 2, start, 32, log=lambda *_: None) == first  # no re-collect
    ov = pdc.fine_tune_overrides(ROOT / "checkpoints" / "palme-tiny", folder, 2, 5, 0, 1, tmp_path / "run")
    cfg = compose_config(ov)
    assert cfg.data.task_weights == {}  # the recipe's per-task weights (its own folders' tasks) are not carried over
    data = load_data(cfg.data, PromptBuilder(), seed=0, log=lambda *_: None)
    assert [ep.seed for ep in data.builders[0].ds.episodes] == first  # all of them trained on: none held out
    assert not any(data.heldout.values())


BAD = [
    (["--counts", "20", "10"], "--counts must be increasing whole numbers >= 1, got [20, 10]"),
    (["--counts", "0", "10"], "--counts must be increasing"),
    (["--t3-counts", "10", "80"], "--t3-counts needs as many counts as --counts (3)"),
    (["--tasks", "T4"], "unknown task(s) ['T4']; expected some of ['T1', 'T2', 'T3']"),
    (["--episodes", "0"], "--episodes must be >= 1, got 0"),
    (["--steps", "abc"], "argument --steps: invalid int value: 'abc'"),
    (["--seed-start", "999990"], "not inside the train seed range [0, 1000000)"),
    (["--seed-start", "-1"], "not inside the train seed range"),
]


@pytest.mark.parametrize(("argv", "says"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_argument_is_one_line_and_exit_2(argv, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        pdc.main([*argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and err.startswith("push_demo_curve: error: ") and says in err
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_or_run_folder_it_cannot_use_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        pdc.main(["--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "is neither a model folder" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written
    out = tmp_path / "old"
    out.mkdir()
    (out / "settings.json").write_text(json.dumps({"steps": 400}))
    with pytest.raises(SystemExit) as exc:
        pdc.main(["--steps", "5", "--out", str(out)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "steps 400 there, 5 here" in err


def test_counts_per_task_and_the_t3_default():
    args = pdc.parse_args(["--tasks", "side_together", "T1", "--counts", "2", "4"])
    assert args.tasks == ["T1", "T3"] and args.t3_counts == [2, 8]  # PaLM-E's order; T3's largest count doubled
    assert pdc.task_counts(args.tasks, args.counts, args.t3_counts) == {"T1": [0, 2, 4], "T3": [0, 2, 8]}
    assert pdc.parse_args([]).t3_counts == [10, 20, 80]  # PaLM-E Table 2's counts


def test_table_rows_intervals_and_palme_numbers():
    counts = pdc.task_counts(["T1", "T2", "T3"], [10, 20, 40], [10, 20, 80])
    outcomes = {"T1": {0: [True, False, False, False], 10: [True] * 7 + [False] * 3, 40: [True] * 5},
                "T2": {}, "T3": {80: [False] * 2}}
    lines = pdc.markdown(outcomes, counts, "HEADER").splitlines()
    assert lines[0] == "HEADER"
    rows = [ln for ln in lines if ln.startswith("| ")]
    assert rows[0] == "| model | demos (T1 / T2 / T3) | T1 corner_to_same_color | T2 sort_corners | T3 side_together |"
    assert all(r.count("|") == 6 for r in rows)
    # Wilson 95% intervals: 1/4 -> [4.6, 69.9], 7/10 -> [39.7, 89.2], 5/5 -> [56.6, 100], 0/2 -> [0, 65.8]
    assert rows[1] == "| ours: generalist, not fine-tuned | 0 / 0 / 0 | 25.0 [4.6, 69.9] (4) | - | - |"
    assert rows[2] == "| ours: generalist fine-tuned on the task | 10 / 10 / 10 | 70.0 [39.7, 89.2] (10) | - | - |"
    assert rows[3] == "| ours: generalist fine-tuned on the task | 20 / 20 / 20 | - | - | - |"
    assert rows[4] == ("| ours: generalist fine-tuned on the task | 40 / 40 / 80 | 100.0 [56.6, 100.0] (5) | - "
                       "| 0.0 [0.0, 65.8] (2) |")
    assert "| PaLM-E-12B, full mixture, fine-tuned | 10 / 10 / 10 | 70.0 | 31.3 | 57.5 |" in rows
    assert "| PaLM-E-12B, robot data only, from scratch | 40 / 40 / 80 | 50.0 | 2.5 | 28.3 |" in rows
    assert rows[-1] == "| PaLM-E-84B, full mixture | 40 / 40 / 80 | 90.0 | 53.8 | 64.4 |"
    assert len(rows) == 1 + 4 + 3 + 3 + 1  # header, ours (0 + 3 counts), two 12B models x 3 counts, 84B at 40/80


def test_a_table_of_some_tasks_has_their_columns_only():
    lines = pdc.markdown({"T2": {0: [True]}}, {"T2": [0, 2]}, "H").splitlines()
    rows = [ln for ln in lines if ln.startswith("| ")]
    assert rows[0] == "| model | demos (T2) | T2 sort_corners |"
    assert rows[1] == "| ours: generalist, not fine-tuned | 0 | 100.0 [20.7, 100.0] (1) |"
    assert "| PaLM-E-84B, full mixture | 40 | 53.8 |" in rows
