"""PaLM-E Table 2 at small scale: fine-tune the generalist per long-horizon push task on 10 / 20 / 40 demos (T3: 80).

PaLM-E (Driess et al., ICML 2023, arXiv:2303.03378, Table 2: Language-Table long-horizon tasks in simulation,
success %) fine-tunes on a few demonstrations per task and reports success against their number. Here, for each
task (T1 corner_to_same_color, T2 sort_corners, T3 side_together of `envs/tasks/push/`):

1. demos: `palme-collect` (training.collect, oracle planner) writes --max(count) episodes once into
   <out>/demos/<task>, on training seeds from --seed-start (the train range [0, 1,000,000), which no evaluation
   draws from; 500,000 keeps clear of the shipped recipe's collections at 0.. and 100,000 / 200,000..). One worker
   writes them in seed order, so the first N episodes of the folder are the first N seeds the oracle solved, and the
   demos of a smaller count are a prefix of those of a larger one. A rerun with a larger count only adds episodes.
2. fine-tune: one `palme-train` run per (task, count) into <out>/train/<task>_<count>demos: init_from=--checkpoint,
   experiment=palme_tiny_dagger (the shipped model's plan-heavy mixture and optimiser: batch 24, lr 1e-3),
   data.max_episodes=count (the folder's prefix) and data.val_fraction=0 (every demo is trained on); the
   experiment's data.task_weights (the recipe's per-task weights over its own folders) are dropped, as the demos
   folder is one task's.
   --steps (updates, default 400) is the number of updates of the README's worked fine-tuning example
   (push/color_to_location, batch 24, lr 1e-3), fixed before this benchmark existed; it is the same for every
   task and count and was never tuned on T1-T3 or on any evaluation seed.
3. evaluate: `palme-eval` (agent.api.evaluate) of each fine-tuned model, and of the generalist itself as the
   0-demos point, on split L1 of its task: --episodes episodes on the standard evaluation seeds 1,000,000,
   1,000,001, ... (seed_offset 0), at --image-size px, into <out>/eval/<task>_<count>demos.
4. <out>/results.md (also printed): success % [95% Wilson interval, %] (episodes) per count and task beside
   PaLM-E-12B (robot data only, from scratch; full mixture, fine-tuned) and PaLM-E-84B; <out>/results.json: the
   settings, wall times (s), the demo seeds and every episode's outcome.

    python benchmarks/push_demo_curve.py [--checkpoint checkpoints/palme-tiny] [--tasks T1 T2 T3]
        [--counts 10 20 40] [--t3-counts 10 20 80] [--steps 400] [--episodes 50] [--workers 2]
        [--out outputs/push_demo_curve]

Finished fine-tunes and evaluations in --out are reused (an interrupted fine-tune resumes), so a killed run
continues where it stopped; --out must then hold a run with the same checkpoint, steps, seeds and image size.
Randomness comes only from --seed (training) and the seeds above. A bad argument is one line, exit status 2.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.cli.common import EXIT_USAGE, user_errors
from agent.eval_metrics import wilson_interval
from envs.tasks.base import TEST_SEED_START, check_seeds

PROG = "push_demo_curve"
TASKS = {"T1": "corner_to_same_color", "T2": "sort_corners", "T3": "side_together"}  # PaLM-E's names -> ours
COUNTS = (10, 20, 40)  # demos per task, T1 and T2 (PaLM-E Table 2; T3: the largest doubled, 10 / 20 / 80)
STEPS = 400  # fine-tuning updates: the README's fine-tuning example (see the module docstring)
SEED_START = 500_000  # first training seed of the demos
# The palme-train keys every fine-tune shares (the rest: init_from, data, steps, seed, folder).
FINE_TUNE = ("experiment=palme_tiny_dagger", "data.val_fraction=0", "eval.final=false", "progress=false",
             "keep_checkpoints=1")
# PaLM-E Table 2 (Driess et al., ICML 2023, arXiv:2303.03378), success % in simulation:
# model -> task -> demos -> success. Tasks 2 and 3: 80 rollouts each (automated reward); no intervals are given.
PALME_TABLE2: dict[str, dict[str, dict[int, float]]] = {
    "PaLM-E-12B, robot data only, from scratch": {
        "T1": {10: 20.0, 20: 30.0, 40: 50.0}, "T2": {10: 2.5, 20: 6.3, 40: 2.5}, "T3": {10: 11.3, 20: 16.9, 80: 28.3}},
    "PaLM-E-12B, full mixture, fine-tuned": {
        "T1": {10: 70.0, 20: 80.0, 40: 80.0}, "T2": {10: 31.3, 20: 58.8, 40: 58.8}, "T3": {10: 57.5, 20: 54.4, 80: 56.3}},
    "PaLM-E-84B, full mixture": {"T1": {40: 90.0}, "T2": {40: 53.8}, "T3": {80: 64.4}},
}
NOTE = ("Ours: success % [95% Wilson interval] (episodes), closed loop on push split L1. PaLM-E: success % from "
        "Driess et al. 2023 (arXiv:2303.03378), Table 2 (simulation; 80 rollouts per number for T2 and T3, no intervals "
        "given).")


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (`push_demo_curve: error: ...`, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{PROG}: error: {' '.join(message.split())} (see --help)\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked: a bad value exits 2 with one line naming what was expected."""
    ap = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "palme-tiny"),
                    help="the generalist: a model folder or a palme-train run folder")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), help=f"of {list(TASKS)} (or their names: {list(TASKS.values())})")
    ap.add_argument("--counts", nargs="+", type=int, default=list(COUNTS), help="demos per task for T1 and T2, increasing")
    ap.add_argument("--t3-counts", nargs="+", type=int, default=None,
                    help="demos for T3, as many as --counts (default: --counts with the largest doubled, 10 20 80)")
    ap.add_argument("--steps", type=int, default=STEPS, help="fine-tuning updates per (task, count)")
    ap.add_argument("--episodes", type=int, default=50, help="evaluation episodes per (task, count)")
    ap.add_argument("--workers", type=int, default=2, help="palme-eval worker processes")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each fine-tune")
    ap.add_argument("--image-size", type=int, default=64, help="camera frames (square, px): the model's training size")
    ap.add_argument("--seed-start", type=int, default=SEED_START, help="first training seed of the demos")
    ap.add_argument("--seed", type=int, default=0, help="training seed of every fine-tune")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "push_demo_curve", help="run folder")
    args = ap.parse_args(argv)
    known = {**TASKS, **{v: v for v in TASKS.values()}}
    bad = [t for t in args.tasks if t not in known]
    if bad:
        ap.error(f"unknown task(s) {bad}; expected some of {list(TASKS)} or {list(TASKS.values())}")
    args.tasks = [k for k, v in TASKS.items() if v in {known[t] for t in args.tasks}]  # T1, T2, T3 order
    if args.t3_counts is None:
        args.t3_counts = [*args.counts[:-1], 2 * args.counts[-1]]
    for flag, counts in (("--counts", args.counts), ("--t3-counts", args.t3_counts)):
        if counts[0] < 1 or any(b <= a for a, b in itertools.pairwise(counts)):
            ap.error(f"{flag} must be increasing whole numbers >= 1, got {counts}")
    if len(args.t3_counts) != len(args.counts):
        ap.error(f"--t3-counts needs as many counts as --counts ({len(args.counts)}), got {args.t3_counts}")
    for flag in ("steps", "episodes", "workers", "threads", "image_size"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    try:  # the seeds a collection of the largest count may try (palme-collect: 3 attempts per demo)
        check_seeds("train", args.seed_start, 3 * max(args.t3_counts[-1], args.counts[-1]),
                    given=f"--seed-start {args.seed_start} with 3 attempts per demo")
    except ValueError as err:
        ap.error(str(err))
    return args


def task_counts(tasks: list[str], counts: list[int], t3_counts: list[int]) -> dict[str, list[int]]:
    """PaLM-E task name (T1..T3) -> demo counts, the 0-demos point (the generalist) first."""
    return {t: [0, *(t3_counts if t == "T3" else counts)] for t in tasks}


def demo_seeds(folder: Path) -> list[int]:
    """Seeds of the episodes in a palme-collect folder, in folder order (what data.max_episodes takes a prefix of)."""
    from training.dataset import LogDataset

    return [ep.seed for ep in LogDataset(folder).episodes] if (folder / "meta" / "info.json").exists() else []


def ensure_demos(folder: Path, task: str, n: int, seed_start: int, image_size: int, log: Any = print) -> list[int]:
    """At least `n` oracle demos of push `task` in `folder` (collected by one worker, in seed order); the first `n` seeds.

    Raises ValueError when the oracle leaves fewer than `n` after palme-collect's attempts.
    """
    from training.collect import CollectConfig, collect

    have = len(demo_seeds(folder))
    if have < n:
        log(f"collecting {n - have} oracle demos of push/{task} into {folder}")
        collect(CollectConfig(planner="oracle", env="push", task=task, episodes=n - have, workers=1, out=str(folder),
                              split="train", seed_start=seed_start, image_size=[image_size, image_size],
                              progress=False), log=log)
    seeds = demo_seeds(folder)
    if len(seeds) < n:
        raise ValueError(f"{folder} holds {len(seeds)} demos of {task}, {n} needed: the oracle failed too often")
    return seeds[:n]


def recipe_task_weights() -> list[str]:
    """The tasks FINE_TUNE's experiment weights (data.task_weights): a fine-tune on other folders drops them."""
    from training.train import compose_config

    return sorted(compose_config(list(FINE_TUNE)).data.task_weights)


def fine_tune_overrides(checkpoint: Path, demos: Path, n: int, steps: int, seed: int, threads: int,
                        run: Path) -> list[str]:
    """palme-train's overrides for one fine-tune on the first `n` episodes of `demos`.

    The experiment's data.task_weights name the recipe's tasks (ValueError for folders without them) and Hydra
    merges a dict override (`data.task_weights={}` keeps them), so each is deleted: data.task_weights is {}.
    """
    drop = [f"~data.task_weights.{task}" for task in recipe_task_weights()]
    return [*FINE_TUNE, *drop, f"init_from='{checkpoint}'", f"data.dirs=['{demos}']", f"data.max_episodes={n}",
            f"train.steps={steps}", f"save_every={steps}", f"seed={seed}", f"num_threads={threads}",
            f"output_dir='{run}'"]


def fine_tune(overrides: list[str], run: Path, log: Any = print) -> dict[str, Any]:
    """Run (or resume, or reuse) one fine-tune; its train_summary.json."""
    from training.train import compose_config
    from training.train import run as train

    summary = run / "train_summary.json"
    if not summary.exists():
        resume = (run / "checkpoints" / "last").exists()  # killed earlier: continue where it stopped
        log(f"fine-tuning into {run}" + (" (resumed)" if resume else ""))
        train(compose_config(overrides + ["resume=true"] if resume else overrides))
    return json.loads(summary.read_text())


def evaluate_point(checkpoint: Path, task: str, episodes: int, workers: int, image_size: int,
                   out: Path) -> list[dict[str, Any]]:
    """palme-eval of `checkpoint` on push `task`, split L1 (reused when `out` holds it finished); each episode's outcome."""
    from agent.api import evaluate

    info_file = out / "eval_info.json"
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    done = (not info.get("interrupted", True) and info.get("n_planned") == episodes
            and info.get("config", {}).get("checkpoint") == str(checkpoint))
    if not done:
        evaluate("palme", "push", [task], episodes, split="L1", out_dir=out, workers=workers,
                 checkpoint=str(checkpoint), image_size=[image_size, image_size], videos_per_task=0)
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines() if line.strip()]
    return [{"seed": r["seed"], "success": bool(r["success"]), "failure": r.get("failure")} for r in records]


