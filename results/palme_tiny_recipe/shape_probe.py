"""Teacher-forced first steps split by how the instruction names its blocks (stop 34's probe): for each folder of
palme-collect logs, the share of first planning steps (greedy, unconstrained) that equal the oracle's, per class of
`benchmarks/reference_forms.reference_class` (shape only / colour only / colour and shape).

    python results/palme_tiny_recipe/shape_probe.py MODEL_OR_RUN_DIR DATA_DIR [DATA_DIR ...]   (SHOW=1: failures)
"""

import collections
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import torch
from instruction_reliance import first_steps, generate
from reference_forms import reference_class

from agent.model.palme import PalmE

torch.set_num_threads(1)
ck = Path(sys.argv[1])
if (ck / "checkpoints" / "last" / "pretrained_model").is_dir():  # a palme-train run folder
    ck = ck / "checkpoints" / "last" / "pretrained_model"
model = PalmE.from_pretrained(ck).eval()
for folder in sys.argv[2:]:
    cases = first_steps(model, folder, 200)
    preds = generate(model, [e for e, _, _ in cases])
    counts = collections.defaultdict(lambda: [0, 0])
    for (e, text, _), p in zip(cases, preds, strict=True):
        c = reference_class(text) or "no block named"
        counts[c][0] += p == e.answer.strip()
        counts[c][1] += 1
        if os.environ.get("SHOW") and c == "shape only" and p != e.answer.strip():
            print("   ", text, "| oracle:", e.answer.strip(), "| model:", p)
    print(folder, {c: f"{k}/{n}" for c, (k, n) in counts.items()})
