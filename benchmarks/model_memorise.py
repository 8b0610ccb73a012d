"""Memorisation check: a tiny PalmE learns 32 planning examples to 100% exact match; prints the wall time.

    .venv/bin/python benchmarks/model_memorise.py [--preset palme-small] [--n 32] [--budget-s 120]

The examples are real planning prompts (PromptBuilder: image, entity referrals, robot token, step
history) over random scenes, whose answers are plan steps rendered with envs.vocab.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from agent.model import PalmE, make_model
from agent.prompts import Example, PromptBuilder
from envs.catalogue import COLOR_NAMES, MAX_OBJECTS, OBJ_DIM, ROBOT_DIM, SHAPE_NAMES, ObjectDesc, object_row
from envs.vocab import BOARD_LOCATIONS, SkillCall, object_names, render_step


def random_scene(rng: np.random.Generator, n: int) -> tuple[list[ObjectDesc], np.ndarray]:
    """n distinct objects and their state rows (MAX_OBJECTS, OBJ_DIM)."""
    pairs = rng.choice(len(COLOR_NAMES) * len(SHAPE_NAMES), size=n, replace=False)
    descs = [ObjectDesc(COLOR_NAMES[p // len(SHAPE_NAMES)], SHAPE_NAMES[p % len(SHAPE_NAMES)]) for p in pairs]
    rows = np.zeros((MAX_OBJECTS, OBJ_DIM), np.float32)
    for i, d in enumerate(descs):
        pos = [rng.uniform(0.3, 0.7), rng.uniform(-0.3, 0.3), 0.02]
        rows[i] = object_row(pos, [0, 0, 0, 1], float(rng.uniform(0.03, 0.06)), d)
    return descs, rows


def random_call(rng: np.random.Generator, n: int) -> SkillCall:
    """One plan step over n objects."""
    i, j = (int(v) for v in rng.choice(n, size=2, replace=False))
    return [
        SkillCall("pick", obj=i),
        SkillCall("place", obj=i, target=j),
        SkillCall("place", obj=i, location="table"),
        SkillCall("push", obj=i, location=str(rng.choice(list(BOARD_LOCATIONS)))),
        SkillCall("done"),
    ][int(rng.integers(5))]


def planning_examples(n: int, seed: int = 0, image_size: int = 64) -> list[Example]:
    """n planning examples (prompt + arrays + answer) over random scenes."""
    rng = np.random.default_rng(seed)
    builder = PromptBuilder()
    out = []
    for _ in range(n):
        k = int(rng.integers(3, 6))
        descs, rows = random_scene(rng, k)
        names = object_names(descs)
        a, b = (int(v) for v in rng.choice(k, size=2, replace=False))
        history = [(render_step(random_call(rng, k), names), "ok") for _ in range(int(rng.integers(0, 3)))]
        obs = {
            "rgb": rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8),
            "objects": rows,
            "robot": rng.normal(size=ROBOT_DIM).astype(np.float32),
        }
        out.append(
            builder.for_obs(
                "plan",
                obs,
                instruction=f"stack the {names[a]} on the {names[b]}",
                history=history,
                answer=render_step(random_call(rng, k), names),
            )
        )
    return out


def exact_match(model: PalmE, examples: list[Example]) -> float:
    """Fraction of examples whose greedy answer equals the target exactly."""
    preds = model.generate(examples, max_new_tokens=24)
    return sum(p == e.answer for p, e in zip(preds, examples)) / len(examples)


# A narrower, shallower palme-small (about 1 M parameters): the preset itself needs ~2 s per full
# batch on one core, so it cannot take the ~100 updates memorisation needs within two minutes.
SMALL = {
    "llm": {"hidden": 128, "intermediate": 344, "layers": 2},
    "vision": {"hidden": 64, "layers": 2, "intermediate": 128},
    "state": {"hidden": 128},
}


def memorise(
    preset: str = "palme-small",
    n: int = 32,
    lr: float = 3e-3,
    batch_size: int = 16,
    max_steps: int = 1000,
    check_every: int = 10,
    budget_s: float = 120.0,
    **overrides,
) -> tuple[float, float, int]:
    """Train until 100% exact match (or budget); returns (exact match, wall seconds, updates)."""
    examples = planning_examples(n)
    model = make_model(preset, tokenizer_texts=[e.prompt + " " + e.answer for e in examples], **overrides)
    model.fit_state_stats(examples)
    start = time.perf_counter()
    batches = [model.collate(examples[i : i + batch_size], train=True) for i in range(0, n, batch_size)]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    score, step = 0.0, 0
    while step < max_steps and time.perf_counter() - start < budget_s:
        model.train()
        loss = model(batches[step % len(batches)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % check_every == 0:
            score = exact_match(model, examples)
            print(
                f"step {step}: loss {loss.item():.4f} exact match {score:.0%} ({time.perf_counter() - start:.1f} s)"
            )
            if score == 1.0:
                break
    return score, time.perf_counter() - start, step


def main() -> None:
    """CLI: run the check and print the figure."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="palme-small")
    p.add_argument("--n", type=int, default=32)
    p.add_argument(
        "--full-size", action="store_true", help="the preset as is (slower than the goal)"
    )
    p.add_argument("--budget-s", type=float, default=120.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {} if args.full_size else SMALL
    score, wall, steps = memorise(args.preset, args.n, budget_s=args.budget_s, **overrides)
    print(
        f"memorisation ({args.preset}{' with ' + str(overrides) if overrides else ''}): {args.n} examples, exact match {score:.0%} after {steps} steps in {wall:.1f} s "
        f"(goal: 100% in < 120 s) on {torch.get_num_threads()} threads"
    )


if __name__ == "__main__":
    main()
