"""Issue #17, logs: `palme-dataset validate` is the one gate (training meets no error it did not name),
`data.skip_invalid` really skips, every palme-dataset error is one line with exit status 2, a second
writer is named, and written files respect the umask.

Each fault of the issue is rebuilt here from its minimal input on a copy of one small dataset made by
palme-collect's Python API.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from agent.prompts import PromptBuilder
from training import checkpoint as ck
from training.collect import CollectConfig, collect
from training.config import DataConfig
from training.data import DataValidationError, load_data
from training.dataset import DatasetWriter, LogDataset, validate
from training.dataset.checks import DatasetError
from training.dataset.schema import data_path, episodes_path
from training.dataset.writer import LOCK_NAME, WriterConflictError
from training.dataset_cli import main as cli

TINY = [
    "model=palme-small", "model.llm.hidden=32", "model.llm.layers=1", "model.llm.heads=2", "model.llm.kv_heads=2",
    "model.llm.intermediate=64", "model.llm.vocab_size=300", "model.vision.image_size=32", "model.vision.patch_size=16",
    "model.vision.hidden=32", "model.vision.layers=1", "model.vision.heads=2", "model.vision.intermediate=64",
    "model.state.hidden=32",
]
INFO = "meta/info.json"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Two pushing episodes at 32x32, collected once by palme-collect's Python API."""
    out = tmp_path_factory.mktemp("safety") / "push"
    collect(CollectConfig(env="push", task="block2block", episodes=2, workers=1, fps=1, image_size=[32, 32],
                          progress=False, out=str(out)), log=lambda *_: None)
    return out


@pytest.fixture
def ds(base, tmp_path) -> Path:
    root = tmp_path / "ds"
    shutil.copytree(base, root)
    return root


