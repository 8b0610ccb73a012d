"""Evaluation statistics, eval_info.json layout, reports and `compare` (no simulation: fast)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from agent.eval_metrics import FAILURE_KINDS, build_eval_info, summarize, wilson_interval
from agent.eval_runner import Job, empty_record
from agent.evaluate import EvalConfig, compare, load_eval_info, plan_jobs, resolve
from agent.report import render_report
from envs.tasks.base import TEST_SEED_START, seed_range


def test_wilson_interval_matches_published_values():
    # Textbook values (Newcombe 1998, Wilson score without continuity correction).
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    lo, hi = wilson_interval(45, 50)
    assert (lo, hi) == (pytest.approx(0.7864, abs=1e-4), pytest.approx(0.9565, abs=1e-4))
    lo, hi = wilson_interval(50, 50)
    assert hi == 1.0 and lo == pytest.approx(50 / (50 + 1.959963984540054**2), abs=1e-9)
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("k,n", [(0, 1), (1, 3), (7, 9), (30, 31), (500, 1000)])
def test_wilson_interval_contains_the_estimate_and_is_symmetric(k, n):
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    lo2, hi2 = wilson_interval(n - k, n)
    assert math.isclose(lo, 1 - hi2, abs_tol=1e-12) and math.isclose(hi, 1 - lo2, abs_tol=1e-12)


def test_wilson_interval_rejects_impossible_counts():
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 3)


def _record(split: str, task: str, n: int, success: bool, failure: str | None = None, **kw) -> dict:
    rec = empty_record(Job(split, task, n, TEST_SEED_START + n, video=False))
    rec.update(success=success, failure=None if success else failure, n_steps=3, plan_length=2,
               oracle_plan_length=2, n_planner_calls=3, sum_reward=float(success), max_reward=float(success))
    rec.update(kw)
    return rec


RECORDS = [
    _record("L1", "stack", 0, True),
    _record("L1", "stack", 1, False, "skill_failure", n_replans=2),
    _record("L1", "grasp", 0, True, video_path="videos/L1_grasp/eval_episode_0.mp4"),
    _record("L2", "stack", 0, False, "parse_error", n_parse_errors=3),
    _record("L2", "stack", 1, False, "exception", traceback="Traceback ...\nValueError: boom"),
]


def test_eval_info_has_lerobots_fields_and_ours():
    info = build_eval_info(RECORDS, eval_s=10.0, splits=["L1", "L2"], tasks=["stack", "grasp"])
    json.dumps(info)  # plain JSON
    # LeRobot: per_task entries with per-episode lists, per_group and overall aggregates.
    assert [(t["task_group"], t["task_id"]) for t in info["per_task"]] == [("L1", "stack"), ("L1", "grasp"), ("L2", "stack")]
    m = info["per_task"][0]["metrics"]
    assert m["successes"] == [True, False] and m["sum_rewards"] == [1.0, 0.0] and m["max_rewards"] == [1.0, 0.0]
    assert info["per_task"][1]["metrics"]["video_paths"] == ["videos/L1_grasp/eval_episode_0.mp4"]
    for entry in (*info["per_group"].values(), info["overall"]):
        assert {"avg_sum_reward", "avg_max_reward", "pc_success", "n_episodes", "video_paths"} <= set(entry)
    assert {"eval_s", "eval_ep_s"} <= set(info["overall"])
    assert info["overall"]["pc_success"] == pytest.approx(40.0) and info["overall"]["n_episodes"] == 5
    assert info["overall"]["eval_ep_s"] == pytest.approx(2.0)
    assert info["per_group"]["L1"]["pc_success"] == pytest.approx(200 / 3)
    # Ours: interval, failures by kind, parse errors per planner call, replans per episode.
    lo, hi = wilson_interval(2, 5)
    assert info["overall"]["ci95"] == [pytest.approx(100 * lo), pytest.approx(100 * hi)]
    fails = info["overall"]["failures"]
    assert set(FAILURE_KINDS) <= set(fails)
    assert (fails["skill_failure"], fails["parse_error"], fails["exception"]) == (1, 1, 1)
    assert info["per_group"]["L2"]["parse_error_rate"] == pytest.approx(3 / 6)
    assert info["per_task"][0]["replans_per_episode"] == pytest.approx(1.0)


def test_summary_of_no_episodes_is_valid():
    s = summarize([])
    assert s["n_episodes"] == 0 and s["pc_success"] is None and s["ci95"] == [0.0, 100.0]


def test_report_shows_charts_table_videos_and_tracebacks():
    info = build_eval_info(RECORDS, eval_s=10.0, splits=["L1", "L2"], tasks=["stack", "grasp"], n_planned=8)
    page = render_report(info, RECORDS)
    assert page.count("<svg") == 2 and "Wilson 95% interval" in page
    assert "<video src='videos/L1_grasp/eval_episode_0.mp4'" in page
    assert "ValueError: boom" in page and "Partial report: 5 of 8" in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")


def test_report_escapes_untrusted_text():
    bad = _record("L1", "stack", 0, False, "exception", traceback="<script>alert(1)</script>", reason="<b>x</b>")
    page = render_report(build_eval_info([bad], eval_s=1.0), [bad])
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_seeds_are_test_seeds_and_consecutive():
    cfg = resolve(EvalConfig(planner="oracle", tasks=["stack"], split="all", episodes=3, videos_per_task=1))
    jobs = plan_jobs(cfg)
    # Episode-major: a run stopped early has about as many episodes of every split and task.
    assert [(j.split, j.episode) for j in jobs[:5]] == [("L1", 0), ("L2", 0), ("L3", 0), ("L4", 0), ("L1", 1)]
    assert len(jobs) == 12
    for j in jobs:
        lo, hi = seed_range(j.split)
        assert lo <= j.seed < hi and j.seed >= seed_range("train")[1]
        assert j.seed == lo + j.episode and j.video == (j.episode == 0)
    assert jobs[0].video_rel == "videos/L1_stack/eval_episode_0.mp4"


def test_bad_config_names_what_was_expected():
    with pytest.raises(ValueError, match="known tasks"):
        resolve(EvalConfig(planner="oracle", tasks=["juggle"]))
    with pytest.raises(ValueError, match="split"):
        resolve(EvalConfig(planner="oracle", splits=["L9"]))
    with pytest.raises(ValueError, match="checkpoint=PATH"):
        resolve(EvalConfig())
    with pytest.raises(ValueError, match="does not exist"):
        resolve(EvalConfig(checkpoint="/nonexistent/ckpt"))


def _write_run(path: Path, records: list[dict], planner: str) -> Path:
    path.mkdir()
    info = build_eval_info(records, eval_s=3.0, config={"planner": planner})
    (path / "eval_info.json").write_text(json.dumps(info))
    return path


def test_compare_puts_runs_side_by_side(tmp_path):
    a = _write_run(tmp_path / "a", RECORDS, "oracle")
    b = _write_run(tmp_path / "b", [_record("L1", "stack", 0, False, "parse_error")], "random")
    md, out = compare([str(a), str(b / "eval_info.json")], out=tmp_path / "cmp")
    header = md.splitlines()[0]
    assert header == "| split | task | oracle | random |"
    row = next(line for line in md.splitlines() if line.startswith("| L1 | stack |"))
    assert "50.0 [" in row and "(n=2)" in row and "0.0 [" in row
    assert "| L1 | grasp |" in md and md.count("–") >= 1  # a task only one run has
    page = (out / "compare.html").read_text()
    # One chart per split and one overall (runs as bar series), and the outcomes per run.
    assert page.count("<svg") == 4 and "Split L1" in page and "Split L2" in page and "Overall" in page
    assert "oracle" in page and "random" in page
    assert (out / "compare.md").read_text() == md


def test_compare_cli_rejects_a_folder_without_results(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "agent.evaluate", "compare", str(tmp_path)],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "no eval_info.json" in proc.stderr
    with pytest.raises(ValueError, match="eval_info.json"):
        load_eval_info(tmp_path)


def test_report_can_be_rerendered_from_the_run_files(tmp_path):
    from agent.evaluate import rerender_report

    run = _write_run(tmp_path / "run", RECORDS, "oracle")
    (run / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    page = rerender_report(run).read_text()
    assert "palme-eval: oracle" in page and "<video src='videos/L1_grasp/eval_episode_0.mp4'" in page
