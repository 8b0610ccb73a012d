"""Command-line keys of the hydra CLIs (issue #22, item 2 and 3): misspelt keys refused with or without `+`
naming the closest key, `--help` from the schemas' field comments, one value for a list key, and palme-train's
run folder following `hydra.run.dir`.

Most checks call run_cli-level helpers in-process; three subprocess runs check the real entry points.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.common import check_overrides, cli_help, run_cli
from agent.cli.help import schema_fields, suggest
from agent.config import RunConfig
from agent.evaluate import EvalConfig
from training.collect import CollectConfig
from training.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SCHEMAS = {"palme-run": RunConfig, "palme-eval": EvalConfig, "palme-collect": CollectConfig, "palme-train": TrainConfig}


@pytest.mark.parametrize(("prog", "override", "near"), [
    ("palme-run", "+tsk=stack", "task"),
    ("palme-run", "tsk=stack", "task"),
    ("palme-eval", "+task=stack", "tasks"),
    ("palme-eval", "episodez=3", "episodes"),
    ("palme-collect", "+episode=3", "episodes"),
    ("palme-train", "+train.stepz=5", "train.steps"),
    ("palme-train", "lr=0.1", "train.lr"),  # a nested key's last part alone
    ("palme-train", "~model.llm.hiden", "model.llm.hidden"),
    ("palme-train", "+data.weightz.vqa=1", "data.weights"),
])
def test_unknown_keys_refused_naming_the_closest(prog, override, near):
    with pytest.raises(ValueError, match=r"unknown key") as err:
        check_overrides(prog, [override], SCHEMAS[prog])
    msg = str(err.value)
    assert "\n" not in msg and f"did you mean {near!r}?" in msg and f"{prog} --help" in msg


def test_known_keys_hydra_keys_groups_and_dict_entries_pass():
    given = ["+data.weights.new_source=0.1", "data.weights.vqa=2", "model=palme-tiny", "experiment=palme_tiny",
             "hydra.run.dir=x", "hydra.job.chdir=true", "~seed", "model.llm.hidden=64", "train.lr=1e-3",
             "eval.tasks=null", "data.dirs=[a,b]", "data.dirs=${oc.env:HOME}", "output_dir=o"]
    assert check_overrides("palme-train", given, TrainConfig) == given


def test_one_value_for_a_list_key_becomes_a_list():
    got = check_overrides("palme-eval", ["tasks=stack", "splits=L2", "image_size=null", "tasks=[a,b]", "episodes=3"],
                          EvalConfig)
    assert got == ["tasks=[stack]", "splits=[L2]", "image_size=null", "tasks=[a,b]", "episodes=3"]
    got = check_overrides("palme-train", ["data.dirs=data/stack", "train.betas=0.9", "+eval.tasks='push/a b'"],
                          TrainConfig)
    assert got == ["data.dirs=[data/stack]", "train.betas=[0.9]", "+eval.tasks=['push/a b']"]


def test_one_task_evaluates_that_task(monkeypatch):
    """`palme-eval tasks=stack` composes to tasks=['stack'] (it failed with "str is not a ListConfig")."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from agent.evaluate import register_configs

    register_configs()
    seen = {}
    monkeypatch.setattr(sys, "argv", ["palme-eval", "tasks=stack", "split=L2"])

    def app():
        seen["argv"] = list(sys.argv)
        with initialize_config_module(config_module="configs", version_base=None):
            seen["cfg"] = OmegaConf.to_object(compose(config_name="eval", overrides=sys.argv[1:]))

    run_cli("palme-eval", app)
    assert seen["argv"] == ["palme-eval", "tasks=[stack]", "split=L2"]
    assert seen["cfg"].tasks == ["stack"] and seen["cfg"].splits == ["L2"]
    assert sys.argv == ["palme-eval", "tasks=stack", "split=L2"]  # restored after the call


def test_run_cli_refuses_before_the_app_runs(monkeypatch, capsys):
    from agent.config import register_configs

    register_configs()
    monkeypatch.setattr(sys, "argv", ["palme-run", "+tsk=stack"])
    called = []
    with pytest.raises(SystemExit) as ex:
        run_cli("palme-run", lambda: called.append(1))
    err = capsys.readouterr().err.strip()
    assert ex.value.code == 2 and not called
    assert err == ("palme-run: error: unknown key 'tsk' in '+tsk=stack'; did you mean 'task'? "
                   "(palme-run --help lists the keys)")