def cell(outcomes: list[bool]) -> str:
    """`success % [95% Wilson interval, %] (episodes)`, or `-` without episodes."""
    if not outcomes:
        return "-"
    n, k = len(outcomes), sum(outcomes)
    lo, hi = wilson_interval(k, n)
    return f"{100 * k / n:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] ({n})"


def markdown(outcomes: dict[str, dict[int, list[bool]]], counts: dict[str, list[int]], header: str) -> str:
    """The table: our rows (one per count level, 0 demos first) then PaLM-E's rows, a column per task."""
    tasks = list(counts)
    levels = len(next(iter(counts.values())))
    head = "| model | demos (" + " / ".join(tasks) + ") | " + " | ".join(f"{t} {TASKS[t]}" for t in tasks) + " |"
    lines = [header, "", head, "|---" * (2 + len(tasks)) + "|"]
    for i in range(levels):
        name = "ours: generalist, not fine-tuned" if i == 0 else "ours: generalist fine-tuned on the task"
        cells = [cell(outcomes.get(t, {}).get(counts[t][i], [])) for t in tasks]
        lines.append(f"| {name} | " + " / ".join(str(counts[t][i]) for t in tasks) + " | " + " | ".join(cells) + " |")
    for model, table in PALME_TABLE2.items():
        for i in range(max(len(table[t]) for t in tasks)):
            demos = [sorted(table[t])[i] if i < len(table[t]) else None for t in tasks]
            nums = [f"{table[t][d]:.1f}" if d is not None else "-" for t, d in zip(tasks, demos)]
            lines.append(f"| {model} | " + " / ".join(str(d) if d else "-" for d in demos) + " | " + " | ".join(nums) + " |")
    lines += ["", NOTE]
    return "\n".join(lines)


