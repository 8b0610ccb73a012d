"""palme-train refuses clearly and loses nothing: issue #17, items 12, 15 and 16 (palme-train).

- 12: a resume never keeps a stale setting silently. Every key of the schema has one rule in
  `training.config.RESUME_RULES` ("must match": refused naming the key; "may change, applied";
  "may change, irrelevant"); a parametrised test checks each key's rule, and real resumed runs show
  the applied keys applied (train.steps stretches the learning-rate schedule to the new end).
- 15: output locations (run folder, checkpoints/, tb/, the export destination) are checked at start,
  before any update; a read-only checkpoints folder on resume is refused before any update is lost.
- 16: user errors are one line and exit 2 (hydra/OmegaConf errors too); a refused start leaves no
  run folder behind, and an init_from checkpoint that does not load is refused before any data is read.

One small pushing dataset (real palme-collect) and one finished 6-update run are shared by the tests.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import test_train
import torch
from test_train import TINY, _env
from torch import nn

from agent.cli.common import error_line
from training import checkpoint as ck
from training import distributed as dd
from training.config import (
    APPLIED,
    IRRELEVANT,
    MUST_MATCH,
    RESUME_RULES,
    resume_rule,
    schema_keys,
)
from training.optim import WarmupCosine, make_optimizer, make_scheduler, set_total_steps
from training.train import check_run_folder, compose_config, config_dict, run

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LR, WARMUP, MIN_RATIO = 3e-3, 2, 0.1
dataset = test_train.dataset  # the fixture of test_train.py: three pushing episodes from palme-collect (one per module)


def _overrides(out: Path, data: Path | str, *extra: str) -> list[str]:
    return [*TINY, f"data.dirs=[{data}]", f"output_dir={out}", "train.steps=6", "train.batch_size=4",
            f"train.warmup_steps={WARMUP}", f"train.lr={LR}", f"train.min_lr_ratio={MIN_RATIO}", "save_every=3",
            "log_every=1", "eval.every=0", "eval.final=false", "progress=false", "num_threads=1", *extra]


def _cfg(out: Path, data: Path | str, *extra: str):
    return compose_config(_overrides(out, data, *extra))


def _rows(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def six_steps(tmp_path_factory, dataset) -> Path:
    """A finished 6-update run (checkpoints at 3 and 6); tests work on copies of it."""
    out = tmp_path_factory.mktemp("six") / "run"
    run(_cfg(out, dataset))
    return out


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst, symlinks=True)
    return dst


# ---- item 12: every key of the schema has one resume rule, and the rule holds ------------------------------

def test_every_schema_key_has_exactly_one_resume_rule():
    keys = schema_keys()
    assert len(keys) == len(set(keys)) > 80 and {"train.steps", "data.dirs", "model.llm.hidden"} <= set(keys)
    assert {resume_rule(k) for k in keys} == {MUST_MATCH, APPLIED, IRRELEVANT}  # KeyError for a key left out
    stale = [e for e in RESUME_RULES if e not in keys and not any(k.startswith(e + ".") for k in keys)]
    assert not stale, f"RESUME_RULES names keys the schema does not have: {stale}"
    with pytest.raises(KeyError, match="RESUME_RULES"):
        resume_rule("train.a_new_knob")  # what a key added to the schema without a rule gets
    assert resume_rule("train.steps") == APPLIED and resume_rule("model.llm.vocab_size") == MUST_MATCH


def _changed(value):
    """Another value of the same JSON type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1 if isinstance(value, int) else value + 0.5
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, list):
        return [*value, value[0]] if value else ["other"]
    if isinstance(value, dict):
        return {**value, "other": 1.0}
    return "other"


@pytest.fixture(scope="module")
def base_config():
    return compose_config(_overrides(Path("/nowhere/run"), "/nowhere/data"))