@pytest.mark.parametrize("prog", list(SCHEMAS))
def test_every_key_has_a_description_from_its_comment(prog):
    fields = schema_fields(SCHEMAS[prog])
    assert [f.key for f in fields if not f.help] == []
    by_key = {f.key: f for f in fields}
    if prog == "palme-run":
        assert by_key["task"].help == "task of the world (unknown names list the known ones)"
        assert by_key["checkpoint"].type == "str | None"  # inherited from PlannerOptions, with its comment
        assert by_key["checkpoint"].help.startswith("model planners: checkpoint folder")
    if prog == "palme-train":
        assert by_key["data.weights"].is_dict and by_key["data.dirs"].is_list and by_key["model.llm"].is_group


def test_help_lists_keys_types_values_and_descriptions():
    from training.config import register_configs

    register_configs()
    text = cli_help("palme-train", "train", TrainConfig, ["experiment=palme_tiny"])
    lines = text.splitlines()
    assert lines[0].startswith("usage: palme-train")
    assert "    train.warmup_steps (int, 100): linear warmup from 0 to lr" in lines  # `key (type, default): description`
    assert any(ln.startswith("  run_name (str, palme-tiny-r1): ") for ln in lines)  # the experiment's value
    assert any(ln.startswith("  output_dir (str, outputs/train/${run_name}): ") for ln in lines)  # as written
    assert any(ln.startswith("  experiment (palme_tiny): ") and "palme_tiny_dagger" in ln for ln in lines)
    assert "--hydra-help" in lines[-1]


def test_suggest_prefers_the_whole_key():
    keys = ["task", "tasks", "train.steps", "train.lr", "eval.every"]
    assert suggest("tsk", keys) == "task"
    assert suggest("train.stepz", keys) == "train.steps"
    assert suggest("every", keys) == "eval.every"
    assert suggest("zzzzzz", keys) is None


def test_train_run_folder_follows_hydra_run_dir(tmp_path):
    from training.train import compose_config, follow_hydra_run_dir, run_dir

    cfg = compose_config(["run_name=x"])
    assert run_dir(cfg) == Path("outputs/train/x")
    assert run_dir(follow_hydra_run_dir(cfg, "outputs/train/x", output_dir_given=False)) == Path("outputs/train/x")
    assert run_dir(follow_hydra_run_dir(cfg, tmp_path / "r", output_dir_given=False)) == tmp_path / "r"
    cfg = compose_config([f"output_dir={tmp_path / 'a'}"])
    with pytest.raises(ValueError, match="name different run folders"):
        follow_hydra_run_dir(cfg, tmp_path / "b", output_dir_given=True)


# ---- the real entry points (subprocess) -----------------------------------------------------------------


def _cli(*args: str, cwd: Path = REPO, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_cli_misspelt_key_with_plus_is_refused(tmp_path):
    done = _cli("palme-eval", "+task=stack", "planner=oracle", f"hydra.run.dir={tmp_path / 'ev'}")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "palme-eval: error: unknown key 'task' in '+task=stack'; did you mean 'tasks'? (palme-eval --help lists the keys)"]
    assert not (tmp_path / "ev").exists()


def test_cli_help_shows_descriptions():
    done = _cli("palme-run", "--help")
    assert done.returncode == 0, done.stderr
    assert "  task (str, stack): task of the world (unknown names list the known ones)" in done.stdout.splitlines()


def test_cli_train_writes_everything_into_hydra_run_dir(tmp_path):
    from tests.test_train import TINY

    data = tmp_path / "data"
    collect = _cli("palme-collect", "env=push", "task=block2block", "episodes=2", "workers=1", f"out={data}",
                   "image_size=[32,32]", "progress=false", f"hydra.run.dir={tmp_path / 'col'}")
    assert collect.returncode == 0, collect.stderr
    out = tmp_path / "run"
    done = _cli("palme-train", *TINY, f"data.dirs={data}", f"hydra.run.dir={out}", "train.steps=2",
                "train.batch_size=4", "save_every=2", "eval.every=0", "eval.final=false", "progress=false",
                "num_threads=1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert {"checkpoints", "tb", "train.log", "train_log.jsonl", "train_summary.json"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "train_summary.json").read_text())["run_dir"] == str(out)
    assert not (tmp_path / "outputs").exists()  # nothing under outputs/train/<run_name>