# ---- helpers ------------------------------------------------------------------------------------


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = cli(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def assert_refused(argv: list[str], capsys, *needles: str) -> str:
    """The command exits 2 with one stderr line `palme-dataset: error: ...` holding every needle, no traceback."""
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2, err
    assert err.endswith("\n") and err.count("\n") == 1 and err.startswith("palme-dataset: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, (n, err)
    return err


def edit_info(root: Path, fn) -> None:
    info = json.loads((root / INFO).read_text())
    fn(info)
    (root / INFO).write_text(json.dumps(info))


def edit_row(root: Path, ep: int, key: str, value) -> None:
    """Set one value of episode `ep`'s metadata row, keeping the file's schema."""
    path = root / episodes_path(ep)
    schema = pq.read_schema(path)
    rows = pq.read_table(path).to_pylist()
    rows[0][key] = value
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def row(root: Path, ep: int) -> dict:
    return pq.read_table(root / episodes_path(ep)).to_pylist()[0]


def training_data(root: Path, **kw):
    return load_data(DataConfig(dirs=[str(root)], **kw), PromptBuilder(), seed=0, log=lambda *_: None)


def assert_gate(root: Path, capsys, needle: str, episode: int | None) -> None:
    """validate names the problem (one line, exit 2); training refuses at start with the same words; with
    skip_invalid an episode problem is skipped and counted, a folder problem is still refused."""
    errors = [p for p in validate(root) if p.level == "error"]
    assert errors and needle in str(errors[0]) and errors[0].episode == episode, [str(p) for p in errors]
    assert_refused(["validate", str(root)], capsys, needle)
    with pytest.raises(DataValidationError, match="failed validation") as caught:
        training_data(root)
    assert needle in str(caught.value) and "\n" not in str(caught.value)
    if episode is None:
        with pytest.raises(DataValidationError, match="failed validation"):
            training_data(root, skip_invalid=True)
    else:
        said: list[str] = []
        data = load_data(DataConfig(dirs=[str(root)], skip_invalid=True), PromptBuilder(), 0, log=said.append)
        assert data.skipped == 1 and said and said[0].startswith("skipped 1 invalid episode(s)")
        assert {ep.index for ep in data.builders[0].ds.episodes} == {0, 1} - {episode}


# ---- item 13: logs that validated but broke training (each from its minimal input) -----------------


def test_feature_without_shape_is_named_not_a_keyerror(ds, capsys):
    edit_info(ds, lambda i: i["features"]["observation.images.front"].pop("shape"))
    assert_gate(ds, capsys, "feature 'observation.images.front'", None)
    for argv in (["info", str(ds)], ["render", str(ds), "--episode", "0"]):
        assert_refused(argv, capsys, "observation.images.front")


def test_fps_that_is_not_a_number_is_refused_before_training(ds, capsys):
    edit_info(ds, lambda i: i.update(fps="fast"))
    assert_gate(ds, capsys, "fps is 'fast', expected an integer", None)


def test_episode_pointing_at_no_file_is_refused(ds, capsys):
    edit_row(ds, 1, "data/chunk_index", 7)
    assert_gate(ds, capsys, "data/chunk_index, data/file_index are (7, 1), expected (0, 1)", 1)


def test_frame_t_longer_than_the_frames_is_refused(ds, capsys):
    frame_t = json.loads(row(ds, 0)["frame_t"])
    edit_row(ds, 0, "frame_t", json.dumps([*frame_t, frame_t[-1] + 5]))
    assert_gate(ds, capsys, f"frame_t holds {len(frame_t) + 1} control steps for {len(frame_t)} frames", 0)


@pytest.mark.parametrize("column", ["objects", "plan_steps"])
def test_garbage_json_columns_are_refused_naming_the_episode(ds, capsys, column):
    edit_row(ds, 1, column, '{"not json')
    assert_gate(ds, capsys, f"[episode 1: meta/episodes/chunk-000/file-001.parquet] {column} is not valid JSON", 1)


def test_json_columns_of_the_wrong_shape_are_refused(ds, capsys):
    steps = json.loads(row(ds, 0)["plan_steps"])
    steps[0]["start_t"] = "0"
    edit_row(ds, 0, "plan_steps", json.dumps(steps))
    assert_gate(ds, capsys, "plan_steps[0] start_t/end_t are '0'", 0)


def test_info_without_world_is_refused(ds, capsys):
    edit_info(ds, lambda i: i["palme"].pop("world"))
    assert_gate(ds, capsys, "palme.world is None, expected one of ['pickplace', 'push']", None)


def test_plan_steps_that_disagree_with_the_language_rows_are_refused(ds, capsys):
    steps = json.loads(row(ds, 1)["plan_steps"])
    steps[0]["text"] = "push the red moon to the top left corner"  # a valid step, but not what ran
    edit_row(ds, 1, "plan_steps", json.dumps(steps))
    assert_gate(ds, capsys, "plan_steps disagree with the language_persistent_json rows", 1)


def test_a_scene_recorded_twice_is_refused_so_no_held_out_twin_is_trained_on(ds, base, tmp_path, capsys):
    r0 = row(ds, 0)
    edit_row(ds, 1, "seed", r0["seed"])
    assert_gate(ds, capsys, f"same task and seed (block2block, seed {r0['seed']}) as episode 0", 1)
    # across folders: the same scenes in two folders would let a held-out episode of one be trained on in the other
    twin = tmp_path / "twin"
    shutil.copytree(base, twin)
    with pytest.raises(DataValidationError, match=r"episode 0 \(push block2block seed \d+\) is the same scene as episode 0 of"):
        load_data(DataConfig(dirs=[str(base), str(twin)]), PromptBuilder(), 0, log=lambda *_: None)
    said: list[str] = []
    data = load_data(DataConfig(dirs=[str(base), str(twin)], skip_invalid=True), PromptBuilder(), 0, log=said.append)
    assert data.skipped == 2 and not data.builders[1].ds.episodes and any("repeat a scene" in s for s in said)


def _damage_frame_and_reseal(root: Path, ep: int, frame: int) -> None:
    """An unreadable PNG in one frame, with the checksum rewritten (a faulty writer, not disk corruption)."""
    path = root / data_path(ep)
    table = pq.read_table(path)
    images = table.column("observation.images.front").to_pylist()
    images[frame] = {"bytes": b"\x89PNG\r\n\x1a\n garbage", "path": None}
    idx = table.schema.get_field_index("observation.images.front")
    table = table.set_column(idx, table.schema.field(idx), pa.array(images, table.schema.field(idx).type))
    pq.write_table(table, path, write_page_checksum=True)
    edit_row(root, ep, "data/sha256", hashlib.sha256(path.read_bytes()).hexdigest())


def test_skip_invalid_skips_an_invalid_frame_counts_it_and_training_finishes(ds, tmp_path, capsys):
    from training.train import compose_config, run

    _damage_frame_and_reseal(ds, 1, 2)
    assert_gate(ds, capsys, "frame 2 image: not a readable PNG image", 1)

    def cfg(out: str, *extra: str):
        return compose_config([*TINY, f"data.dirs=[{ds}]", f"output_dir={tmp_path / out}", "train.steps=4",
                               "train.batch_size=4", "train.warmup_steps=1", "save_every=2", "log_every=1",
                               "eval.every=0", "eval.final=false", "progress=false", "num_threads=1", *extra])

    with pytest.raises(DataValidationError, match=r"frame 2 image.*skip_invalid=true"):
        run(cfg("refused"))
    assert not (tmp_path / "refused" / "checkpoints").exists()  # refused at start: nothing written
    capsys.readouterr()
    result = run(cfg("skipped", "data.skip_invalid=true"))
    assert result["steps"] == 4 and result["finished"]
    out = capsys.readouterr().out
    assert "skipped 1 invalid episode(s)" in out and "1 invalid frame(s) among them" in out


# ---- item 16 and #22 item 7: one-line errors, the second writer, a LeRobot folder not written by palme -----


def test_every_palme_dataset_error_is_one_line_with_exit_status_2(ds, tmp_path, capsys):
    assert_refused(["validate", str(tmp_path / "nowhere")], capsys, "not a dataset")
    assert_refused(["info", str(tmp_path)], capsys, "not a dataset")
    (ds / INFO).write_text("{ truncated")
    assert_refused(["validate", str(ds)], capsys, "meta/info.json is not valid JSON")
    assert_refused(["info", str(ds)], capsys, "meta/info.json is not valid JSON")
    assert_refused(["render", str(ds)], capsys, "--episode")  # argparse's own error, on one line too
    assert_refused(["frobnicate", str(ds)], capsys, "invalid choice")


def test_validate_prints_the_report_then_one_error_line(ds, capsys):
    path = ds / data_path(1)
    path.write_bytes(path.read_bytes()[:200])
    rc, out, err = run_cli(["validate", str(ds)], capsys)
    assert rc == 2 and "data unreadable parquet" in out and "INVALID: 1 error(s) in episode(s) [1]" in out
    assert err.count("\n") == 1 and "failed validation: 1 error(s) in episode(s) [1]" in err
    assert run_cli(["info", str(ds)], capsys)[0] == 0  # info still describes the readable episodes
    render = run_cli(["render", str(ds), "--episode", "1", "--out", str(ds / "x.mp4")], capsys)
    assert render[0] == 2 and "episode 1 is not a readable episode" in render[2] and render[2].count("\n") == 1


def test_second_writer_is_refused_naming_the_folder_and_the_other_writer(ds, capsys):
    with DatasetWriter(ds), pytest.raises(WriterConflictError) as caught:
        DatasetWriter(ds)
    msg = str(caught.value)
    assert isinstance(caught.value, ValueError) and "\n" not in msg
    assert str(ds) in msg and f"pid {os.getpid()}" in msg and "another writer is appending" in msg
    with DatasetWriter(ds):  # the lock is released on close; the folder is still valid
        pass
    assert [p for p in validate(ds) if p.level == "error"] == []


def test_a_lerobot_folder_not_written_by_palme_collect_says_what_is_missing(ds, capsys):
    ours = ["task_name", "seed", "split", "success", "failure", "reason", "instruction", "n_steps", "control_steps",
            "objects", "names", "plan_steps", "frame_t", "wall_s", "data/sha256"]
    edit_info(ds, lambda i: (i.pop("palme"), i["features"].pop("language_persistent_json")))
    for ep in (0, 1):
        path = ds / episodes_path(ep)
        pq.write_table(pq.read_table(path).drop_columns(ours), path)
    for cmd in ("validate", "info"):
        err = assert_refused([cmd, str(ds)], capsys, 'has no "palme" block', "features lack ['language_persistent_json']",
                             "meta/episodes rows lack the columns ['task_name', 'seed'", "'frame_t'")
        assert "schema_version None" not in err
    with pytest.raises(DataValidationError, match='no "palme" block'):
        training_data(ds)
    (ds / LOCK_NAME).unlink(missing_ok=True)
    with pytest.raises(DatasetError, match="cannot append"):  # a writer refuses it and leaves it as it was
        DatasetWriter(ds)
    assert not (ds / LOCK_NAME).exists()


# ---- item 17: files respect the umask -------------------------------------------------------------


def _modes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mode & 0o777 for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_datasets_models_and_checkpoints_respect_the_umask(tmp_path, umask, mode):
    from agent.model import make_model
    from envs import push_blocks

    old = os.umask(umask)
    try:
        data = tmp_path / "data"
        collect(CollectConfig(env="push", task="block2block", episodes=1, workers=1, fps=1, image_size=[32, 32],
                              progress=False, out=str(data)), log=lambda *_: None)
        sizes: dict[str, dict[str, int]] = {}
        for o in TINY[1:]:  # "model.<section>.<key>=<int>"
            section, key = o.split("=")[0].split(".")[1:]
            sizes.setdefault(section, {})[key] = int(o.split("=")[1])
        model = make_model("palme-small", tokenizer_texts=["push the red moon to the top left corner"] * 4, **sizes)
        model.save_pretrained(tmp_path / "model")
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        sum(p.float().pow(2).sum() for p in model.parameters() if p.requires_grad).backward()
        opt.step()  # optimizer state with tensors
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        saved_rng = ck.capture_rng()
        ck.save_checkpoint(tmp_path / "run", 1, save_model=model.save_pretrained, train_config={"seed": 0},
                           optimizer=opt, scheduler=sched, rng=saved_rng, training_step={"data": {}})
        push_blocks.write_atomic(tmp_path / "mesh" / "moon.obj", "v 0 0 0\n")
    finally:
        os.umask(old)
    for folder in ("data", "model", "run/checkpoints/000001", "mesh"):
        modes = _modes(tmp_path / folder)
        assert modes and set(modes.values()) == {mode}, (folder, {k: oct(v) for k, v in modes.items()})
    assert {"model.safetensors", "tokenizer.json", "config.json"} <= set(_modes(tmp_path / "model"))
    state = _modes(tmp_path / "run/checkpoints/000001/training_state")
    assert {"optimizer_state.safetensors", "rng_state.safetensors"} <= set(state)
    assert {p.stat().st_mode & 0o777 for p in data.rglob("*") if p.is_dir()} == {0o777 & ~umask}
    assert len(LogDataset(data)) == 1  # and what was written reads back
    state_dir = tmp_path / "run/checkpoints/000001/training_state"
    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    torch.optim.lr_scheduler.LambdaLR(fresh, lambda s: 1.0)  # as saved: the scheduler adds initial_lr
    ck.load_optimizer(fresh, state_dir / ck.OPTIMIZER_FILE)
    assert torch.equal(load_file(str(state_dir / ck.RNG_FILE))["torch"], saved_rng["torch"])
    restored, original = fresh.state_dict()["state"][0], opt.state_dict()["state"][0]
    assert set(restored) == set(original) and all(torch.equal(restored[k], original[k]) for k in original)


# ---- review of #17: links and special files in a dataset folder; plan-step calls ----------------------------


@pytest.fixture
def no_hang():
    """Fail (instead of blocking for ever) if the test has not finished within 30 s (a FIFO opened for reading)."""
    def timeout(*_):
        pytest.fail("blocked: something opened a FIFO of the dataset")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _collect_more(root: Path) -> None:
    """palme-collect's Python API appending to `root` (the reviewer's second `palme-collect`)."""
    collect(CollectConfig(env="push", task="block2block", episodes=3, workers=1, fps=1, image_size=[32, 32],
                          progress=False, out=str(root)), log=lambda *_: None)


def test_a_writer_lock_that_is_a_symlink_is_refused_and_its_target_is_untouched(ds, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (ds / ".writer.lock").unlink()
    (ds / ".writer.lock").symlink_to(victim)
    with pytest.raises(DatasetError) as caught:
        _collect_more(ds)
    assert str(caught.value) == (f"{ds / '.writer.lock'} is a symbolic link; the writer lock must be a regular file "
                                 "of the dataset folder (remove the link)")
    assert victim.read_text() == "precious\n"
    assert row(ds, 1)["episode_index"] == 1 and not (ds / episodes_path(2)).exists()  # nothing appended


def test_a_linked_chunk_folder_is_refused_and_nothing_outside_the_dataset_is_deleted(ds, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    shutil.move(ds / "data" / "chunk-000", elsewhere)
    (ds / "data" / "chunk-000").symlink_to(elsewhere)
    shutil.copy(elsewhere / "file-000.parquet", elsewhere / "file-005.parquet")  # past total_episodes: a "leftover"
    before = sorted(p.name for p in elsewhere.iterdir())
    with pytest.raises(DatasetError) as caught:
        _collect_more(ds)
    assert str(caught.value).startswith(f"{ds}: cannot append: ERROR [data/chunk-000] is a symbolic link to ")
    assert sorted(p.name for p in elsewhere.iterdir()) == before  # the writer deleted nothing through the link
    assert_gate(ds, capsys, "is a symbolic link to", None)  # validate names it; training refuses the folder


def test_a_fifo_in_a_dataset_is_reported_without_being_opened(ds, capsys, no_hang):
    (ds / data_path(1)).unlink()
    os.mkfifo(ds / data_path(1))
    assert_gate(ds, capsys, "is a FIFO (named pipe): a dataset folder holds regular files and folders only", None)
    with pytest.raises(DatasetError, match=r"data/chunk-000/file-001.parquet\] is a FIFO"):
        DatasetWriter(ds)


def _set_first_call(root: Path, ep: int, edit) -> None:
    steps = json.loads(row(root, ep)["plan_steps"])
    edit(steps[0]["call"])
    edit_row(root, ep, "plan_steps", json.dumps(steps))


@pytest.mark.parametrize("edit,needle", [
    (lambda c: c.update(obj=99), "plan_steps[0].call: obj is 99, expected the index of one of the episode's"),
    (lambda c: c.update(obj="0"), "plan_steps[0].call: obj is '0', expected the index"),
    (lambda c: c.update(skill="__import__"), "plan_steps[0].call: invalid SkillCall"),
    (lambda c: c.update(evil=1), "plan_steps[0].call: SkillCall.__init__() got an unexpected keyword argument 'evil'"),
    (lambda c: c.update({k: None for k in c}, skill="pick", obj=0), "skill 'pick' is not a skill of the push world"),
])
def test_plan_step_calls_are_checked_against_the_plan_vocabulary(ds, capsys, edit, needle):
    """The reviewer's `obj: 99` and `skill: "__import__"` passed validate: each call must be a SkillCall of the
    folder's world on one of the episode's objects."""
    _set_first_call(ds, 1, edit)
    assert_gate(ds, capsys, needle, 1)
