"""How tests/data/palme_schema1/ was made: a tiny schema-1 PalmE checkpoint (flat config, old module names) and
the answers it gave, written by the code of commit eb6632b (before issue #18's model core). Kept for the record:

    git worktree add /tmp/eb6632b eb6632b && cd /tmp/eb6632b && python /path/to/tests/data/make_palme_schema1.py OUT

Every feature of the shipped model is on (word mixes, size words, stack and zone relations, history window 2)
and every weight is perturbed by seeded noise, so the relation maps are not zero; OUT/expected.json holds the
prompts (text parts), OUT/expected.npz their arrays and the last-position logits, and the greedy answers.
tests/test_convert.py converts the folder and checks that the new code gives the same logits and answers.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.getcwd())

import numpy as np
import torch

from agent.model import make_model
from envs import make_env

TINY = {"llm_hidden": 16, "llm_layers": 1, "llm_heads": 2, "llm_kv_heads": 2, "llm_intermediate": 32,
        "vision_hidden": 16, "vision_layers": 1, "vision_heads": 2, "vision_intermediate": 32, "image_size": 32,
        "patch_size": 16, "state_hidden": 16, "vocab_size": 300, "max_positions": 256,
        "obj_words": True, "obj_size_words": True, "obj_relations": True, "zone_relations": True,
        "history_window": 2, "seed": 3}


def main(out: str) -> None:
    obs_list = []
    for task, seed in (("stack", 1_000_003), ("sort_by_color", 1_000_005)):
        env = make_env("pickplace", task, split="L1", image_size=(32, 32))
        obs, _ = env.reset(seed=seed)
        obs["objects"][0, :2] = obs["zones"][0, :2]  # a cube in a zone: the zone words take part
        obs_list.append(obs)
        env.close()
    model = make_model("palme-tiny", tokenizer_texts=["pick up the red cube", "place it in the red zone"], **TINY)
    pb = model.prompt_builder
    examples = [pb.for_obs("plan", o, instruction=o["instruction"], history=h)
                for o in obs_list for h in ([], [("pick up the red cube", "ok")] * 3)]
    examples += [pb.for_obs("vqa", o, question="which zone is obj 1 in?") for o in obs_list]
    model.fit_state_stats(examples)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    model.eval()
    model.save_pretrained(out)
    with torch.no_grad():
        batch = model.collate(examples, train=False)
        logits = model.llm(inputs_embeds=model.embed(batch), attention_mask=batch["attention_mask"],
                           position_ids=batch["position_ids"]).logits[:, -1]
        answers = model.generate(examples, max_new_tokens=6)
    arrays = {}
    for i, ex in enumerate(examples):
        for key in ("image", "objects", "robot", "zones"):
            if getattr(ex, key) is not None:
                arrays[f"{i}_{key}"] = getattr(ex, key)
    np.savez_compressed(Path(out) / "expected.npz", logits=logits.numpy(), **arrays)
    meta = {"prompts": [list(ex.prompt.parts) for ex in examples], "answers": answers}
    (Path(out) / "expected.json").write_text(json.dumps(meta, indent=1))
    print(answers, model.parameter_counts())


if __name__ == "__main__":
    main(sys.argv[1])
