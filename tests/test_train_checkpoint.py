"""Checkpoint I/O: exact optimizer/scheduler/RNG round trips, LeRobot layout, atomic `last` pointer."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

from training import checkpoint as ck
from training.optim import WarmupCosine, make_optimizer, make_scheduler


def _trained(seed: int = 0, steps: int = 3):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8)
    sched = make_scheduler(opt, warmup=2, total=10, min_ratio=0.1)
    x = torch.randn(16, 4)
    for _ in range(steps):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        sched.step()
    return model, opt, sched, x


def _continue(model, opt, sched, x, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return losses


def _save(tmp_path, step, model, opt, sched, **extra):
    return ck.save_checkpoint(
        tmp_path,
        step,
        save_model=lambda d: torch.save(model.state_dict(), d / "w.pt"),
        train_config={"seed": 1},
        optimizer=opt,
        scheduler=sched,
        rng=ck.capture_rng(),
        training_step={"data": {"epoch": 0, "offset": 5}, **extra},
    )


def test_resumed_optimizer_and_scheduler_continue_exactly(tmp_path):
    model, opt, sched, x = _trained()
    path = _save(tmp_path, 3, model, opt, sched)
    reference = _continue(model, opt, sched, x, 4)

    model2, opt2, sched2, _ = _trained(steps=0)
    model2.load_state_dict(torch.load(path / "pretrained_model" / "w.pt", weights_only=True))
    step_info, rng = ck.load_training_state(path, opt2, sched2)
    assert step_info == {"step": 3, "data": {"epoch": 0, "offset": 5}}
    assert _continue(model2, opt2, sched2, x, 4) == reference
    assert set(rng) >= {"torch"}


def test_layout_matches_lerobot_and_last_points_at_newest(tmp_path):
    model, opt, sched, _ = _trained()
    _save(tmp_path, 3, model, opt, sched)
    _save(tmp_path, 12, model, opt, sched)
    root = tmp_path / "checkpoints"
    assert (root / "last").is_symlink() and (root / "last").resolve() == (root / "000012").resolve()
    files = {p.relative_to(root / "000012").as_posix() for p in (root / "000012").rglob("*") if p.is_file()}
    assert files == {
        "pretrained_model/w.pt",
        "pretrained_model/train_config.json",
        "training_state/optimizer_state.safetensors",
        "training_state/scheduler_state.json",
        "training_state/rng_state.safetensors",
        "training_state/training_step.json",
    }
    assert not [p for p in root.iterdir() if p.name.startswith(".")], "temporary folders left behind"
    assert ck.resolve_checkpoint(tmp_path) == (root / "000012").resolve()
    assert ck.resolve_checkpoint(root / "000003" / "pretrained_model") == (root / "000003").resolve()
    json.loads((root / "000012" / "training_state" / "scheduler_state.json").read_text())


def test_failed_save_leaves_previous_checkpoint_last(tmp_path):
    model, opt, sched, _ = _trained()
    _save(tmp_path, 3, model, opt, sched)

    def broken(_dir):
        raise OSError("disk full")

    with pytest.raises(OSError):
        ck.save_checkpoint(
            tmp_path, 6, save_model=broken, train_config={}, optimizer=opt, scheduler=sched,
            rng=ck.capture_rng(), training_step={},
        )
    assert ck.last_checkpoint(tmp_path).name == "000003"
    assert not (tmp_path / "checkpoints" / "000006").exists()


def test_missing_training_state_file_is_named(tmp_path):
    model, opt, sched, _ = _trained()
    path = _save(tmp_path, 3, model, opt, sched)
    (path / "training_state" / "rng_state.safetensors").unlink()
    with pytest.raises(ValueError, match="rng_state.safetensors is missing"):
        ck.load_training_state(path, opt, sched)
    with pytest.raises(ValueError, match="not a checkpoint"):
        ck.resolve_checkpoint(tmp_path / "nowhere")


def test_warmup_cosine_shape():
    f = WarmupCosine(warmup=4, total=20, min_ratio=0.1)
    assert [round(f(i), 3) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    values = [f(i) for i in range(4, 25)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert values[-1] == pytest.approx(0.1)
