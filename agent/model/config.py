"""`PalmEConfig`: every choice that defines a PaLM-E model, by id, plus the preset loader.

Presets live as yaml files in the `configs/model/` package (the hydra `model` group), so a preset
is written once and read both by hydra and by `PalmEConfig.from_preset`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

SCHEMA_VERSION = 1  # bump when the checkpoint layout or the meaning of a field changes
STAGES: tuple[str, ...] = ("full", "frozen_llm", "projector_only", "lora")


@dataclass
class PalmEConfig:
    """Model definition: LLM, vision backbone, projector and state encoder, each chosen by id."""

    name: str = "palme-tiny"  # preset name, for reports
    seed: int = 0  # seeds the weight initialisation (in a forked RNG; global state untouched)
    # --- prompts (the PromptBuilder flags this model is trained and run with)
    use_image: bool = True  # prompts carry `<img>`
    use_state: bool = True  # prompts carry object tokens `<obj_j>` and the robot token `<robot>`
    entity_referral: bool = True  # "Object j is <obj_j>." (PaLM-E) rather than bare object tokens
    zone_tokens: bool = False  # with use_state: scenes with target zones also carry `<zone_k>` tokens (zone rows)
    history_window: int = 0  # planning prompts show only the last k steps so far (0: all of them)
    name_objects: bool = False  # with use_state: "The small cyan cube is <obj_j>." (names from the rows) in every prompt
    # --- language model
    llm: str = (
        "scratch"  # scratch (tiny Llama trained from scratch) | local (HF dir) | smollm2 (GGUF, offline)
    )
    llm_path: str = ""  # the HF directory when llm=local
    vocab_size: int = 1024  # scratch: size of the byte-level BPE vocabulary trained for it
    llm_hidden: int = 256  # scratch: embedding width
    llm_layers: int = 4  # scratch: decoder layers
    llm_heads: int = 4  # scratch: attention heads
    llm_kv_heads: int = 4  # scratch: key/value heads (GQA when fewer than llm_heads)
    llm_intermediate: int = 688  # scratch: MLP width
    max_positions: int = 1024  # scratch: longest sequence (prompt + observation tokens + answer)
    attn_implementation: str = "sdpa"  # sdpa | eager, passed to transformers
    # --- vision
    vision: str = "scratch"  # scratch (tiny ViT from scratch) | local (ViT/SigLIP/CLIP vision checkpoint dir)
    vision_path: str = ""  # the checkpoint directory when vision=local
    image_size: int = 64  # frames are resized to this square size (local: taken from the checkpoint)
    patch_size: int = 16  # scratch: ViT patch size; image tokens = (image_size / patch_size)^2 + 1 (CLS)
    vision_hidden: int = 128  # scratch: ViT width
    vision_layers: int = 4  # scratch: ViT layers
    vision_heads: int = 4  # scratch: ViT heads
    vision_intermediate: int = 256  # scratch: ViT MLP width
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # per channel, on [0, 1] pixels
    image_std: list[float] = field(
        default_factory=lambda: [0.5, 0.5, 0.5]
    )  # (local: from preprocessor_config.json)
    projector: str = "mlp"  # linear (PaLM-E's affine map) | mlp (2 layers, GELU): vision width -> LLM width
    # --- state
    obj_tokens: int = 1  # k: LLM tokens per object (each `<obj_j>` becomes k tokens)
    state_hidden: int = 256  # width of the state MLPs
    obj_words: bool = False  # object tokens also carry the LM's own embeddings of their colour and shape words
    obj_size_words: bool = False  # with obj_words: and of their size word ("small"/"large": the nearer edge length)
    obj_relations: bool = False  # with obj_words: object tokens also carry the words of the cubes above / below them in their stack
    zone_relations: bool = False  # with obj_words: object tokens also carry the words of the zone they lie in ("red zone")
    obj_referral_words: bool = False  # with obj_words: the token of `<obj_j>` also carries the word "j" of its name "obj j"
    # --- adaptation
    stage: str = "full"  # which parts train: full | frozen_llm | projector_only | lora (see PalmE.set_stage)
    lora: bool = False  # wrap the LLM with LoRA adapters (peft); stage "lora" turns this on
    lora_r: int = 8  # LoRA rank
    lora_alpha: int = 16  # LoRA scaling numerator
    lora_dropout: float = 0.0  # LoRA dropout
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def __post_init__(self) -> None:
        # hydra hands ListConfig values over; plain lists keep config.json serialisable
        self.image_mean = [float(v) for v in self.image_mean]
        self.image_std = [float(v) for v in self.image_std]
        self.lora_targets = [str(v) for v in self.lora_targets]
        if self.llm == "local" and not self.llm_path:
            raise ValueError("llm=local needs llm_path (a local HF model directory)")
        if self.vision == "local" and not self.vision_path:
            raise ValueError("vision=local needs vision_path (a ViT/SigLIP/CLIP checkpoint directory)")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {list(STAGES)}, got {self.stage!r}")
        if self.history_window < 0:
            raise ValueError(f"history_window must be >= 0 (0: the whole history), got {self.history_window}")
        if self.obj_tokens < 1:
            raise ValueError(f"obj_tokens must be >= 1, got {self.obj_tokens}")
        if self.vision == "scratch" and self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}"
            )
        if self.llm == "scratch" and self.llm_hidden % self.llm_heads:
            raise ValueError(f"llm_hidden {self.llm_hidden} must be a multiple of llm_heads {self.llm_heads}")
        if self.obj_relations and not self.obj_words:
            raise ValueError("obj_relations needs obj_words=true (it passes neighbours' words into object tokens)")
        if self.zone_relations and not self.obj_words:
            raise ValueError("zone_relations needs obj_words=true (it passes zones' words into object tokens)")
        if self.obj_referral_words and not self.obj_words:
            raise ValueError("obj_referral_words needs obj_words=true (it adds a word to object tokens)")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("image_mean and image_std need 3 values (RGB)")

    @property
    def needs_tokenizer(self) -> bool:
        """True when the LLM is trained from scratch and so needs a tokenizer trained on our text."""
        return self.llm == "scratch"

    def prompt_flags(self) -> dict[str, Any]:
        """Keyword arguments of the `PromptBuilder` this model is trained and run with."""
        return {"use_image": self.use_image, "use_state": self.use_state,
                "entity_referral": self.entity_referral, "use_zones": self.zone_tokens,
                "zone_rows": self.zone_relations, "history_window": self.history_window,
                "name_objects": self.name_objects}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for config.json."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PalmEConfig:
        """Inverse of to_dict; unknown keys are an error that names them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PalmEConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> PalmEConfig:
        """Load `configs/model/<name>.yaml`, then apply `overrides`."""
        folder = resources.files("configs") / "model"
        path = folder / f"{name}.yaml"
        if not path.is_file():
            known = sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))
            raise ValueError(f"unknown model preset {name!r}; known presets: {known}")
        data = yaml.safe_load(path.read_text()) or {}
        return cls.from_dict({**data, **overrides})


def preset_names() -> list[str]:
    """Names of the model presets shipped in configs/model/."""
    folder = resources.files("configs") / "model"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))
