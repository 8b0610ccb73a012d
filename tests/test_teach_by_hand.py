"""Teaching by hand (#22 item 6): `palme-run record=DIR` appends episodes typed with the `human` planner (and
interactive sessions of any planner) to a dataset folder that palme-dataset validates and palme-train trains on;
the live view; record folders that cannot take the episodes are refused in one line (exit 2 from the CLI)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from agent.cli.live_view import FILE_NAME, resolve_view
from agent.cli.run import run
from agent.config import RunConfig
from envs.vocab import render_step

pytestmark = pytest.mark.skipif(
    not (importlib.util.find_spec("envs.pickplace") and importlib.util.find_spec("policies.pickplace")),
    reason="the pick-and-place world is not in this checkout",
)
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SEED = 5  # grasp seed 5: a cube is on the target, the oracle's plan has three steps
SIZE = [32, 32]
# A model small enough that a few updates take well under a second on CPU (as tests/test_train.py).
TINY = [
    "model=palme-small", "model.llm.hidden=32", "model.llm.layers=1", "model.llm.heads=2", "model.llm.kv_heads=2",
    "model.llm.intermediate=64", "model.llm.vocab_size=300", "model.vision.image_size=32", "model.vision.patch_size=16",
    "model.vision.hidden=32", "model.vision.layers=1", "model.vision.heads=2", "model.vision.intermediate=64",
    "model.state.hidden=32",
]


def _scene(seed: int) -> tuple[str, list[str]]:
    """The sampled instruction of grasp `seed` and the oracle's steps that solve it."""
    from envs import make_env

    env = make_env("pickplace", "grasp", image_size=tuple(SIZE))
    try:
        env.reset(seed=seed)
        u = env.unwrapped
        return u.task_description, [render_step(c, u.names) for c in u.task.oracle_plan(u, u.goal)]
    finally:
        env.close()


def _cfg(**kw) -> RunConfig:
    base = {"task": "grasp", "seed": SEED, "planner": "human", "image_size": SIZE, "video": False, "view": "none"}
    return RunConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """One episode typed with the human planner (the oracle's steps, then end of input = done), recorded."""
    tmp = tmp_path_factory.mktemp("taught")
    instruction, plan = _scene(SEED)
    out = io.StringIO()
    result = run(_cfg(record=str(tmp / "data")), tmp / "run", stdin=[p + "\n" for p in plan], out=out)
    return tmp / "data", result, out.getvalue(), instruction, plan


def test_a_human_episode_is_recorded_validates_and_trains(taught, tmp_path):
    from training.dataset import LogDataset
    from training.dataset.validate import validate
    from training.train import compose_config
    from training.train import run as train

    folder, result, text, instruction, plan = taught
    assert result["success"] is True and result["record"] == {"folder": str(folder), "episodes": [0]}
    assert f"recorded: episode 0 of {folder} (success)" in text
    assert [p for p in validate(folder) if p.level == "error"] == []
    ds = LogDataset(folder)
    ep = ds.episodes[0]
    assert (ep.task_name, ep.seed, ep.instruction, ep.success, ep.failure) == ("grasp", SEED, instruction, True, None)
    assert [s["text"] for s in ep.steps] == [*plan, "done"] and all(s["label"] is None for s in ep.steps)
    assert [s["reason"] for s in ep.steps][-1] == "done" and ep.frame_t[0] == 0 and bool(ep.frame_success[-1])
    assert ds.info["palme"]["planners"] == ["human"]
    summary = train(compose_config([
        *TINY, f"data.dirs=[{folder}]", f"output_dir={tmp_path / 'train'}", "train.steps=2", "train.batch_size=4",
        "train.warmup_steps=1", "eval.every=0", "eval.final=false", "progress=false", "num_threads=1",
    ]))
    assert summary["finished"] is True and summary["steps"] == 2
    assert (tmp_path / "train" / "checkpoints" / "last" / "pretrained_model" / "model.safetensors").is_file()


def test_an_interactive_session_records_one_episode_per_instruction(tmp_path):
    from training.dataset import LogDataset
    from training.dataset.validate import validate

    instruction, plan = _scene(SEED)
    # 1: the oracle's steps typed, then an empty line (done); 2: the same instruction again, done at once (its goal
    # holds already); 3: an instruction the task cannot parse (success unknown: not recorded); then the end.
    script = [instruction, *plan, "", instruction, "", "do a little dance", "", ""]
    out = io.StringIO()
    result = run(_cfg(interactive=True, record=str(tmp_path / "data")), tmp_path / "run",
                 stdin=[s + "\n" for s in script], out=out)
    text = out.getvalue()
    assert [e["outcome"] for e in result["episodes"]] == ["success", "success", "success unknown"]
    assert result["record"]["episodes"] == [0, 1]
    assert "not recorded: success unknown" in text and "2 episode(s) into" in text
    assert [p for p in validate(tmp_path / "data") if p.level == "error"] == []
    eps = LogDataset(tmp_path / "data").episodes
    assert [e.instruction for e in eps] == [instruction, instruction] and all(e.success for e in eps)
    # the second episode continues the scene the first left: filed under the top seed of the train range
    assert [e.seed for e in eps] == [SEED, 999_999] and "filed as seed 999999" in text
    assert [s["text"] for s in eps[1].steps] == ["done"] and eps[1].frame_t[0] == 0
    assert json.loads((tmp_path / "run" / "trace.json").read_text()) == result


