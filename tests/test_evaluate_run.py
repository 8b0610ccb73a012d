"""`palme-eval` end to end on the real pick-and-place world with the oracle planner (few, short episodes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as imageio
import pytest

from agent.eval_runner import EpisodeRunner, Job
from agent.evaluate import EvalConfig, evaluate
from agent.planners import PLANNERS, PlanContext, Planner, register_planner
from agent.report import CHROMIUM, chromium_screenshot, screenshot_findings

ROOT = Path(__file__).resolve().parents[1]
# grasp episodes are the shortest (one to three steps); two of them, in two worker processes.
RUN_ARGS = ["planner=oracle", "env=pickplace", "tasks=[grasp]", "split=L1", "episodes=2", "videos_per_task=1",
            "progress=false", "report_every_s=0"]


def _cli(args: list[str], out: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agent.evaluate", *args, f"hydra.run.dir={out}"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny oracle evaluation through the real CLI, with two worker processes."""
    out = tmp_path_factory.mktemp("eval") / "run"
    proc = _cli([*RUN_ARGS, "workers=2"], out)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert "L1     grasp" in stdout and str(out) in stdout
    return out


def _episodes(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]


def test_cli_writes_every_output(run_dir):
    info = json.loads((run_dir / "eval_info.json").read_text())
    assert info["overall"]["n_episodes"] == 2 and not info["interrupted"]
    assert info["config"]["planner"] == "oracle" and info["config"]["workers"] == 2
    task = info["per_task"][0]
    assert (task["task_group"], task["task_id"]) == ("L1", "grasp")
    assert len(task["metrics"]["successes"]) == 2 and task["metrics"]["seeds"] == [1_000_000, 1_000_001]
    assert task["n_successes"] == 2, "the oracle should grasp on these seeds"
    assert task["mean_oracle_plan_length"] and task["mean_plan_length"] >= task["mean_oracle_plan_length"]
    # The first episode's video, with LeRobot's layout, readable, and at the env's fps.
    (video,) = task["metrics"]["video_paths"]
    assert video == "videos/L1_grasp/eval_episode_0.mp4" == info["overall"]["video_paths"][0]
    reader = imageio.get_reader(run_dir / video)
    assert reader.get_meta_data()["fps"] == 10 and reader.count_frames() > 10
    eps = _episodes(run_dir)
    assert [e["episode"] for e in eps] == [0, 1]
    assert eps[0]["steps"][0]["text"].startswith("pick up") and eps[0]["steps"][-1]["text"] == "done"
    page = (run_dir / "report.html").read_text()
    assert page.count("<svg") == 2 and "<video src='videos/L1_grasp/eval_episode_0.mp4'" in page


def test_same_seeds_give_the_same_episodes(run_dir, tmp_path):
    """Twice in a row (here: in this process, one worker) the per-episode outcomes and steps are identical."""
    cfg = EvalConfig(planner="oracle", tasks=["grasp"], split="L1", episodes=2, videos_per_task=0, progress=False)
    info = evaluate(cfg, tmp_path / "again")
    first = json.loads((run_dir / "eval_info.json").read_text())
    assert info["per_task"][0]["metrics"]["successes"] == first["per_task"][0]["metrics"]["successes"]
    again = _episodes(tmp_path / "again")
    for a, b in zip(_episodes(run_dir), again, strict=True):
        assert [s["text"] for s in a["steps"]] == [s["text"] for s in b["steps"]]
        assert a["control_steps"] == b["control_steps"]


def test_ctrl_c_leaves_a_valid_partial_report(tmp_path):
    out = tmp_path / "run"
    proc = _cli(["planner=oracle", "tasks=[grasp,unstack]", "split=L1", "episodes=10", "videos_per_task=0",
                 "progress=false", "report_every_s=0"], out)
    jsonl = out / "episodes.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if jsonl.exists() and jsonl.read_text().count("\n") >= 1:
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"finished before it could be interrupted: {proc.communicate()[1][-2000:]}"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    info = json.loads((out / "eval_info.json").read_text())
    done = info["overall"]["n_episodes"]
    assert info["interrupted"] and 1 <= done < 20 and info["n_planned"] == 20
    assert len(_episodes(out)) == done
    page = (out / "report.html").read_text()
    assert f"Partial report: {done} of 20" in page and page.rstrip().endswith("</html>")


@register_planner
class _RaisingPlanner(Planner):
    """A planner that crashes on the second decision (a stand-in for a broken model)."""

    name = "test_raising"

    def next_step(self, ctx: PlanContext) -> str:
        if ctx.step_index >= 1:
            raise RuntimeError("planner blew up")
        return "pick up obj 1"