@pytest.mark.parametrize("key", schema_keys())
def test_resume_rule_holds_for_every_key(tmp_path, base_config, key):
    """A run resumed with one key changed: refused naming the key (must match), or accepted (may change)."""
    saved = config_dict(base_config)
    *groups, leaf = key.split(".")
    node = saved
    for g in groups:
        node = node[g]
    before, node[leaf] = node[leaf], _changed(node[leaf])
    step = tmp_path / "checkpoints" / "000003"
    (step / ck.PRETRAINED_DIR).mkdir(parents=True)
    (step / ck.PRETRAINED_DIR / ck.TRAIN_CONFIG).write_text(json.dumps(saved))
    ck.point_last(tmp_path / "checkpoints", "000003")
    cfg = copy.deepcopy(base_config)
    cfg.resume = True
    if resume_rule(key) == MUST_MATCH:
        with pytest.raises(ValueError) as err:
            check_run_folder(cfg, tmp_path)
        message = str(err.value)
        assert "\n" not in message and f"{key}: saved {node[leaf]!r}, now {before!r}" in message, message
    else:
        assert check_run_folder(cfg, tmp_path) == step.resolve()


def test_set_total_steps_gives_the_longer_schedule_from_the_current_update():
    model = nn.Linear(3, 2)
    opt = make_optimizer(model, LR, 0.0, (0.9, 0.95), 1e-8)
    sched = make_scheduler(opt, WARMUP, 6, MIN_RATIO)
    for _ in range(6):
        opt.step()
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(LR * MIN_RATIO)  # the 6-update schedule is spent
    lrs = set_total_steps(sched, 12)
    longer = WarmupCosine(WARMUP, 12, MIN_RATIO)
    assert lrs[0] == sched.get_last_lr()[0] == opt.param_groups[0]["lr"] == pytest.approx(LR * longer(6))
    with pytest.raises(ValueError, match="total >= 1"):
        set_total_steps(sched, 0)


def test_resume_of_a_finished_run_with_more_steps_follows_the_longer_schedule(tmp_path, dataset, six_steps):
    """The issue's input: a finished 6-update run resumed with train.steps=12."""
    out = _copy(six_steps, tmp_path)
    log, summary = out / "train_log.jsonl", (out / "train_summary.json").read_text()
    # train.steps at or below the updates done: nothing to train, refused; nothing rewritten
    for steps, says in ((6, "the run is finished"), (4, "has done 6 updates")):
        with pytest.raises(ValueError, match=rf"train\.steps={steps} but .*{says}.*train\.steps > 6") as err:
            run(_cfg(out, dataset, f"train.steps={steps}", "resume=true"))
        assert "\n" not in str(err.value)
    assert (out / "train_summary.json").read_text() == summary and len(_rows(log)) == 6
    result = run(_cfg(out, dataset, "train.steps=12", "resume=true"))
    assert result["steps"] == 12 and result["finished"]
    longer = WarmupCosine(WARMUP, 12, MIN_RATIO)
    lrs = {r["step"]: r["lr"] for r in _rows(log)}
    assert [lrs[s] for s in range(7, 13)] == pytest.approx([LR * longer(s - 1) for s in range(7, 13)], rel=1e-12)
    assert lrs[7] > 5 * LR * MIN_RATIO, "update 7 must not run at the spent schedule's minimum"
    last = ck.last_checkpoint(out)
    sched = json.loads((last / ck.STATE_DIR / ck.SCHEDULER_FILE).read_text())
    saved = json.loads((last / ck.PRETRAINED_DIR / ck.TRAIN_CONFIG).read_text())
    assert last.name == "000012" and {fn["total"] for fn in sched["lr_lambdas"]} == {12} and saved["train"]["steps"] == 12


