"""palme-train: resume reproduces an uninterrupted run, DDP matches one process, the NaN guard, bad input, and
collect -> train -> eval through the real CLIs.

One small pushing dataset is collected once with the real `palme-collect` and shared by every test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from agent.prompts import PromptBuilder
from training import checkpoint as ck
from training.batches import length_groups
from training.dataset import LogDataset
from training.examples import ExampleBuilder
from training.train import NonFiniteLossError, compose_config, run

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# A model small enough that a few updates take well under a second on CPU.
TINY = [
    "model=palme-small", "model.llm.hidden=32", "model.llm.layers=1", "model.llm.heads=2", "model.llm.kv_heads=2",
    "model.llm.intermediate=64", "model.llm.vocab_size=300", "model.vision.image_size=32", "model.vision.patch_size=16",
    "model.vision.hidden=32", "model.vision.layers=1", "model.vision.heads=2", "model.vision.intermediate=64",
    "model.state.hidden=32",
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Three pushing episodes at 32x32, made by the real palme-collect."""
    out = tmp_path_factory.mktemp("data") / "push"
    subprocess.run([str(BIN / "palme-collect"), "env=push", "task=block2block", "episodes=3", "workers=1",
                    f"out={out}", "image_size=[32,32]", "progress=false"], check=True, cwd=REPO, env=_env(),
                   capture_output=True, timeout=120)
    return out


def _overrides(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    return [
        *TINY, f"data.dirs=[{data}]", f"output_dir={tmp_path}/run", "train.steps=6", "train.batch_size=4",
        "train.warmup_steps=2", "train.lr=3e-3", "save_every=3", "log_every=1", "eval.every=0", "eval.final=false",
        "progress=false", "num_threads=1", *extra,
    ]


def _cfg(tmp_path: Path, data: Path, *extra: str):
    return compose_config(_overrides(tmp_path, data, *extra))


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(ln)["loss"] for ln in (run_dir / "train_log.jsonl").read_text().splitlines()]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ck.last_checkpoint(run_dir) / "pretrained_model" / "model.safetensors"))


def test_resume_continues_to_the_same_result(tmp_path, dataset):
    whole = run(_cfg(tmp_path / "a", dataset))
    run(_cfg(tmp_path / "b", dataset, "stop_after=3"))
    assert ck.last_checkpoint(tmp_path / "b" / "run").name == "000003"
    resumed = run(_cfg(tmp_path / "b", dataset, "resume=true"))
    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    assert _losses(a) == _losses(b) and len(_losses(a)) == 6
    assert resumed["final_loss"] == whole["final_loss"]
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # the model folder alone is loadable by the planners
    from agent.model import PalmE

    PalmE.from_pretrained(ck.last_checkpoint(a) / "pretrained_model")


def test_init_from_fine_tunes_the_checkpoint_weights(tmp_path, dataset):
    run(_cfg(tmp_path / "base", dataset, "train.steps=2"))
    base = _weights(tmp_path / "base" / "run")
    run(_cfg(tmp_path / "ft", dataset, f"init_from={tmp_path}/base/run", "train.stage=lora", "train.steps=2"))
    tuned = _weights(tmp_path / "ft" / "run")
    q, q_tuned = "llm.model.layers.0.self_attn.q_proj.weight", "llm.base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"
    assert torch.equal(base[q], tuned[q_tuned]), "LoRA fine-tuning must start from and keep the base LLM weights"
    assert any("lora_" in k for k in tuned)
    p = "encoders.image.projector.0.weight"
    assert not torch.equal(base[p], tuned[p]), "the projector trains"
    saved = json.loads((ck.last_checkpoint(tmp_path / "ft" / "run") / "pretrained_model" / "train_config.json").read_text())
    assert saved["init_from"] == f"{tmp_path}/base/run"


def test_init_from_accepts_an_exported_model_folder_and_names_what_it_expected(tmp_path, dataset):
    from training.export import export

    run(_cfg(tmp_path / "base", dataset, "train.steps=2"))
    export(tmp_path / "base" / "run", tmp_path / "model")  # a standalone folder, like checkpoints/palme-tiny
    run(_cfg(tmp_path / "ft", dataset, f"init_from={tmp_path}/model", "train.steps=1"))
    summary = json.loads((tmp_path / "ft" / "run" / "train_summary.json").read_text())
    assert summary["finished"] and summary["steps"] == 1
    with pytest.raises(ValueError, match="neither a model folder"):
        run(_cfg(tmp_path / "bad", dataset, f"init_from={tmp_path}/nowhere", "train.steps=1"))
    # model flags given with init_from would be silently dropped (the checkpoint's model wins): refused by name
    from training.train import check_model_overrides

    flags = ["model.state.features=[words]", "model.llm.layers=2"]
    cfg = _cfg(tmp_path / "ft2", dataset, f"init_from={tmp_path}/model", *flags)
    with pytest.raises(ValueError, match=r"model\.llm\.layers=2 \(the checkpoint has 1\); model\.state\.features=\['words'\] \(the checkpoint has \[\]\)"):
        check_model_overrides(cfg, [f.split("=")[0] for f in flags])
    same = _cfg(tmp_path / "ft3", dataset, f"init_from={tmp_path}/model", "model.state.features=[]")
    check_model_overrides(same, ["model.state.features"])  # the checkpoint's own value: nothing lost