def test_exceptions_are_failed_episodes_with_tracebacks(tmp_path):
    try:
        cfg = EvalConfig(planner="test_raising", tasks=["unstack"], split="L2", episodes=2, videos_per_task=0,
                         progress=False)
        info = evaluate(cfg, tmp_path / "run")
    finally:
        PLANNERS.pop("test_raising")
    assert info["overall"]["n_episodes"] == 2 and info["overall"]["failures"]["exception"] == 2
    eps = _episodes(tmp_path / "run")
    assert all("RuntimeError: planner blew up" in e["traceback"] for e in eps)
    assert "planner blew up" in (tmp_path / "run" / "report.html").read_text()
    # An error outside the agent loop (here: the env cannot be built) is caught the same way.
    settings = {"env": "pickplace", "planner": "oracle", "image_size": [4, 4], "planner_options": {}}
    rec = EpisodeRunner(settings, tmp_path).run(Job("L1", "stack", 0, 1_000_000, video=False))
    assert rec["failure"] == "exception" and "image_size" in rec["traceback"] and not rec["success"]


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"needs Debian's chromium at {CHROMIUM}")
def test_report_renders_in_headless_chromium_with_charts_and_videos(run_dir, tmp_path):
    png = chromium_screenshot(run_dir / "report.html", tmp_path / "report.png")
    eps = _episodes(run_dir)
    found = screenshot_findings(png, run_dir, [e["poster_path"] for e in eps if e["poster_path"]])
    assert found["size"] == [1200, 1600]
    assert found["success_chart_px"] > 2000, "no success-rate bars in the screenshot"
    assert found["outcome_chart_px"] > 2000, "no outcome (failure breakdown) chart in the screenshot"
    assert found["videos"] and all(v["match"] > 0.6 for v in found["videos"]), found["videos"]


@pytest.mark.slow
def test_torchrun_shards_episodes_by_rank_and_merges_them(tmp_path):
    out = tmp_path / "run"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "agent.evaluate", "planner=oracle",
           "tasks=[grasp,unstack]", "split=L1", "episodes=2", "videos_per_task=2", "progress=false",
           f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "eval_info.json").read_text())
    assert info["config"]["world_size"] == 2 and info["overall"]["n_episodes"] == 4
    assert [t["metrics"]["seeds"] for t in info["per_task"]] == [[1_000_000, 1_000_001]] * 2
    # Jobs are dealt to ranks in turn (unstack ran on rank 1); every video lands in rank 0's folder.
    assert info["overall"]["video_paths"] == [f"videos/L1_{t}/eval_episode_{n}.mp4" for t in ("grasp", "unstack")
                                              for n in (0, 1)]
    assert all((out / v).is_file() for v in info["overall"]["video_paths"])
    assert [(e["task"], e["episode"]) for e in _episodes(out)] == [("grasp", 0), ("grasp", 1), ("unstack", 0), ("unstack", 1)]


def test_same_checkpoint_and_seeds_give_identical_episodes(tmp_path):
    """A PalmE checkpoint (untrained tiny model, constrained decoding so its steps run skills) evaluated twice."""
    model_mod = pytest.importorskip("agent.model")
    texts = ["pick up the red cube", "place the red cube on the blue cube", "place the green cube in the red zone",
             "place the yellow cube on the table", "done", "pick up the small cyan cube and hold it"] * 10
    tiny = {"llm": {"vocab_size": 400, "hidden": 64, "layers": 1, "heads": 2, "kv_heads": 2, "intermediate": 128},
            "vision": {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64}, "state": {"hidden": 32}}
    model_mod.make_model("palme-small", tokenizer_texts=texts, **tiny).save_pretrained(tmp_path / "ckpt")

    def run(name: str) -> tuple[dict, list[dict]]:
        cfg = EvalConfig(checkpoint=str(tmp_path / "ckpt"), constrained=True, max_new_tokens=24, max_steps=1,
                         tasks=["grasp"], split="L1", episodes=2, videos_per_task=0, progress=False)
        return evaluate(cfg, tmp_path / name), _episodes(tmp_path / name)

    (info_a, eps_a), (info_b, eps_b) = run("a"), run("b")
    assert info_a["config"]["planner"] == "palme" and info_a["config"]["checkpoint"] == str(tmp_path / "ckpt")
    assert info_a["per_task"][0]["metrics"]["successes"] == info_b["per_task"][0]["metrics"]["successes"]
    assert [[s["text"] for s in e["steps"]] for e in eps_a] == [[s["text"] for s in e["steps"]] for e in eps_b]
    assert all(e["steps"] and e["traceback"] is None for e in eps_a)