def test_resume_applies_changed_bookkeeping_and_records_it(tmp_path, dataset):
    """The "may change, applied" keys take effect from the resumed update on and later checkpoints say so."""
    out = tmp_path / "run"
    run(_cfg(out, dataset, "stop_after=3"))
    applied = {"log_every": 2, "save_every": 1, "keep_checkpoints": 1, "stop_after": 2, "device": "cpu",
               "train.nan_policy": "skip", "train.max_skipped": 7, "eval.every": 2, "eval.examples": 1,
               "eval.batch_size": 1, "eval.max_new_tokens": 4, "eval.max_long_tokens": 4, "eval.samples": 0}
    run(_cfg(out, dataset, "resume=true", *(f"{k}={v}" for k, v in applied.items())))
    assert [r["step"] for r in _rows(out / "train_log.jsonl")] == [1, 2, 3, 4]  # log_every 1, then 2
    assert [r["step"] for r in _rows(out / "eval_history.jsonl")] == [4]  # eval.every 0, then 2
    steps = sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == ["000005"] and ck.last_checkpoint(out).name == "000005"  # stop_after 2, keep 1, saved at 4 and 5
    saved = json.loads((ck.last_checkpoint(out) / ck.PRETRAINED_DIR / ck.TRAIN_CONFIG).read_text())
    for key, value in applied.items():
        node = saved
        for part in key.split("."):
            node = node[part]
        assert node == value, key


# ---- item 12 (loading): a resumed training state is checked before it is used -----------------------------

def _state_checkpoint(tmp_path: Path):
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = make_optimizer(model, LR, 0.1, (0.9, 0.95), 1e-8)
    sched = make_scheduler(opt, WARMUP, 10, MIN_RATIO)
    for _ in range(3):
        opt.zero_grad()
        model(torch.ones(2, 4)).sum().backward()
        opt.step()
        sched.step()
    path = ck.save_checkpoint(tmp_path, 3, save_model=lambda d: None, train_config={}, optimizer=opt,
                              scheduler=sched, rng=ck.capture_rng(), training_step={"data": {}, "skipped": 0})
    fresh_opt = make_optimizer(model, LR, 0.1, (0.9, 0.95), 1e-8)
    return path, fresh_opt, make_scheduler(fresh_opt, WARMUP, 10, MIN_RATIO)


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


CORRUPTIONS = {  # what is done to training_state/, and the file the refusal must name
    "optimizer-truncated": (lambda d: (d / ck.OPTIMIZER_FILE).write_bytes((d / ck.OPTIMIZER_FILE).read_bytes()[:50]),
                            ck.OPTIMIZER_FILE),
    "optimizer-of-another-model": (lambda d: _other_optimizer(d / ck.OPTIMIZER_FILE), ck.OPTIMIZER_FILE),
    "scheduler-total-text": (lambda d: _edit_json(d / ck.SCHEDULER_FILE, lambda s: s["lr_lambdas"][0].update(total="x")),
                             ck.SCHEDULER_FILE),
    "scheduler-at-another-step": (lambda d: _edit_json(d / ck.SCHEDULER_FILE, lambda s: s.update(last_epoch=9)),
                                  ck.SCHEDULER_FILE),
    "rng-wrong-dtype": (lambda d: _rng_of(d / ck.RNG_FILE), ck.RNG_FILE),
    "step-not-an-object": (lambda d: (d / ck.STEP_FILE).write_text("[3]"), ck.STEP_FILE),
}


def _other_optimizer(path: Path) -> None:
    other = make_optimizer(nn.Linear(2, 2), LR, 0.1, (0.9, 0.95), 1e-8)
    other.zero_grad()
    other.param_groups[0]["params"][0].sum().backward()
    other.step()
    ck.save_optimizer(other, path)


def _rng_of(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"torch": torch.zeros(8, dtype=torch.float32)}, str(path))


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_training_state_is_refused_in_one_line_naming_the_file(tmp_path, case):
    path, opt, sched = _state_checkpoint(tmp_path)
    corrupt, name = CORRUPTIONS[case]
    corrupt(path / ck.STATE_DIR)
    before = [g["lr"] for g in opt.param_groups]
    with pytest.raises(ValueError) as err:
        ck.load_training_state(path, opt, sched)
    assert name in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert [g["lr"] for g in opt.param_groups] == before and not opt.state, "nothing of it was loaded"


