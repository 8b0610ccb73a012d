"""Teacher-forced planning steps of every frame, split by the kind of step the oracle wrote (stop 36's stack probe).

For each folder of palme-collect logs, every planning example (any frame, up to N): the model's greedy, unconstrained
step against the logged oracle step, counted per kind of oracle step ("pick", "place on a cube", "place on the
table", "done", ...). A step is right when it parses to the oracle's skill call in the logged scene
(`agent.parser.parse_step` on the logged object rows), so a referral with a size word the scene does not need still
counts. The commonest wrong answers of each kind are listed: another kind of step, a referral that differs by size
words alone (one the scene needs was dropped, or a wrong one given), or other blocks.

    python results/palme_tiny_recipe/step_probe.py MODEL_OR_RUN_DIR DATA_DIR [DATA_DIR ...]   (N=600 by default)
"""

import collections
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch
from instruction_reliance import generate

from agent.model.palme import PalmE
from agent.parser import SceneContext, parse_step
from envs.catalogue import descs_from_rows
from training.config import DataConfig
from training.data import load_data


def kind(step: str) -> str:
    """A plan step's kind: its verb, with `place` split by where it puts the block."""
    if step.startswith("place"):
        return "place on the table" if step.endswith("on the table") else "place on " + (
            "a cube" if re.search(r"on the [\w ]*(cube|block)$", step) else "other")
    return step.split(" ")[0] if step else "(empty)"


def sizeless(step: str) -> str:
    """The step without size words (a referral may carry one the scene does not need)."""
    return re.sub(r"\b(small|large) ", "", step)


def wrong_kind(step: str, answer: str) -> str:
    """How a wrong step differs from the oracle's: another kind, only size words, or other blocks."""
    if kind(step) != kind(answer):
        return "-> " + kind(step)
    return "size words only" if sizeless(step) == sizeless(answer) else "other blocks"


torch.set_num_threads(int(os.environ.get("THREADS", "1")))
ck = Path(sys.argv[1])
if (ck / "checkpoints" / "last" / "pretrained_model").is_dir():  # a palme-train run folder
    ck = ck / "checkpoints" / "last" / "pretrained_model"
model = PalmE.from_pretrained(ck).eval()
for folder in sys.argv[2:]:
    cfg = DataConfig(dirs=[folder], weights={"plan": 1.0}, val_fraction=0.0, validate_images=False)
    data = load_data(cfg, model.prompt_builder, seed=0, log=lambda _: None)
    examples = [data.example(r) for r in data.train.get("plan", [])[: int(os.environ.get("N", "600"))]]
    preds = generate(model, examples)
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    errors: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for e, p in zip(examples, preds, strict=True):
        answer = e.answer.strip()
        scene = SceneContext(objects=tuple(descs_from_rows(e.array("objects"))))
        right = p == answer or parse_step(p, scene) == parse_step(answer, scene)
        counts[kind(answer)][0] += right
        counts[kind(answer)][1] += 1
        if not right:
            errors[kind(answer)][wrong_kind(p, answer)] += 1
    print(ck.parent.parent.parent.name if ck.name == "pretrained_model" else ck.name, folder)
    for k, (right, n) in sorted(counts.items()):
        print(f"  {k:20s} {right:4d}/{n:<4d} wrong: {dict(errors[k].most_common(3))}")
