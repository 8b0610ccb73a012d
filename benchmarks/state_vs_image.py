"""PaLM-E Table 1 at small scale (issue #20): what the planner reads, privileged state, estimated state, the image,
or estimated state and the image, each trained with and without the question (VQA) part of the mixture.

Every cell is a `palme-train` run from the same logs (`--experiment`, palme_tiny by default: its model, optimiser and
mixture), then a `palme-eval` run on pick-and-place test seeds, for each training seed (`--seeds`, two by default):

    row                       model.prompt.tokens     palme-train          palme-eval
    privileged state          the recipe's - image    data.state=privileged state=privileged
    estimated state           the recipe's - image    data.state=observed  state=estimated
    image only                the recipe's - object   data.state=privileged state=privileged (the rows are unused)
    estimated state + image   the recipe's            data.state=observed  state=estimated

`data.state=observed` trains on the rows perception gave the planner while the logs were collected
(observation.environment_state.observed), so the logs must be collected with `palme-collect state=estimated`;
without `--data` the command collects `--collect-episodes` oracle episodes per task that way into the run folder.
"With VQA" is the recipe's mixture (`data.weights`); "no VQA" the same weights with every source that is not a
planning one (training.sources: kind "plan") at 0. The skills act on the simulator's poses in every row
(`skills_use=privileged`), and success is judged on the simulator.

    python benchmarks/state_vs_image.py [--data DIR ...] [--steps 4500] [--seeds 0 1] [--tasks grasp stack]
        [--episodes 50] [--workers 2] [--split L1] [--seed-offset 0] [--rows ROW ...] [--mixtures vqa no_vqa]
        [--collect-episodes 200] [--experiment palme_tiny] [--override KEY=VALUE ...] [--run-dir DIR] [--out FILE.md]

Writes `<run-dir>/results.md` (the table: success % [95% Wilson interval] per task, pooled over the seeds, which is
the mean of the seeds' rates; each seed's rate beside it; PaLM-E's Table 1 p1 / p2 numbers of the nearest input
beside each row) and `results.json` (per-seed outcomes, commands). Runs are kept under `<run-dir>/runs/`, named by
row, mixture, seed and steps: an interrupted command run again resumes training and skips what is finished.
Subprocesses run `python -m training.train` / `agent.evaluate` / `training.collect` of this checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.eval_metrics import wilson_interval

PROG = "state_vs_image.py"
WORLD = "pickplace"
IMAGE_SIZE = 64  # frames are collected and evaluated at the palme-tiny preset's vision.image_size


@dataclass(frozen=True)
class Row:
    """One input setting: which observation token leaves the recipe's list, and where the rows come from."""

    title: str
    drop: str | None  # token type removed from the recipe's model.prompt.tokens (None: keep them all)
    needs: tuple[str, ...]  # token types the recipe must have for this row to mean what its title says
    data_state: str  # palme-train data.state
    eval_state: str  # palme-eval state


ROWS: dict[str, Row] = {
    "privileged": Row("privileged state", "image", ("object",), "privileged", "privileged"),
    "estimated": Row("estimated state", "image", ("object",), "observed", "estimated"),
    "image": Row("image only", "object", ("image",), "privileged", "privileged"),
    "estimated+image": Row("estimated state + image", None, ("image", "object"), "observed", "estimated"),
}
MIXTURES = {"vqa": "with VQA", "no_vqa": "no VQA"}

