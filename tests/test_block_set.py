"""`block_set` on palme-run, palme-eval, palme-collect and the Python API (issue #21: collection and evaluation on
Language-Table's BLOCK_4 / BLOCK_8): the push world's scenes hold the fixed blocks, the logs and eval_info record
the set, and a block set the world or the split cannot take is one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.api import make_env
from agent.state_options import StateOptions
from envs.push_blocks import BLOCK_4, BLOCK_8

ROOT = Path(__file__).resolve().parents[1]


def _cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


def _blocks(objects) -> list[str]:
    return sorted(f"{o['color']} {o['shape']}" if isinstance(o, dict) else f"{o.color} {o.shape}" for o in objects)


def test_collect_on_block_8_writes_its_eight_blocks_and_records_the_set(tmp_path):
    from agent.prompts import PromptBuilder
    from training.config import DataConfig
    from training.data import load_data
    from training.dataset import LogDataset
    from training.dataset.validate import validate

    out = tmp_path / "data"
    proc = _cli("training.collect", "env=push", "task=block2block", "block_set=BLOCK_8", "episodes=2", "workers=1",
                "image_size=[32,32]", "progress=false", f"out={out}", f"hydra.run.dir={tmp_path / 'col'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    episodes = LogDataset(out).episodes
    assert len(episodes) == 2 and all(_blocks(ep.objects) == _blocks(BLOCK_8) for ep in episodes)
    info_path = out / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    assert info["palme"]["block_sets"] == ["BLOCK_8"]
    assert not [p for p in validate(out, images=False) if p.level == "error"]
    # a seed names a scene within one block set: another set is refused in this folder, and is no twin in another
    args = ("env=push", "task=block2block", "episodes=2", "workers=1", "image_size=[32,32]", "progress=false")
    refused = _cli("training.collect", *args, f"out={out}", f"hydra.run.dir={tmp_path / 'col2'}")
    assert refused.returncode == 2 and "holds scenes drawn from block set BLOCK_8, this run draws from N_CHOOSE_K" \
        in refused.stderr, refused.stderr[-2000:]
    plain = tmp_path / "plain"
    assert _cli("training.collect", *args, f"out={plain}", f"hydra.run.dir={tmp_path / 'col3'}").returncode == 0
    assert [ep.seed for ep in LogDataset(plain).episodes] == [ep.seed for ep in episodes]
    data = load_data(DataConfig(dirs=[str(out), str(plain)]), PromptBuilder(), 0, log=lambda *_: None)
    assert data.skipped == 0 and [len(b.ds.episodes) for b in data.builders] == [2, 2]
    info["palme"]["block_sets"] = ["BLOCK_9"]  # validate names a set that does not exist
    info_path.write_text(json.dumps(info))
    assert any("palme.block_sets" in p.message for p in validate(out, images=False) if p.level == "error")


def test_eval_and_run_accept_it_and_say_which_set(tmp_path):
    ev = tmp_path / "ev"
    proc = _cli("agent.evaluate", "planner=oracle", "env=push", "tasks=[block2block]", "block_set=BLOCK_4",
                "episodes=1", "videos_per_task=0", "image_size=[32,32]", "progress=false", f"hydra.run.dir={ev}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((ev / "eval_info.json").read_text())
    assert info["config"]["block_set"] == "BLOCK_4" and info["overall"]["n_episodes"] == 1
    assert "block_set: BLOCK_4" in (ev / "report.html").read_text()
    run = tmp_path / "run"
    proc = _cli("agent.cli.run", "planner=oracle", "env=push", "task=block2block", "block_set=BLOCK_8", "seed=2",
                "video=false", "image_size=[32,32]", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trace = json.loads((run / "trace.json").read_text())
    assert trace["block_set"] == "BLOCK_8" and trace["success"] is True


CASES = {  # id: (module, arguments, what the one line says)
    "run-pickplace": ("agent.cli.run", ["planner=oracle", "env=pickplace", "task=stack", "block_set=BLOCK_8"],
                      ["block_set=BLOCK_8", "only env=push has block sets"]),
    "collect-pickplace": ("training.collect", ["env=pickplace", "task=stack", "block_set=BLOCK_4"],
                          ["block_set=BLOCK_4", "only env=push has block sets"]),
    "eval-unknown": ("agent.evaluate", ["planner=oracle", "env=push", "block_set=BLOCK_9"],
                     ["unknown block_set 'BLOCK_9'", "['N_CHOOSE_K', 'BLOCK_4', 'BLOCK_8']"]),
    "collect-task-needs-more-blocks": ("training.collect", ["env=push", "task=color_to_location", "block_set=BLOCK_4"],
                                       ["task 'color_to_location' cannot draw a scene from block_set 'BLOCK_4'"]),
    "eval-l2": ("agent.evaluate", ["planner=oracle", "env=push", "tasks=[block2block]", "split=all", "block_set=BLOCK_8"],
                ["split 'L2'", "block_set='N_CHOOSE_K'", "'BLOCK_8'"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_block_set_the_world_or_split_cannot_take_is_one_line_exit_2(tmp_path, case):
    module, args, says = CASES[case]
    prog = {"agent.cli.run": "palme-run", "training.collect": "palme-collect", "agent.evaluate": "palme-eval"}[module]
    extra = [f"out={tmp_path / 'data'}"] if prog == "palme-collect" else []
    proc = _cli(module, *args, *extra, f"hydra.run.dir={tmp_path / 'run'}")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("pybullet build time")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), lines
    assert all(s in lines[0] for s in says), lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()  # refused before anything was made


def test_env_kwargs_pass_the_set_only_in_the_push_world_and_nothing_by_default():
    assert StateOptions().env_kwargs("pickplace", "L1") == {"split": "L1", "state": "privileged", "state_noise_m": 0.01}
    assert StateOptions().env_kwargs("push", "L2") == StateOptions().env_kwargs("pickplace", "L2")  # as before the key
    assert StateOptions(block_set="BLOCK_4").env_kwargs("push", "L1")["block_set"] == "BLOCK_4"
    with pytest.raises(ValueError, match="only env=push has block sets"):
        StateOptions(block_set="N_CHOOSE_K").env_kwargs("pickplace", "train")
    with pytest.raises(ValueError, match=r"unknown block_set 'block_8'; expected one of \['N_CHOOSE_K'"):
        StateOptions(block_set="block_8")


def test_api_make_env_and_eval_workers_build_the_set_and_seeds_stay_identical(tmp_path):
    from agent.eval_runner import EpisodeRunner
    from agent.evaluate import EvalConfig, resolve, runner_settings

    def scene(**kw):
        env = make_env("push", "block2block", split="L1", seed=1000003, obs_type="state", render_mode=None, **kw)
        try:
            return _blocks(env.unwrapped.objects), env.unwrapped.task_description, env.unwrapped.blocks_xy().tolist()
        finally:
            env.close()

    assert scene() == scene(block_set=None)  # the default changes nothing
    fixed = scene(block_set="BLOCK_4")
    assert fixed[0] == _blocks(BLOCK_4) and fixed == scene(block_set="BLOCK_4")  # same seed, same scene
    with pytest.raises(ValueError, match="only env=push has block sets"):
        make_env("pickplace", "stack", block_set="BLOCK_4")
    with pytest.raises(ValueError, match="split 'L3'.*not the fixed set 'BLOCK_4'"):
        make_env("push", "block2block", split="L3", block_set="BLOCK_4")
    with pytest.raises(ValueError, match="task 'corner_to_same_color' cannot draw a scene from block_set 'BLOCK_4'"):
        make_env("push", "corner_to_same_color", block_set="BLOCK_4")  # T1 needs two blocks of a colour
    settings = runner_settings(resolve(EvalConfig(planner="oracle", env="push", tasks=["block2block"],
                                                  block_set="BLOCK_8")))
    runner = EpisodeRunner(json.loads(json.dumps(settings)), tmp_path)  # as a worker process gets them: plain data
    try:
        assert runner._env_for("block2block", "L1").unwrapped.block_set == "BLOCK_8"
    finally:
        runner.close()
