"""palme-collect end to end: SIGKILL mid-run keeps every finished episode; re-running appends without
duplicates; recorded frames include every plan step's start; examples are the prompts the agent builds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agent.loop import Agent
from agent.planners import OraclePlanner, Planner
from agent.prompts import PromptBuilder, success_question
from envs import make_env
from envs.vocab import render_step
from training.collect import CollectConfig, collect, dataset_features, dataset_palme_block
from training.dataset import DatasetWriter, LogDataset, encode_episode, validate
from training.examples import ExampleBuilder
from training.recorder import EpisodeRecorder
from training.sources import question_frame_indices

ROOT = Path(__file__).resolve().parents[1]
ARGS = {"env": "pickplace", "task": "grasp", "workers": 1, "fps": 1, "image_size": [48, 48], "progress": False}


def _committed(out: Path) -> int:
    try:
        return json.loads((out / "meta/info.json").read_text())["total_episodes"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """palme-collect SIGKILLed after its first committed episode."""
    out = tmp_path_factory.mktemp("collect") / "grasp"
    cmd = [sys.executable, "-m", "training.collect", "env=pickplace", "task=grasp", "episodes=6", "workers=1",
           "fps=1", "image_size=[48,48]", f"out={out}", "progress=false", "hydra.run.dir=" + str(out.parent / "hydra")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while _committed(out) < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the orphaned worker processes of this run
        except ProcessLookupError:
            pass
    return out


def test_sigkill_keeps_finished_episodes_and_rerun_appends_without_duplicates(killed_run):
    out = killed_run
    n = _committed(out)
    assert n >= 1
    assert [p for p in validate(out) if p.level == "error"] == []
    before = [(e.task_name, e.seed) for e in LogDataset(out).episodes]
    assert len(before) == n
    summary = collect(CollectConfig(**ARGS, episodes=1, out=str(out)), log=lambda *_: None)
    assert summary["written"] == 1
    ds = LogDataset(out)
    keys = [(e.task_name, e.seed) for e in ds.episodes]
    assert keys[:n] == before and len(keys) == n + 1 and len(set(keys)) == n + 1
    assert validate(out) == []
    info = ds.info
    assert info["palme"]["seed_ranges"] == {"train": [0, 1_000_000], "test": [1_000_000, 2_000_000]}
    assert all(0 <= s < 1_000_000 for _, s in keys)


def test_frames_hold_every_step_start_on_a_fixed_grid(killed_run):
    ds = LogDataset(killed_run)
    every = 20  # control_hz 20 at fps 1
    for ep in ds.episodes:
        starts = {s["start_t"] for s in ep.steps}
        assert starts <= set(ep.frame_t)
        assert all(t % every == 0 or t in starts or t == ep.frame_t[-1] for t in ep.frame_t)
        assert np.allclose(ep.timestamp, np.asarray(ep.frame_t, np.float32) / 20)
        assert ep.frame_success[-1] == ep.success and not ep.frame_success[0]


def test_examples_are_exactly_the_prompts_the_agent_builds(tmp_path):
    env = make_env("pickplace", "grasp", image_size=(48, 48))
    planner = OraclePlanner()
    planner.prompts = PromptBuilder()  # the agent then builds (and records) the planning prompt of each step
    recorder = EpisodeRecorder(env, fps=2)
    agent = Agent(planner, render=True, **recorder.hooks())
    trace = agent.episode(env, seed=1)
    assert trace.success
    cfg = CollectConfig(**ARGS, episodes=1, out=str(tmp_path / "one"))
    features = dataset_features(env)
    with DatasetWriter(cfg.out, features, fps=2, palme=dataset_palme_block(cfg, env)) as w:
        w.add(encode_episode(recorder.finish(trace, "train"), features))
    builder = ExampleBuilder(LogDataset(cfg.out), PromptBuilder())
    specs = builder.specs("plan")
    assert [s.prompt for s in specs] == [r.prompt for r in trace.steps]
    assert [s.answer for s in specs] == [r.step for r in trace.steps]
    ex = builder.materialize(specs[0])
    assert ex.image.shape == (48, 48, 3) and ex.objects.shape == (8, 11) and ex.robot.shape == (17,)
    full = builder.specs("plan_full")[0]
    assert full.answer.endswith("done.") and full.prompt.endswith("Plan:")
    # Success detection is asked about every frame the agent plans from (what check_done asks), labelled per frame.
    ep = builder.ds.episodes[0]
    success = builder.specs("success")
    assert [s.frame for s in success] == sorted({0, *question_frame_indices(ep)})
    assert [s.answer for s in success] == ["yes" if ep.frame_success[s.frame] else "no" for s in success]
    assert success[0].answer == "no" and success[-1].answer == "yes"
    assert all(s.prompt.endswith(f"Q: {success_question(ep.instruction)}\nA:") for s in success)
    env.close()


class _WrongGrasp(Planner):
    """Scripted mistakes: picks a cube that is not the target, then says done; notes the oracle's step each time."""

    name = "wrong_grasp"

    def __init__(self) -> None:
        self.oracle_steps: list[str] = []

    def next_step(self, ctx) -> str:
        u = ctx.env
        plan = u.task.oracle_plan(u, u.goal)
        self.oracle_steps.append(render_step(plan[0], u.names) if plan else "done")
        if ctx.step_index == 0:
            graph = u.support_graph()
            free = [i for i in range(len(graph)) if i != u.goal.obj and i not in graph]
            return f"pick up the {u.names[free[0]]}"
        return "done"


