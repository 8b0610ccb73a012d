"""Evaluation statistics: Wilson intervals, per-task / per-split summaries and LeRobot's `eval_info.json` layout.

An episode record is the flat dict `agent.evaluate` writes to `episodes.jsonl`, one per line:
`split`, `task`, `episode`, `seed`, `success`, `failure` (None or a kind of FAILURE_KINDS),
`reason`, `n_steps`, `plan_length`, `oracle_plan_length`, `n_replans`, `n_parse_errors`,
`n_planner_calls`, `sum_reward`, `max_reward`, `video_path` (relative to the run folder or None),
`traceback`, `wall_s`, `steps`.

`eval_info.json` follows LeRobot (`per_task` entries `{task_group, task_id, metrics: {successes,
sum_rewards, max_rewards, video_paths}}`, `per_group` and `overall` with `pc_success` 0-100,
`n_episodes`, `eval_s`, `eval_ep_s`, `video_paths`); the group is the split (L1-L4) and the
task id is the task name. Our additions sit beside LeRobot's keys in every entry (`ci95`,
plan lengths, parse-error rate, replans, `failures`) and at the top (`config`, `interrupted`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from agent.loop import FAILURE_KINDS as LOOP_FAILURE_KINDS

# Why an episode failed: the agent loop's taxonomy (see agent.loop); `exception` keeps a traceback.
FAILURE_KINDS: tuple[str, ...] = LOOP_FAILURE_KINDS
Z95 = 1.959963984540054  # two-sided 95% normal quantile
EVAL_INFO_VERSION = 1


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (fractions in [0, 1]) for `successes` out of `n`; (0, 1) when n == 0."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Clamp rounding noise so 0/n starts at exactly 0 and n/n ends at exactly 1.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def _mean(xs: Sequence[float]) -> float | None:
    return float(sum(xs) / len(xs)) if xs else None


def summarize(episodes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Success rate with its Wilson 95% interval, plan lengths, parse errors, replans and failure counts."""
    n = len(episodes)
    k = sum(bool(e["success"]) for e in episodes)
    lo, hi = wilson_interval(k, n)
    won = [e for e in episodes if e["success"]]
    oracle_won = sum(e["oracle_plan_length"] or 0 for e in won)
    calls = sum(e["n_planner_calls"] for e in episodes)
    failures = Counter(e["failure"] for e in episodes if not e["success"])
    failures.pop(None, None)
    return {
        "n_episodes": n,
        "n_successes": k,
        "pc_success": 100.0 * k / n if n else None,
        "ci95": [100.0 * lo, 100.0 * hi],
        "avg_sum_reward": _mean([e["sum_reward"] for e in episodes]),
        "avg_max_reward": _mean([e["max_reward"] for e in episodes]),
        "mean_plan_length": _mean([e["plan_length"] for e in episodes]),
        "mean_oracle_plan_length": _mean([e["oracle_plan_length"] for e in episodes if e["oracle_plan_length"] is not None]),
        # On successful episodes only: how much longer than the oracle's plan the agent's was.
        "plan_length_ratio_success": sum(e["plan_length"] for e in won) / oracle_won if oracle_won else None,
        "parse_error_rate": sum(e["n_parse_errors"] for e in episodes) / calls if calls else None,
        "replans_per_episode": _mean([e["n_replans"] for e in episodes]),
        "mean_steps": _mean([e["n_steps"] for e in episodes]),
        "failures": {kind: failures.pop(kind, 0) for kind in FAILURE_KINDS} | dict(failures),
        "n_exceptions": sum(e["failure"] == "exception" for e in episodes),
    }


def _ordered_keys(episodes: Iterable[dict[str, Any]], splits: Sequence[str], tasks: Sequence[str]) -> list[tuple[str, str]]:
    """(split, task) pairs present in the episodes, in the configured order (unknown ones last, sorted)."""
    present = {(e["split"], e["task"]) for e in episodes}

    def rank(key: tuple[str, str]) -> tuple[int, int, str, str]:
        s, t = key
        return (splits.index(s) if s in splits else len(splits), tasks.index(t) if t in tasks else len(tasks), s, t)

    return sorted(present, key=rank)


def build_eval_info(
    episodes: Sequence[dict[str, Any]],
    *,
    eval_s: float,
    splits: Sequence[str] = (),
    tasks: Sequence[str] = (),
    config: dict[str, Any] | None = None,
    interrupted: bool = False,
    n_planned: int | None = None,
) -> dict[str, Any]:
    """LeRobot-style `eval_info.json` content (plus our statistics) from finished episode records."""
    per_task = []
    by_group: dict[str, list[dict[str, Any]]] = {}
    for split, task in _ordered_keys(episodes, splits, tasks):
        eps = sorted((e for e in episodes if e["split"] == split and e["task"] == task), key=lambda e: e["episode"])
        by_group.setdefault(split, []).extend(eps)
        per_task.append(
            {
                "task_group": split,
                "task_id": task,
                "metrics": {
                    "successes": [bool(e["success"]) for e in eps],
                    "sum_rewards": [e["sum_reward"] for e in eps],
                    "max_rewards": [e["max_reward"] for e in eps],
                    "video_paths": [e["video_path"] for e in eps if e["video_path"]],
                    "seeds": [e["seed"] for e in eps],
                    "failures": [e["failure"] for e in eps],
                },
                **summarize(eps),
            }
        )
    per_group = {g: {**summarize(eps), "video_paths": _videos(eps)} for g, eps in by_group.items()}
    n = len(episodes)
    overall = {
        **summarize(episodes),
        "eval_s": eval_s,
        "eval_ep_s": eval_s / max(1, n),
        "video_paths": _videos(episodes),
    }
    return {
        "per_task": per_task,
        "per_group": per_group,
        "overall": overall,
        "version": EVAL_INFO_VERSION,
        "interrupted": interrupted,
        "n_planned": n_planned if n_planned is not None else n,
        "config": config or {},
    }


def _videos(episodes: Iterable[dict[str, Any]]) -> list[str]:
    ordered = sorted(episodes, key=lambda e: (e["split"], e["task"], e["episode"]))
    return [e["video_path"] for e in ordered if e["video_path"]]
