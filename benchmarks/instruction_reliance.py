"""How much a model planner's first step depends on the instruction's words: the first step it writes for a logged
scene, and the first step it writes for the same scene with words of the instruction swapped ("left" <-> "right").

A planner that reads a goal's words changes its step when they change: "gather the blocks on the left side" and
"... on the right side" need different pushes (push `side_together`), as do "the block closest to the top left
corner" and "... top right corner" (`corner_to_same_color`). One that does not has learnt a task's pattern from the
scene alone. The scenes are the first frames of episodes in palme-collect logs (the `plan` source's examples with no
history), so no simulator runs; the model writes each step greedily and unconstrained (`PalmE.generate`); the
prompt, `<instr>` included, is rebuilt with the checkpoint's own PromptBuilder for the swapped words.

    python benchmarks/instruction_reliance.py CHECKPOINT --data DIR [DIR ...] [--swap left:right top:bottom]
        [--examples 200] [--out reliance.json]

Prints per folder: the episodes whose instruction holds a swapped word, the share of their first steps that equal the
oracle's (logged words), the share that change when the words are swapped (95% Wilson intervals,
agent.eval_metrics.wilson_interval), and a few pairs. A folder without instructions that hold the words is reported
with n = 0. For tasks where many first steps lead to the goal (`USEFUL`: side_together, whose side's blocks may be
joined in any order) it also prints the share of useful first steps for the logged words, for the swapped words (each
judged against the goal its own words mean, `Task.parse_instruction`), and for both at once: a planner that reads the
side word is useful under both; one that ignores it is useful under at most one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.eval_metrics import wilson_interval


def _side_useful(task: Any, rows: Any, instruction: str, step: str) -> bool:
    """side_together: `step` is a push that joins two blocks of the side `instruction` names (`useful_push`)."""
    from agent.parser import SceneContext, parse_step
    from envs.catalogue import OBJ_FIELDS, descs_from_rows
    from envs.tasks.push.side_together import useful_push

    present = rows[rows[:, OBJ_FIELDS.index("present")] > 0.5]
    descs = descs_from_rows(present)
    goal = task.parse_instruction(instruction, descs)
    call = parse_step(step, SceneContext(objects=descs, world=task.world))
    if goal is None or not isinstance(getattr(call, "target", None), int) or call.skill != "push":
        return False
    return useful_push(present[:, :2], goal, call.obj, call.target)


USEFUL = {"side_together": _side_useful}  # push task name -> (task, object rows, instruction, step) -> useful first step


def swap_words(text: str, pairs: list[tuple[str, str]]) -> str:
    """`text` with each word of every pair replaced by the other (whole words, case kept for the first letter)."""
    table = {}
    for a, b in pairs:
        table[a], table[b] = b, a
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, table)) + r")\b", flags=re.IGNORECASE)

    def repl(m: re.Match[str]) -> str:
        word = table[m.group(0).lower()]
        return word.capitalize() if m.group(0)[0].isupper() else word

    return pattern.sub(repl, text)


def first_steps(model: Any, folder: str, n: int) -> list[tuple[Any, str, str]]:
    """(example, logged instruction, task name) of up to `n` first-step planning examples of `folder` (every episode)."""
    from training.config import DataConfig
    from training.data import load_data

    cfg = DataConfig(dirs=[folder], weights={"plan": 1.0}, val_fraction=0.0, validate_images=False)
    data = load_data(cfg, model.prompt_builder, seed=0, log=lambda _: None)
    refs = [r for r in data.train.get("plan", []) if r[1].frame == 0][:n]
    out = []
    for ref in refs:
        spec = ref[1]
        ep = data.builders[0].ds.episodes[spec.episode]
        out.append((data.example(ref), spec.instruction or ep.instruction, ep.task_name))
    return out


def rebuilt(model: Any, example: Any, instruction: str) -> Any:
    """`example`'s scene with a first-step planning prompt for `instruction` (its arrays, the builder's prompt)."""
    keys = ("rgb", "objects", "robot", "zones", *example.extra)
    obs = {k: example.array(k) for k in keys if example.array(k) is not None}
    return model.prompt_builder.for_obs("plan", obs, instruction=instruction)


def generate(model: Any, examples: list[Any], batch: int = 16) -> list[str]:
    """Greedy unconstrained answers, stripped."""
    out: list[str] = []
    for i in range(0, len(examples), batch):
        out += [p.strip() for p in model.generate(examples[i:i + batch], max_new_tokens=32)]
    return out


def rate(k: int, n: int) -> dict[str, Any]:
    """k of n as a percentage with its 95% Wilson interval (None when n = 0)."""
    if n == 0:
        return {"k": 0, "n": 0, "pc": None, "ci": None}
    lo, hi = wilson_interval(k, n)
    return {"k": k, "n": n, "pc": round(100 * k / n, 1), "ci": [round(100 * lo, 1), round(100 * hi, 1)]}


def measure(model: Any, folder: str, pairs: list[tuple[str, str]], n: int) -> dict[str, Any]:
    """One folder's figures (see the module docstring)."""
    cases = [(e, text, task) for e, text, task in first_steps(model, folder, n) if swap_words(text, pairs) != text]
    if not cases:
        return {"folder": folder, "oracle_match": rate(0, 0), "changed": rate(0, 0), "pairs": []}
    originals = [rebuilt(model, e, text) for e, text, _ in cases]
    swapped = [rebuilt(model, e, swap_words(text, pairs)) for e, text, _ in cases]
    before, after = generate(model, originals), generate(model, swapped)
    match = sum(p == e.answer.strip() for p, (e, _, _) in zip(before, cases, strict=True))
    changed = sum(a != b for a, b in zip(before, after, strict=True))
    shown = [{"instruction": t, "step": b, "swapped": swap_words(t, pairs), "swapped_step": a}
             for (_, t, _), b, a in list(zip(cases, before, after, strict=True))[:3]]
    out = {"folder": folder, "oracle_match": rate(match, len(cases)), "changed": rate(changed, len(cases)),
           "pairs": shown}
    judged = [(e, t, task, b, a) for (e, t, task), b, a in zip(cases, before, after, strict=True) if task in USEFUL]
    if judged:
        from envs.tasks.base import make_task

        tasks = {name: make_task("push", name) for name in {task for _, _, task, _, _ in judged}}
        ok = [(USEFUL[task](tasks[task], e.array("objects"), t, b),
               USEFUL[task](tasks[task], e.array("objects"), swap_words(t, pairs), a)) for e, t, task, b, a in judged]
        out["useful"] = rate(sum(u for u, _ in ok), len(ok))
        out["useful_swapped"] = rate(sum(v for _, v in ok), len(ok))
        out["useful_both"] = rate(sum(u and v for u, v in ok), len(ok))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a model folder (palme-train's export or a run's pretrained_model)")
    p.add_argument("--data", nargs="+", required=True, help="palme-collect log folders")
    p.add_argument("--swap", nargs="+", default=["left:right", "top:bottom"], help="word pairs a:b to swap")
    p.add_argument("--examples", type=int, default=200, help="first steps per folder (before the word filter)")
    p.add_argument("--out", help="write the figures as JSON")
    args = p.parse_args(argv)
    pairs = []
    for s in args.swap:
        a, sep, b = s.partition(":")
        if not sep or not a or not b or a == b:
            p.error(f"--swap takes pairs a:b of two different words, got {s!r}")
        pairs.append((a.lower(), b.lower()))
    from agent.model.palme import PalmE

    try:
        model = PalmE.from_pretrained(args.checkpoint)
    except ValueError as err:
        p.error(str(err))
    try:
        results = [measure(model, folder, pairs, args.examples) for folder in args.data]
    except ValueError as err:  # a folder that is not palme-collect logs, or fails validation
        p.error(str(err))
    for r in results:
        m, c = r["oracle_match"], r["changed"]
        print(f"{Path(r['folder']).name}: n={c['n']}  first step = oracle's {m['pc']}% {m['ci']}  "
              f"changed by the swap {c['pc']}% {c['ci']}")
        if "useful" in r:
            u, v, w = r["useful"], r["useful_swapped"], r["useful_both"]
            print(f"    useful first step: logged words {u['pc']}% {u['ci']}  swapped words {v['pc']}% {v['ci']}  "
                  f"both {w['pc']}% {w['ci']}")
        for s in r["pairs"]:
            print(f"    {s['instruction']!r} -> {s['step']!r}\n    {s['swapped']!r} -> {s['swapped_step']!r}")
    if args.out:
        Path(args.out).write_text(json.dumps({"checkpoint": args.checkpoint, "swap": args.swap, "results": results},
                                             indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