# PaLM-E (Driess et al., ICML 2023, arXiv:2303.03378) Table 1: TAMP environment, 1% of the data (320 examples each
# of p1 and p2), 3-5 objects, LLM frozen; p1 = grasping, p2 = stacking planning success (%). Numbers as recorded in
# the project's reference notes (shared/reference/palme.md); the nearest PaLM-E input for each of our rows.
PALME: dict[tuple[str, str], str] = {
    ("privileged", "vqa"): "state: 45.0 / 46.1 (LLM from scratch); 55.9 / 49.7 (LLM pretrained)",
    ("estimated", "vqa"): "OSRT (object slots from images): 82.5 / 76.2",
    ("estimated", "no_vqa"): "OSRT, no VQA data: 71.9 / 75.1",
    ("image", "vqa"): "ViT-4B, full mixture: 74.1 / 74.6",
    ("image", "no_vqa"): "ViT-4B, robot data only: 30.6 / 32.9",
}
PALME_NOTES = (
    "PaLM-E columns: Driess et al. (2023), Table 1, p1 (grasping) / p2 (stacking) success %, 1% of the TAMP data, "
    "LLM frozen (SayCan with oracle affordances: 38.7 / 33.3); - where Table 1 has no such input. Their numbers "
    "score PaLM-E's plans in their TAMP world; ours are closed-loop task success of a ~1 M-parameter "
    "from-scratch model with scripted skills, grasp next to p1 and stack next to p2: compare trends, not values. "
    "Their 'robot data only' still held the TAMP questions q1-q4, and their 'full mixture' added web-scale "
    "vision-language data; here 'no VQA' drops every question source and 'with VQA' adds this project's scene "
    "questions. OSRT is an object-centric representation learnt from images, the nearest of their inputs to rows "
    "estimated from the camera."
)
POOLING_NOTE = ("Intervals pool the seeds' episodes (binomial), so they leave out the spread between training seeds; "
                "the per-seed rates show it.")


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (`state_vs_image.py: error: ...`, exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {' '.join(message.split())} (see {PROG} --help)\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", type=Path, default=[],
                    help="log folders (palme-collect env=pickplace state=estimated ...); default: collect into the run folder")
    ap.add_argument("--steps", type=int, default=4500, help="palme-train updates per run (train.steps)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="training seeds of every cell")
    ap.add_argument("--tasks", nargs="+", default=["grasp", "stack"], help="pick-and-place tasks evaluated")
    ap.add_argument("--episodes", type=int, default=50, help="palme-eval episodes per task and run")
    ap.add_argument("--workers", type=int, default=2, help="palme-eval (and palme-collect) worker processes")
    ap.add_argument("--split", default="L1", help="evaluation split (L1-L4)")
    ap.add_argument("--seed-offset", type=int, default=0, help="palme-eval seed_offset (episode n: split start + offset + n)")
    ap.add_argument("--rows", nargs="+", default=list(ROWS), help=f"rows to run, of {list(ROWS)}")
    ap.add_argument("--mixtures", nargs="+", default=list(MIXTURES), help=f"mixtures to run, of {list(MIXTURES)}")
    ap.add_argument("--collect-episodes", type=int, default=200, help="without --data: episodes collected per task")
    ap.add_argument("--experiment", default="palme_tiny", help="the palme-train recipe (configs/experiment/NAME.yaml)")
    ap.add_argument("--override", nargs="+", default=[], help="extra palme-train overrides for every run (KEY=VALUE)")
    ap.add_argument("--run-dir", type=Path, default=ROOT / "outputs" / "state_vs_image", help="runs, logs and results")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = ap.parse_args(argv)
    problems = [
        (args.steps >= 1, f"--steps must be >= 1, got {args.steps}"),
        (args.episodes >= 1, f"--episodes must be >= 1, got {args.episodes}"),
        (args.workers >= 1, f"--workers must be >= 1, got {args.workers}"),
        (args.collect_episodes >= 1, f"--collect-episodes must be >= 1, got {args.collect_episodes}"),
        (args.seed_offset >= 0, f"--seed-offset must be >= 0, got {args.seed_offset}"),
        (len(set(args.seeds)) == len(args.seeds), f"--seeds repeats a seed: {args.seeds}"),
        (not set(args.rows) - set(ROWS), f"unknown --rows {sorted(set(args.rows) - set(ROWS))}; known: {list(ROWS)}"),
        (not set(args.mixtures) - set(MIXTURES),
         f"unknown --mixtures {sorted(set(args.mixtures) - set(MIXTURES))}; known: {list(MIXTURES)}"),
        (all("=" in o for o in args.override), f"--override takes KEY=VALUE, got {args.override}"),
    ]
    for ok, message in problems:
        if not ok:
            ap.error(message)
    args.rows = list(dict.fromkeys(args.rows))
    args.mixtures = list(dict.fromkeys(args.mixtures))
    args.tasks = list(dict.fromkeys(args.tasks))
    return args


# ---- checks and the recipe ----------------------------------------------------------------------------------
def check_setup(args: argparse.Namespace) -> None:
    """Tasks, split, the given log folders (a dataset of the pick-and-place world, with the planner's observed rows
    when a chosen row trains on them) and the run folder (made here); ValueError (one line) naming what is wrong."""
    from envs import load_world
    from envs.tasks.base import SPLITS, seed_range, task_names
    from training.dataset.schema import load_info
    from training.examples import check_state

    load_world(WORLD)
    bad = [t for t in args.tasks if t not in task_names(WORLD)]
    if bad:
        raise ValueError(f"unknown --tasks {bad} for {WORLD}; known: {task_names(WORLD)}")
    if args.split not in SPLITS or args.split == "train":
        raise ValueError(f"--split must be one of {[s for s in SPLITS if s != 'train']}, got {args.split!r}")
    lo, hi = seed_range(args.split)
    if lo + args.seed_offset + args.episodes > hi:
        raise ValueError(f"--seed-offset {args.seed_offset} + --episodes {args.episodes} run past split "
                         f"{args.split}'s seeds [{lo}, {hi})")
    observed = any(ROWS[r].data_state == "observed" for r in args.rows)
    for root in args.data:
        info = load_info(root)
        world = (info.get("palme") or {}).get("world")
        if world != WORLD:
            raise ValueError(f"--data {root} holds {world!r} episodes; this benchmark trains on {WORLD!r} logs")
        if observed:
            check_state("observed", info, root)
    try:
        args.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--run-dir {args.run_dir}: {err.strerror or err}") from err


def recipe(experiment: str, overrides: list[str]) -> tuple[list[str], dict[str, float]]:
    """(model.prompt.tokens, data.weights) of the palme-train recipe (ValueError, one line, when it does not compose)."""
    from agent.cli.common import error_line
    from training.train import compose_config

    try:
        cfg = compose_config([f"experiment={experiment}", *overrides])
    except Exception as err:  # hydra's errors for an unknown experiment or key: reported in one line
        line = (error_line(err) or str(err)).split(" Config search path")[0]
        raise ValueError(f"palme-train {' '.join([f'experiment={experiment}', *overrides])}: {line}") from err
    return list(cfg.model.prompt.tokens), dict(cfg.data.weights)


def plan_only(weights: dict[str, float]) -> dict[str, float]:
    """The same weights with every source that is not a planning one at 0 (a key of `weights` stays a key, so the
    override replaces the recipe's values whatever hydra's dict merging does)."""
    from training.sources import get_source

    return {k: (v if get_source(k).kind == "plan" else 0.0) for k, v in weights.items()}


def tokens_of(row: Row, tokens: list[str]) -> list[str]:
    """The row's model.prompt.tokens: the recipe's, less `row.drop`; ValueError when the recipe lacks a needed one."""
    missing = [t for t in row.needs if t not in tokens]
    if missing:
        raise ValueError(f"row {row.title!r} needs {missing} in the recipe's model.prompt.tokens, which are {tokens}")
    return [t for t in tokens if t != row.drop]


def _dict_text(d: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in d.items()) + "}"


# ---- subprocesses ---------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def call(module: str, keys: list[str], log: Path) -> None:
    """`python -m <module> <keys>` in this checkout, output to `log`; RuntimeError naming the log when it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"\n$ python -m {module} {' '.join(keys)}\n")
        out.flush()
        rc = subprocess.run([sys.executable, "-m", module, *keys], cwd=ROOT, env=_env(), stdout=out,
                            stderr=subprocess.STDOUT, check=False).returncode
    if rc:
        tail = [ln for ln in log.read_text().splitlines() if ln.strip()][-1:]
        raise RuntimeError(f"python -m {module} failed (exit {rc}): {tail[0] if tail else ''} (log: {log})")


def collect(args: argparse.Namespace, folder: Path) -> list[Path]:
    """One log folder per task under `folder`, collected with state=estimated when missing (both rows recorded)."""
    dirs = []
    for task in args.tasks:
        out = folder / f"{WORLD}_{task}"
        if not (out / "meta" / "info.json").exists():
            print(f"collecting {args.collect_episodes} {task} episodes into {out}", flush=True)
            call("training.collect", [f"env={WORLD}", f"task={task}", f"episodes={args.collect_episodes}",
                                      f"workers={args.workers}", "state=estimated", f"out={out}",
                                      f"image_size=[{IMAGE_SIZE},{IMAGE_SIZE}]", "progress=false"],
                 folder / f"collect_{task}.log")
        dirs.append(out)
    return dirs


def train(run: Path, keys: list[str], log: Path) -> None:
    """palme-train into `run` (skipped when finished; resumed when a checkpoint is there)."""
    if (run / "train_summary.json").exists():
        return
    resume = ["resume=true"] if (run / "checkpoints" / "last").exists() else []
    call("training.train", [*keys, f"output_dir={run}", *resume], log)


def evaluate(run: Path, row: Row, args: argparse.Namespace, log: Path) -> list[dict[str, Any]]:
    """palme-eval of the run's last checkpoint (skipped when a finished evaluation of these settings is there); its
    episode records."""
    out = run / f"eval_{args.split}_o{args.seed_offset}_e{args.episodes}_{'-'.join(args.tasks)}"
    records = out / "episodes.jsonl"
    if records.exists():
        done = [json.loads(ln) for ln in records.read_text().splitlines() if ln.strip()]
        if len(done) == args.episodes * len(args.tasks):
            return done
        shutil.rmtree(out)  # an interrupted evaluation: run it again
    call("agent.evaluate", [f"checkpoint={run / 'checkpoints' / 'last' / 'pretrained_model'}", f"env={WORLD}",
                            f"tasks=[{','.join(args.tasks)}]", f"split={args.split}", f"episodes={args.episodes}",
                            f"seed_offset={args.seed_offset}", f"workers={args.workers}", f"state={row.eval_state}",
                            f"image_size=[{IMAGE_SIZE},{IMAGE_SIZE}]", "videos_per_task=0", "progress=false",
                            f"hydra.run.dir={out}"], log)
    return [json.loads(ln) for ln in records.read_text().splitlines() if ln.strip()]


# ---- the table ----------------------------------------------------------------------------------------------
def cell(per_seed: list[list[bool]]) -> str:
    """Pooled success % [95% Wilson interval] over the seeds' episodes, then each seed's rate."""
    pooled = [x for outcomes in per_seed for x in outcomes]
    if not pooled:
        return "-"
    k, n = sum(pooled), len(pooled)
    lo, hi = wilson_interval(k, n)
    seeds = ", ".join(f"{100 * sum(o) / len(o):.0f}" for o in per_seed if o)
    return f"{100 * k / n:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] ({seeds})"


def table(results: dict[tuple[str, str], dict[str, Any]], args: argparse.Namespace, wall_s: float) -> str:
    """The markdown table of every finished cell, PaLM-E's numbers beside each row, and the notes."""
    head = ["input", "mixture", "train / eval rows", *args.tasks, "PaLM-E Table 1 p1 / p2, nearest input"]
    what = (f"Success % [95% Wilson interval] over {len(args.seeds)} training seed(s) x {args.episodes} episodes per "
            f"task (the pooled rate is the mean of the seeds' rates; each seed's rate in brackets after it). "
            f"{args.steps} updates of `{args.experiment}` per run, seeds {args.seeds}; evaluation seeds from "
            f"{args.split}'s start + {args.seed_offset}.")
    lines = [f"# PaLM-E Table 1 at small scale: state vs image ({WORLD} {args.split})", "", what, "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (row_key, mix), res in results.items():
        row = ROWS[row_key]
        cells = [cell([res["outcomes"][str(s)].get(t, []) for s in args.seeds if str(s) in res["outcomes"]])
                 for t in args.tasks]
        lines.append(f"| {row.title} | {MIXTURES[mix]} | {row.data_state} / {row.eval_state} | " + " | ".join(cells)
                     + f" | {PALME.get((row_key, mix), '-')} |")
    lines += ["", PALME_NOTES, "", POOLING_NOTE, "", f"{wall_s:.0f} s on this machine for this invocation.", "",
              "Commands (palme-train keys of each cell, plus `seed=` and `output_dir=`):", ""]
    lines += [f"- {ROWS[r].title}, {MIXTURES[m]}: `palme-train {res['train']}`; `palme-eval ... state={ROWS[r].eval_state}`"
              for (r, m), res in results.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_setup(args)
        tokens, weights = recipe(args.experiment, args.override)
        plans = {r: tokens_of(ROWS[r], tokens) for r in args.rows}
    except ValueError as err:  # bad tasks, folders or recipe: one line, exit 2
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    mixtures = {"vqa": weights, "no_vqa": plan_only(weights)}
    t0 = time.perf_counter()
    runs = args.run_dir / "runs"
    try:
        data = args.data or collect(args, args.run_dir / "data")
        results: dict[tuple[str, str], dict[str, Any]] = {}
        for row_key in args.rows:
            row = ROWS[row_key]
            for mix in args.mixtures:
                keys = [f"experiment={args.experiment}", f"data.dirs=[{','.join(str(Path(d).resolve()) for d in data)}]",
                        f"data.state={row.data_state}", f"model.prompt.tokens=[{','.join(plans[row_key])}]",
                        f"data.weights={_dict_text(mixtures[mix])}", f"train.steps={args.steps}", "eval.final=false",
                        "progress=false", *args.override]
                entry = results.setdefault((row_key, mix), {"train": " ".join(keys), "outcomes": {}})
                for seed in args.seeds:
                    name = f"{row_key}__{mix}__seed{seed}__steps{args.steps}"
                    run, log = runs / name, runs / f"{name}.log"
                    print(f"{row.title}, {MIXTURES[mix]}, seed {seed}: training ({args.steps} updates)", flush=True)
                    train(run, [*keys, f"seed={seed}"], log)
                    print(f"{row.title}, {MIXTURES[mix]}, seed {seed}: evaluating", flush=True)
                    outcomes: dict[str, list[bool]] = {}
                    for r in evaluate(run, row, args, log):
                        outcomes.setdefault(r["task"], []).append(bool(r["success"]))
                    entry["outcomes"][str(seed)] = outcomes
                write(args, results, time.perf_counter() - t0)
    except RuntimeError as err:  # a subprocess failed: its last line and its log
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    print(write(args, results, time.perf_counter() - t0))
    return 0


def write(args: argparse.Namespace, results: dict[tuple[str, str], dict[str, Any]], wall_s: float) -> str:
    """results.md and results.json in the run folder (and --out); returns the markdown."""
    text = table(results, args, wall_s)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    (args.run_dir / "results.md").write_text(text)
    payload = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "cells": [{"row": r, "mixture": m, **res} for (r, m), res in results.items()], "wall_s": round(wall_s, 1)}
    (args.run_dir / "results.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    if args.out:
        args.out.write_text(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
