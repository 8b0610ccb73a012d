"""Evaluation during training: exact match on held-out examples, and closed-loop success with the in-memory model."""

from __future__ import annotations

import re
from typing import Any

from agent.planners import first_step
from training.config import TrainEvalConfig
from training.data import TrainData

VQA_PREFIXES = ("vqa_", "caption", "success", "skill_success")
LONG_SOURCES = ("plan_full", "caption")  # answers that need more than a step's worth of tokens


def normalize(text: str) -> str:
    """Case, whitespace and trailing punctuation do not count in exact match."""
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(" .").strip()


def answer_matches(source: str, prediction: str, answer: str) -> bool:
    """Exact match; a next-step prediction is cut at its first step (the planner does the same)."""
    if source == "plan":
        prediction = first_step(prediction)
    return normalize(prediction) == normalize(answer)


def _spread(n_total: int, n: int) -> list[int]:
    """n indices spread evenly over range(n_total) (so held-out samples cover many episodes)."""
    if n >= n_total:
        return list(range(n_total))
    return [int(i * n_total / n) for i in range(n)]


def heldout_metrics(model: Any, data: TrainData, cfg: TrainEvalConfig) -> tuple[dict[str, float], str]:
    """Per-source accuracy on held-out episodes, `plan_exact`, `vqa_acc`, and sample generations (markdown)."""
    metrics: dict[str, float] = {}
    rows: list[str] = []
    vqa_hits = vqa_n = 0
    for source in sorted(data.heldout):
        refs = data.heldout[source]
        refs = [refs[i] for i in _spread(len(refs), cfg.examples)]
        if not refs:
            continue
        examples = [data.example(r) for r in refs]
        preds: list[str] = []
        budget = cfg.max_long_tokens if source in LONG_SOURCES else cfg.max_new_tokens
        for i in range(0, len(examples), cfg.batch_size):
            preds += model.generate(examples[i:i + cfg.batch_size], max_new_tokens=budget)
        hits = [answer_matches(source, p, e.answer) for p, e in zip(preds, examples, strict=True)]
        metrics[f"{source}_acc"] = sum(hits) / len(hits)
        if source.startswith(VQA_PREFIXES):
            vqa_hits, vqa_n = vqa_hits + sum(hits), vqa_n + len(hits)
        for e, p, h in list(zip(examples, preds, hits, strict=True))[: cfg.samples]:
            rows.append(f"| {source} | {_cell(e.prompt[-120:])} | {_cell(e.answer)} | {_cell(p)} | {'yes' if h else 'no'} |")
    if "plan_acc" in metrics:
        metrics["plan_exact"] = metrics["plan_acc"]
    if vqa_n:
        metrics["vqa_acc"] = vqa_hits / vqa_n
    table = "| source | prompt (end) | answer | generated | match |\n|---|---|---|---|---|\n" + "\n".join(rows)
    return metrics, (table if rows else "")


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " <br> ")


def closed_loop_success(model: Any, data: TrainData, cfg: TrainEvalConfig, seed_offset: int = 0) -> dict[str, float]:
    """Success rate of the agent loop with the model as planner, per task, on test seeds of `cfg.split`."""
    from agent.loop import Agent
    from agent.planners import PalmEPlanner
    from envs import make_env
    from envs.tasks.base import seed_range

    tasks = [tuple(t.split("/", 1)) for t in cfg.tasks] if cfg.tasks else data.tasks
    planner = PalmEPlanner(model=model, max_new_tokens=cfg.max_new_tokens, constrained=cfg.constrained)
    agent = Agent(planner)
    kwargs: dict[str, Any] = {"split": cfg.split}
    if data.image_shape is not None:
        kwargs["image_size"] = tuple(data.image_shape[:2])
    metrics: dict[str, float] = {}
    total = wins = 0
    lo, _ = seed_range(cfg.split)
    for world, task in tasks:
        env = make_env(world, task, **kwargs)
        try:
            ok = [bool(agent.episode(env, seed=lo + seed_offset + i).success) for i in range(cfg.episodes)]
        finally:
            env.close()
        metrics[f"success/{world}/{task}"] = sum(ok) / len(ok)
        total, wins = total + len(ok), wins + sum(ok)
    if total:
        metrics["success"] = wins / total
    return metrics