def test_resume_refuses_a_changed_config_and_names_the_keys(tmp_path, dataset):
    run(_cfg(tmp_path, dataset, "stop_after=3"))
    with pytest.raises(ValueError, match=r"train\.lr: saved 0\.003, now 0\.01"):
        run(_cfg(tmp_path, dataset, "resume=true", "train.lr=1e-2"))
    with pytest.raises(ValueError, match="already holds checkpoints"):
        run(_cfg(tmp_path, dataset))


def test_ddp_two_processes_match_one(tmp_path, dataset):
    # Same global batch (4): one process with 2 accumulation steps vs two processes with one micro-batch each.
    run(_cfg(tmp_path / "one", dataset, "train.steps=4", "save_every=4", "train.grad_accum=2"))
    args = _overrides(tmp_path / "two", dataset, "train.steps=4", "save_every=4")
    proc = subprocess.run([str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29533", "-m",
                           "training.train", *args], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    l1, l2 = _losses(tmp_path / "one" / "run"), _losses(tmp_path / "two" / "run")
    assert len(l1) == len(l2) == 4
    assert l1 == pytest.approx(l2, rel=1e-5, abs=1e-6)
    w1, w2 = _weights(tmp_path / "one" / "run"), _weights(tmp_path / "two" / "run")
    assert all(torch.allclose(w1[k], w2[k], rtol=1e-4, atol=1e-6) for k in w1)


def test_length_grouped_micro_batches_give_the_same_updates(tmp_path, dataset):
    # The global batch split by length into 2 micro-batches: the same objective, so the same run as one batch.
    run(_cfg(tmp_path / "whole", dataset, "train.steps=3", "save_every=3"))
    run(_cfg(tmp_path / "grouped", dataset, "train.steps=3", "save_every=3", "train.grad_accum=2",
             "train.group_by_length=true"))
    assert _losses(tmp_path / "whole" / "run") == pytest.approx(_losses(tmp_path / "grouped" / "run"), rel=1e-5)
    w1, w2 = _weights(tmp_path / "whole" / "run"), _weights(tmp_path / "grouped" / "run")
    assert all(torch.allclose(w1[k], w2[k], rtol=1e-4, atol=1e-6) for k in w1)


def test_length_groups_cover_the_batch_once_and_keep_lengths_together():
    lengths = [90, 12, 150, 40, 41, 200, 13, 88]
    split = length_groups(lengths, world=2, accum=2)
    flat = sorted(i for rank in split for group in rank for i in group)
    assert flat == list(range(8)) and all(len(g) == 2 for rank in split for g in rank)
    # sorted lengths 12 13 | 40 41 | 88 90 | 150 200: snake order gives rank 0 the shortest and longest pairs
    assert [[sorted(lengths[i] for i in g) for g in rank] for rank in split] == [[[12, 13], [150, 200]],
                                                                                 [[40, 41], [88, 90]]]
    with pytest.raises(ValueError, match="cannot split 7 examples into 2 processes x 2 micro-batches"):
        length_groups(lengths[:7], world=2, accum=2)


def test_nan_loss_stops_with_a_clear_message_and_no_nan_checkpoint(tmp_path, dataset):
    # An absurd learning rate blows the weights up after the first update: the next loss is not finite.
    cfg = _cfg(tmp_path, dataset, "train.lr=1e30", "train.warmup_steps=0", "save_every=1")
    with pytest.raises(NonFiniteLossError, match=r"step \d+: non-finite training signal .*train.nan_policy=skip"):
        run(cfg)
    for step_dir in (tmp_path / "run" / "checkpoints").glob("0*"):
        w = load_file(str(step_dir / "pretrained_model" / "model.safetensors"))
        assert all(torch.isfinite(t).all() for t in w.values()), f"{step_dir.name} holds NaN/inf"


def test_nan_policy_skip_skips_then_gives_up(tmp_path, dataset):
    cfg = _cfg(tmp_path, dataset, "train.lr=1e30", "train.warmup_steps=0", "train.nan_policy=skip",
               "train.max_skipped=2", "train.steps=10")
    with pytest.raises(NonFiniteLossError, match="Too many updates in a row were skipped"):
        run(cfg)
    log = [json.loads(ln) for ln in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [e["skipped"] for e in log][-2:] == [True, True]


def test_invalid_data_folder_is_refused_with_the_report(tmp_path, dataset):
    bad = tmp_path / "bad"
    shutil.copytree(dataset, bad)
    victim = min((bad / "data").rglob("*.parquet"))
    victim.write_bytes(victim.read_bytes()[:100])  # truncated parquet
    with pytest.raises(ValueError, match=rf"(?s)failed validation.*{victim.parent.name}/{victim.name}.*skip_invalid"):
        run(_cfg(tmp_path, bad))
    result = run(_cfg(tmp_path, bad, "data.skip_invalid=true", "train.steps=2", "output_dir=" + str(tmp_path / "skip")))
    assert result["steps"] == 2


def test_collect_train_eval_cli(tmp_path, dataset):
    out = tmp_path / "cli"
    subprocess.run([str(BIN / "palme-train"), *TINY, f"data.dirs=[{dataset}]", f"output_dir={out}", "train.steps=3",
                    "train.batch_size=4", "progress=false", "eval.every=3", "eval.examples=2", "eval.max_new_tokens=12",
                    "eval.max_long_tokens=12"],
                   check=True, cwd=REPO, env=_env(), capture_output=True, timeout=180)
    model_dir = ck.last_checkpoint(out) / "pretrained_model"
    assert (model_dir / "config.json").is_file() and (model_dir / "train_config.json").is_file()
    history = [json.loads(ln) for ln in (out / "eval_history.jsonl").read_text().splitlines()]
    assert history[-1]["step"] == 3 and 0.0 <= history[-1]["plan_exact"] <= 1.0
    ev = tmp_path / "eval"
    subprocess.run([str(BIN / "palme-eval"), f"checkpoint={model_dir}", "env=push", "tasks=[block2block]",
                    "episodes=1", "videos_per_task=0", "max_new_tokens=12", "max_steps=2", "progress=false",
                    f"hydra.run.dir={ev}"],
                   check=True, cwd=REPO, env=_env(), capture_output=True, timeout=180)
    info = json.loads((ev / "eval_info.json").read_text())
    assert info["overall"]["n_episodes"] == 1


def test_zone_words_train_on_pick_and_place_logs(tmp_path):
    """A model with zone_words trains on real sort_by_color logs: its examples carry the zones' rows and vqa_zone asks about them."""
    data = tmp_path / "sort"
    subprocess.run([str(BIN / "palme-collect"), "env=pickplace", "task=sort_by_color", "episodes=1", "workers=1",
                    f"out={data}", "image_size=[32,32]", "progress=false"], check=True, cwd=REPO, env=_env(),
                   capture_output=True, timeout=180)
    builder = ExampleBuilder(LogDataset(data), PromptBuilder(context=("zones",)))  # what zone_words reads
    plans, zone_qa = builder.specs("plan"), builder.specs("vqa_zone")
    assert plans and zone_qa and not any("zone_" in s.prompt for s in plans + zone_qa)
    ex = builder.materialize(plans[-1])
    assert ex.zones is not None and int(ex.zones[:, -1].sum()) >= 2  # sort_by_color: 2-4 target zones
    ep = LogDataset(data).episodes[0]
    goals = builder.specs("goal")  # "where should X go?" answered from the instruction's goal
    assert goals and all("Where should the " in g.prompt and ep.instruction.rstrip(".") in g.prompt for g in goals)
    assert all(g.answer == "anywhere" or (g.answer.startswith("in the ") and g.answer.endswith(" zone")) for g in goals)
    result = run(_cfg(tmp_path, data, "model.state.features=[words,zone_words]", "train.steps=2", "save_every=2",
                      "+data.weights={plan: 0.5, vqa_zone: 0.5}"))
    assert result["steps"] == 2
    saved = json.loads((ck.last_checkpoint(tmp_path / "run") / "pretrained_model" / "config.json").read_text())
    assert saved["palme"]["state"]["features"] == ["words", "zone_words"]


def test_train_stage_is_the_one_stage_setting_and_training_applies_it():
    import ast

    from agent.model import PalmE
    from training.config import schema_keys
    from training.train import build_model, model_config_of

    assert [k for k in schema_keys() if k.rsplit(".", 1)[-1] == "stage"] == ["train.stage"]  # no model.stage
    for path in sorted((REPO / "training").rglob("*.py")):  # STAGES and IGNORE_INDEX come from agent.model only
        names = {t.id for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, (ast.Assign, ast.AnnAssign))
                 for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}
        assert not names & {"STAGES", "IGNORE_INDEX"}, f"{path.name} redefines {names & {'STAGES', 'IGNORE_INDEX'}}"
    cfg = compose_config([*TINY, "train.stage=frozen_llm"])
    model = PalmE(model_config_of(cfg, None), tokenizer_texts=["pick up the red cube", "done"])
    build_model(cfg, None, model, log=lambda _msg: None)  # a loaded model (init_from, resume) is set to train.stage too
    roles = model.parameter_roles()
    trained = {roles[n] for n, p in model.named_parameters() if p.requires_grad}
    assert "projector" in trained and "llm" not in trained
