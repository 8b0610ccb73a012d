"""Evaluation during training: held-out accuracy per example source, and closed-loop success with the in-memory model.

What is measured is derived from the source registry (training/sources.py): every source of the
mixture with held-out examples reports `<source>_acc`, scored by its `metric`; the sources marked
`vqa` are pooled into `vqa_acc`; a source's `headline` repeats its accuracy (plan: `plan_exact`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from training.config import TrainEvalConfig
from training.data import TrainData
from training.sources import get_source


def heldout_metrics(model: Any, data: TrainData, cfg: TrainEvalConfig) -> tuple[dict[str, float], str]:
    """Per-source accuracy on `cfg.examples` held-out examples each, `vqa_acc`, headlines, and sample
    generations (a markdown table; "" when nothing is held out)."""
    metrics: dict[str, float] = {}
    rows: list[str] = []
    vqa_hits = vqa_n = 0
    for name, refs in sorted(data.heldout_picks(cfg.examples).items()):
        if not refs:
            continue
        source = get_source(name)
        examples = [data.example(r) for r in refs]
        preds: list[str] = []
        budget = cfg.max_long_tokens if source.long_answer else cfg.max_new_tokens
        for i in range(0, len(examples), cfg.batch_size):
            preds += model.generate(examples[i:i + cfg.batch_size], max_new_tokens=budget)
        hits = [source.score(p, e.answer) for p, e in zip(preds, examples, strict=True)]
        metrics[f"{name}_acc"] = sum(hits) / len(hits)
        if source.headline:
            metrics[source.headline] = metrics[f"{name}_acc"]
        if source.vqa:
            vqa_hits, vqa_n = vqa_hits + sum(hits), vqa_n + len(hits)
        for e, p, h in list(zip(examples, preds, hits, strict=True))[: cfg.samples]:
            rows.append(f"| {name} | {_cell(e.prompt[-120:])} | {_cell(e.answer)} | {_cell(p)} | {'yes' if h else 'no'} |")
    if vqa_n:
        metrics["vqa_acc"] = vqa_hits / vqa_n
    table = "| source | prompt (end) | answer | generated | match |\n|---|---|---|---|---|\n" + "\n".join(rows)
    return metrics, (table if rows else "")


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " <br> ")


def env_kwargs(cfg: TrainEvalConfig, world: str) -> dict[str, Any]:
    """`make_env` keywords of the closed loop in `world`: the split and the state keys, the block set only in the
    worlds that have block sets (a mixed-world run evaluates its pick-and-place tasks without one)."""
    from envs import BLOCK_SET_WORLDS

    state = cfg.state_options()
    if world not in BLOCK_SET_WORLDS:
        state = replace(state, block_set=None)
    return state.env_kwargs(world, cfg.split)


def closed_loop_success(model: Any, data: TrainData, cfg: TrainEvalConfig, seed_offset: int = 0) -> dict[str, float]:
    """Success rate of the agent loop with the model as planner, per task, on test seeds of `cfg.split`."""
    from agent.loop import Agent
    from agent.planners import PalmEPlanner
    from envs import make_env
    from envs.tasks.base import seed_range

    tasks = [tuple(t.split("/", 1)) for t in cfg.tasks] if cfg.tasks else data.tasks
    planner = PalmEPlanner(model=model, max_new_tokens=cfg.max_new_tokens, constrained=cfg.constrained)
    agent = Agent(planner, executor=cfg.executor())
    image: dict[str, Any] = {} if data.image_shape is None else {"image_size": tuple(data.image_shape[:2])}
    metrics: dict[str, float] = {}
    total = wins = 0
    lo, _ = seed_range(cfg.split)
    for world, task in tasks:
        env = make_env(world, task, **env_kwargs(cfg, world), **image)
        try:
            ok = [bool(agent.episode(env, seed=lo + seed_offset + i).success) for i in range(cfg.episodes)]
        finally:
            env.close()
        metrics[f"success/{world}/{task}"] = sum(ok) / len(ok)
        total, wins = total + len(ok), wins + sum(ok)
    if total:
        metrics["success"] = wins / total
    return metrics