# ---- item 15: output locations are checked at start, before any update --------------------------------------

def _make_read_only(folder: Path) -> bool:
    """Make `folder` refuse new files, also for root (chattr +i); False when that is not possible here."""
    folder.chmod(0o555)
    try:
        (folder / ".probe").touch()
    except OSError:
        return True
    (folder / ".probe").unlink()
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False) if shutil.which("chattr") else None
    return done is not None and done.returncode == 0


def _undo_read_only(folder: Path) -> None:
    if shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True, check=False)
    folder.chmod(0o755)


def test_resume_into_a_read_only_checkpoints_folder_is_refused_before_any_update(tmp_path, dataset):
    out = tmp_path / "run"
    run(_cfg(out, dataset, "stop_after=3"))
    log = (out / "train_log.jsonl").read_text()
    folder = out / "checkpoints"
    try:
        if not _make_read_only(folder):
            pytest.skip("running as root without chattr +i here: no folder root cannot write into")
        with pytest.raises(ValueError) as err:
            run(_cfg(out, dataset, "resume=true"))
    finally:
        _undo_read_only(folder)
    message = str(err.value)
    assert message.startswith(f"checkpoints folder {folder} is not writable") and "\n" not in message, message
    assert (out / "train_log.jsonl").read_text() == log and ck.last_checkpoint(out).name == "000003"


LOCATIONS = {  # (what is in the way: a file, or a folder when it ends in "/"; the run folder; the refusal's start)
    "run-folder-under-a-file": ("file", "file/run", "run folder {out} cannot be created: {tmp}/file is a file"),
    "tb-is-a-file": ("run/tb", "run", "TensorBoard folder {out}/tb is a file, not a folder"),
    "checkpoints-is-a-file": ("run/checkpoints", "run", "checkpoints folder {out}/checkpoints is a file"),
    "train-log-is-a-folder": ("run/train_log.jsonl/", "run", "{out}/train_log.jsonl is a folder"),
}


@pytest.mark.parametrize("case", list(LOCATIONS))
def test_unwritable_output_locations_are_refused_before_data_is_read(tmp_path, case):
    blocker, out_rel, says = LOCATIONS[case]
    if blocker.endswith("/"):
        (tmp_path / blocker).mkdir(parents=True)
    else:
        (tmp_path / blocker).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / blocker).write_text("in the way")
    out = tmp_path / out_rel
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError) as err:  # the data folder does not exist: the outputs are checked first
        run(_cfg(out, tmp_path / "no-data"))
    assert str(err.value).startswith(says.format(out=out, tmp=tmp_path)) and "\n" not in str(err.value), str(err.value)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before, "nothing created"


def test_export_refuses_a_bad_destination_or_model_before_writing(tmp_path, six_steps, capsys):
    from training.export import export, main

    (tmp_path / "file").write_text("in the way")
    with pytest.raises(SystemExit) as exit_:
        main([str(six_steps), str(tmp_path / "file" / "model")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"python -m training.export: error: export destination {tmp_path}/file/model cannot")
    broken = _copy(six_steps, tmp_path)
    weights = ck.last_checkpoint(broken) / ck.PRETRAINED_DIR / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="model.safetensors"):
        export(broken, tmp_path / "new" / "model")
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".palme-export-*")), "nothing left behind"
    assert (export(six_steps, tmp_path / "ok") / "model.safetensors").is_file()


# ---- item 16: user errors are one line, exit 2, and a refused start leaves nothing -----------------------