def run(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Collect, fine-tune and evaluate every (task, count); write <out>/results.{md,json}; the results."""
    from training.checkpoint import resolve_model_folder

    t0 = time.perf_counter()
    checkpoint = Path(args.checkpoint).resolve()
    resolve_model_folder(checkpoint)  # refuses a folder that holds no model (ValueError), before any work
    out = args.out.resolve()
    settings = {"checkpoint": str(checkpoint), "steps": args.steps, "seed": args.seed, "seed_start": args.seed_start,
                "image_size": args.image_size, "fine_tune": list(FINE_TUNE)}
    check_run_folder(out, settings)
    counts = task_counts(args.tasks, args.counts, args.t3_counts)
    phase = {"collect": 0.0, "fine_tune": 0.0, "evaluate": 0.0}
    outcomes: dict[str, dict[int, list[bool]]] = {}
    raw: dict[str, Any] = {}
    for t in args.tasks:
        task = TASKS[t]
        tick = time.perf_counter()
        seeds = ensure_demos(out / "demos" / task, task, counts[t][-1], args.seed_start, args.image_size, log)
        phase["collect"] += time.perf_counter() - tick
        raw[t] = {"task": task, "demo_seeds": seeds, "points": {}}
        for n in counts[t]:
            model, point = checkpoint, {"demos": n, "demo_seeds": seeds[:n]}
            if n:
                tick = time.perf_counter()
                model = out / "train" / f"{task}_{n}demos"
                ov = fine_tune_overrides(checkpoint, out / "demos" / task, n, args.steps, args.seed, args.threads, model)
                summary = fine_tune(ov, model, log)
                point.update(run_dir=str(model), final_loss=summary.get("final_loss"), train_s=summary.get("wall_s"),
                             command="palme-train " + " ".join(ov))
                phase["fine_tune"] += time.perf_counter() - tick
            tick = time.perf_counter()
            episodes = evaluate_point(model, task, args.episodes, args.workers, args.image_size,
                                      out / "eval" / f"{task}_{n}demos")
            phase["evaluate"] += time.perf_counter() - tick
            outcomes.setdefault(t, {})[n] = [e["success"] for e in episodes]
            raw[t]["points"][str(n)] = {**point, "eval_dir": str(out / "eval" / f"{task}_{n}demos"), "episodes": episodes}
    wall = time.perf_counter() - t0
    last = TEST_SEED_START + args.episodes - 1
    shown = checkpoint.relative_to(ROOT) if checkpoint.is_relative_to(ROOT) else checkpoint
    header = (f"PaLM-E Table 2 at small scale: checkpoint `{shown}`, {args.steps} fine-tuning updates per "
              f"(task, demos), demos: the first training seeds from {args.seed_start} the oracle solved, evaluation on L1 seeds "
              f"{TEST_SEED_START}..{last} ({args.episodes} per point), {wall:.0f} s wall for this call (collect "
              f"{phase['collect']:.0f} s, fine-tune {phase['fine_tune']:.0f} s, evaluate {phase['evaluate']:.0f} s)")
    text = markdown(outcomes, counts, header)
    (out / "results.md").write_text(text + "\n")
    result = {"settings": {**settings, "episodes": args.episodes, "workers": args.workers, "threads": args.threads,
                           "counts": counts}, "wall_s": round(wall, 1), "phase_s": {k: round(v, 1) for k, v in phase.items()},
              "tasks": raw, "palme_e_table2": PALME_TABLE2}
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    log(text)
    return result


def check_run_folder(out: Path, settings: dict[str, Any]) -> None:
    """Refuse an --out that holds a run with other settings (its results would be mixed in); note ours otherwise."""
    path = out / "settings.json"
    if path.exists():
        old = json.loads(path.read_text())
        diff = [f"{k} {old.get(k)!r} there, {v!r} here" for k, v in settings.items() if old.get(k) != v]
        if diff:
            raise ValueError(f"--out {out} holds a run with other settings ({'; '.join(diff)}); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    args = parse_args(argv)
    with user_errors(PROG):  # a checkpoint, folder or seed refused by palme-collect/-train/-eval: one line, exit 2
        run(args)


if __name__ == "__main__":
    main()
