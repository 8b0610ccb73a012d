"""AdamW with decoupled weight decay on matrices only, and a warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


class WarmupCosine:
    """LR multiplier: linear warmup from 0 to 1 over `warmup` steps, then cosine down to `min_ratio`.

    A class rather than a closure so `LambdaLR.state_dict()` saves its fields (plain numbers, JSON-able)
    and a resumed run can check them.
    """

    def __init__(self, warmup: int, total: int, min_ratio: float = 0.1) -> None:
        if total < 1 or warmup < 0 or not 0.0 <= min_ratio <= 1.0:
            raise ValueError(f"need total >= 1, warmup >= 0, 0 <= min_ratio <= 1; got {total}, {warmup}, {min_ratio}")
        self.warmup, self.total, self.min_ratio = warmup, total, min_ratio

    def __call__(self, step: int) -> float:
        """Multiplier of the base LR for the update with index `step` (0-based)."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(named: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight decay on >=2-D weights, none on biases, norms and scalars."""
    decay, no_decay = [], []
    for _, p in named:
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], eps: float
) -> torch.optim.AdamW:
    """AdamW over the model's trainable parameters (raises when nothing trains)."""
    groups = param_groups(model.named_parameters(), weight_decay)
    if not any(g["params"] for g in groups):
        raise ValueError("no trainable parameters: the chosen stage froze the whole model")
    # foreach=False keeps the update order fixed, so 1-process and DDP runs stay bit-comparable.
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=False)


def make_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total: int, min_ratio: float):
    """LambdaLR with `WarmupCosine` on every group."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, total, min_ratio))


def set_total_steps(scheduler: torch.optim.lr_scheduler.LambdaLR, total: int) -> list[float]:
    """Make a (resumed) `make_scheduler` schedule end at update `total`, keeping its position.

    Every group's `WarmupCosine` gets the new total, and the LR of the next update (the scheduler's
    `last_epoch`, 0-based) becomes the one the new schedule gives it: from here on the rates are those
    of a run started with `total` updates. Returns the new per-group LRs; ValueError for total < 1.
    """
    if total < 1:
        raise ValueError(f"need total >= 1 updates, got {total}")
    fns = scheduler.lr_lambdas
    if not all(isinstance(fn, WarmupCosine) for fn in fns):
        raise TypeError("set_total_steps needs a scheduler made by make_scheduler (WarmupCosine on every group)")
    for fn in fns:
        fn.total = total
    lrs = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, fns, strict=True)]
    for group, lr in zip(scheduler.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    scheduler._last_lr = lrs  # what get_last_lr() returns (torch keeps it there)
    return lrs