def test_dagger_logs_teach_the_oracle_step_in_the_states_the_acting_planner_reached(tmp_path):
    env = make_env("pickplace", "grasp", image_size=(48, 48))
    planner = _WrongGrasp()
    planner.prompts = PromptBuilder()
    recorder = EpisodeRecorder(env, fps=2, label_steps=True)
    trace = Agent(planner, render=True, **recorder.hooks()).episode(env, seed=1)
    assert not trace.success and trace.failure == "premature_done"
    cfg = CollectConfig(**ARGS, episodes=1, out=str(tmp_path / "dagger"), keep_failures=True)
    features = dataset_features(env)
    with DatasetWriter(cfg.out, features, fps=2, palme=dataset_palme_block(cfg, env)) as w:
        w.add(encode_episode(recorder.finish(trace, "train"), features))
    specs = ExampleBuilder(LogDataset(cfg.out), PromptBuilder()).specs("plan")  # a failed episode, yet used
    # The prompts hold what the acting planner did; the answers are what the oracle would do there.
    assert [s.prompt for s in specs] == [r.prompt for r in trace.steps]
    assert [s.answer for s in specs] == planner.oracle_steps
    assert trace.steps[-1].step == "done" and specs[-1].answer != "done"  # the premature done is corrected
    steps = LogDataset(cfg.out).episodes[0].steps
    assert [s["label"] for s in steps] == planner.oracle_steps
    # Once the history holds a step the oracle would not take, the prompt is not oracle text: no prompt loss.
    agreed = [s["label"] == s["text"] for s in steps]
    assert [s.prompt_loss for s in specs] == [all(agreed[:k]) for k in range(len(specs))]
    assert not agreed[0] and [s.prompt_loss for s in specs] == [True, False]
    env.close()


def test_collect_with_a_model_planner_labels_every_step(tmp_path):
    out = tmp_path / "model"
    summary = collect(CollectConfig(**{**ARGS, "image_size": [64, 64]}, episodes=2, out=str(out),
                                    planner="palme", keep_failures=True), log=lambda *_: None)
    assert summary["written"] == 2
    ds = LogDataset(out)
    assert ds.info["palme"]["planners"] == ["palme"]
    for ep in ds.episodes:
        assert ep.steps and all(isinstance(s["label"], str) for s in ep.steps)
    with pytest.raises(ValueError, match="planner must be one of"):
        CollectConfig(**ARGS, planner="gpt")


def test_info_records_whether_the_camera_was_blanked_and_keeps_both_after_a_top_up(tmp_path):
    out = tmp_path / "blank"
    collect(CollectConfig(**ARGS, episodes=1, out=str(out), blank_frames=True), log=lambda *_: None)
    assert LogDataset(out).info["palme"]["blank_frames"] == [True]
    collect(CollectConfig(**ARGS, episodes=1, out=str(out)), log=lambda *_: None)
    assert LogDataset(out).info["palme"]["blank_frames"] == [True, False]
    assert validate(out) == []
    info_path = out / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["palme"]["blank_frames"] = "yes"
    info_path.write_text(json.dumps(info))
    assert any("palme.blank_frames" in p.message for p in validate(out, images=False) if p.level == "error")