def test_failures_are_recorded_only_with_keep_failures(tmp_path):
    from training.dataset import LogDataset

    out = io.StringIO()  # an empty line at once: done while the goal does not hold
    result = run(_cfg(record=str(tmp_path / "a")), tmp_path / "r1", stdin=["\n"], out=out)
    assert result["failure"] == "premature_done" and result["record"]["episodes"] == []
    assert "not recorded: the task failed (premature_done); keep_failures=true" in out.getvalue()
    result = run(_cfg(record=str(tmp_path / "a"), keep_failures=True), tmp_path / "r2", stdin=["\n"], out=io.StringIO())
    assert result["record"]["episodes"] == [0]
    ep = LogDataset(tmp_path / "a").episodes[0]
    assert (ep.success, ep.failure) == (False, "premature_done")


def test_the_live_view_file_changes_after_each_step(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    live = tmp_path / FILE_NAME
    _instruction, plan = _scene(SEED)
    shots: list[bytes] = []

    def lines():
        for step in plan[:2]:
            shots.append(live.read_bytes())  # what the view showed when this step was asked for
            yield step + "\n"
        shots.append(live.read_bytes())

    out = io.StringIO()
    run(_cfg(view="auto"), tmp_path, stdin=lines(), out=out)  # the human planner: interactive use, no display
    text = out.getvalue()
    assert text.count("live view: ") == 1 and f"live view: {live}" in text
    assert text.count("instruction: ") == 1  # said once: by the human planner, with the scene's objects
    assert len(shots) == 3 and shots[0] != shots[1] != shots[2]
    image = cv2.imread(str(live))
    assert image is not None and image.shape[1] >= 256 and image.shape[0] == image.shape[1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".live")]  # replaced atomically: no temp left
    assert resolve_view("auto", interactive_use=False) == "none"
    with pytest.raises(ValueError, match="view=window needs a display"):
        resolve_view("window", interactive_use=True)


def _dataset(folder: Path, env_name: str = "pickplace", task: str = "grasp", size=(32, 32)) -> Path:
    """An empty dataset folder of `env_name` frames of `size` (what the writer makes when it creates one)."""
    from envs import make_env
    from training.recorder import open_dataset_writer

    env = make_env(env_name, task, image_size=size)
    try:
        open_dataset_writer(folder, env, task, 2, "train", False, "human").close()
    finally:
        env.close()
    return folder


@pytest.mark.parametrize("case", ["file", "foreign", "other_world", "frame_size", "fps", "scene_there", "locked"])
def test_record_folders_that_cannot_take_the_episodes_are_refused(case, tmp_path, taught):
    from training.dataset.writer import DatasetWriter

    folder = tmp_path / "data"
    kw: dict = {}
    if case == "file":
        folder.write_text("not a folder\n")
        expect = "record folder"
    elif case == "foreign":
        folder.mkdir()
        (folder / "notes.txt").write_text("mine\n")
        expect = "holds other files (notes.txt) and no meta/info.json"
    elif case == "other_world":
        _dataset(folder, "push", "block2block")
        expect = "holds 'push' episodes, this run is env=pickplace"
    elif case == "frame_size":
        _dataset(folder, size=(48, 48))
        expect = "holds 48x48 frames, this run renders 32x32: pass image_size=[48,48]"
    elif case == "fps":
        _dataset(folder)
        kw = {"record_fps": 5}
        expect = "holds frames at fps=2, this run asks for record_fps=5"
    elif case == "scene_there":
        shutil.copytree(taught[0], folder)
        expect = f"already holds pickplace grasp seed {SEED}"
    else:
        _dataset(folder)
        expect = "another writer is appending"
    holder = DatasetWriter(folder) if case == "locked" else None
    try:
        with pytest.raises(ValueError, match="record_fps|record folder|another writer") as err:
            run(_cfg(record=str(folder), planner="oracle", **kw), tmp_path / "run", out=io.StringIO())
    finally:
        if holder is not None:
            holder.close()
    assert expect in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run" / "trace.json").exists()  # refused before the first episode


def test_the_cli_refuses_a_foreign_record_folder_in_one_line(tmp_path):
    foreign = tmp_path / "project"
    foreign.mkdir()
    (foreign / "main.py").write_text("print('mine')\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [str(BIN / "palme-run"), "planner=oracle", "task=grasp", "video=false", f"record={foreign}",
         f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("palme-run: error: record folder ") and "main.py" in lines[0]
    assert sorted(p.name for p in foreign.iterdir()) == ["main.py"]  # nothing written into it
    assert not (tmp_path / "run").exists()  # the refused start leaves no run folder


def test_collect_refuses_a_foreign_out_folder_before_any_episode(tmp_path):
    from training.collect import CollectConfig, collect

    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(ValueError, match=r"out folder .* holds other files \(notes.txt\)"):
        collect(CollectConfig(task="grasp", episodes=1, workers=1, out=str(tmp_path), progress=False))