@pytest.mark.parametrize(("override", "says"), [
    ("train.steps=abc", ["train.steps", "expects int"]),
    ("model=nope", ["model/nope", "palme-tiny"]),
    ("experiment=nope", ["experiment/nope", "palme_tiny"]),  # was silently ignored (an optional group)
    ("train.stage=bogus", ["train.stage", "bogus"]),
    ("bogus=1", ["bogus"]),
])
def test_config_errors_read_as_one_line_naming_the_key(override, says):
    with pytest.raises(Exception) as err:  # hydra's, OmegaConf's or our ValueError
        compose_config([override])
    line = error_line(err.value)
    assert line is not None and "\n" not in line and all(s in line for s in says), line


@pytest.mark.parametrize(("override", "says"), [
    ("eval.split=L9", "unknown eval.split 'L9'; known splits"),
    ("eval.tasks=[push/juggle]", "unknown task 'juggle' in eval.tasks for env 'push'; known tasks"),
    ("eval.tasks=[juggle]", "eval.tasks entry 'juggle' must read world/task"),
    ("eval.block_set=BLOCK_8 eval.split=L3", "eval.block_set=BLOCK_8 with eval.split=L3: split 'L3' draws"),
])
def test_closed_loop_evaluation_names_are_checked_before_training(tmp_path, override, says):
    """Met only at the first closed-loop evaluation (after training) before; now refused first, nothing written."""
    with pytest.raises(ValueError, match=rf"^{says}"):
        run(_cfg(tmp_path / "run", tmp_path / "no-data", "eval.episodes=1", *override.split()))
    assert not list(tmp_path.iterdir())


def test_the_closed_loop_during_training_takes_the_state_keys_and_the_block_set_in_push_only():
    from training.evaluation import env_kwargs

    cfg = _cfg(Path("unused"), "unused", "eval.state=noisy", "eval.state_noise_m=0.02", "eval.block_set=BLOCK_8").eval
    assert env_kwargs(cfg, "push") == {"split": "L1", "state": "noisy", "state_noise_m": 0.02, "block_set": "BLOCK_8"}
    assert env_kwargs(cfg, "pickplace") == {"split": "L1", "state": "noisy", "state_noise_m": 0.02}
    assert type(cfg.executor()).__name__ == type(_cfg(Path("u"), "u").eval.executor()).__name__  # skills_use default
    with pytest.raises(ValueError, match="state must be one of"):
        _cfg(Path("unused"), "unused", "eval.state=magic")


def test_device_names_are_checked():
    with pytest.raises(ValueError, match="device must be auto, cpu or cuda"):
        dd.setup("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device=cuda but .* no CUDA device"):
            dd.setup("cuda")


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("pybullet build time")]


def test_cli_user_errors_are_one_line_exit_2_and_leave_no_run_folder(tmp_path, six_steps):
    """Through the real palme-train: a type error (hydra composes the config) and an init_from that does not load
    (the job refuses it; hydra had already made the run folder)."""
    bad_ckpt = tmp_path / "bad-model"
    shutil.copytree(ck.last_checkpoint(six_steps) / ck.PRETRAINED_DIR, bad_ckpt)
    (bad_ckpt / "model.safetensors").write_bytes(b"\x00" * 16)
    missing = tmp_path / "no-data"
    cases = {  # name: (arguments, what the line must say); init_from is refused before the data is read
        "type": (["train.steps=abc"], ["train.steps", "expects int"]),
        "init_from": ([f"data.dirs=[{missing}]", f"init_from={bad_ckpt}"], [str(bad_ckpt / "model.safetensors")]),
    }
    procs = {name: subprocess.Popen([str(BIN / "palme-train"), *args, f"output_dir={tmp_path / name}", "progress=false"],
                                    cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (args, _) in cases.items()}
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=180)
        lines = _error_lines(stderr)
        assert proc.returncode == 2 and len(lines) == 1, (name, stderr[-3000:])
        assert lines[0].startswith("palme-train: error: ") and "Traceback" not in stderr, (name, lines)
        assert all(s in lines[0] for s in cases[name][1]), (name, lines[0])
        assert not (tmp_path / name).exists(), f"{name}: the refused start left its run folder behind"
