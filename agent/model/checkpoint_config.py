"""Checks of a checkpoint's config.json: its sections and the type and range of every field.

Part of the checks described in `agent.model.checkpoint_checks` (which re-exports every name here).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Collection
from pathlib import Path
from typing import Any

from agent.model.checkpoint_files import _kind, _walk, one_line, read_json_object, refuse_code
from agent.model.config import PalmEConfig

MAX_INT = 2**31 - 1  # no size, count or id of a model config is larger
MAX_SEED = 2**63 - 1  # torch.manual_seed's range
CONFIG_SECTIONS = ("schema_version", "prompt_format_version", "palme", "llm_config", "vision_config")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
MIN_PIXEL_STD = 1e-3  # image_std below this is no statistic of [0, 1] pixels (and divides them into overflow)
# vision_config model types a checkpoint may hold (the vision towers `vision=local` builds) and the
# top-level types of a vision=local folder (dual CLIP / SigLIP models give their vision tower)
VISION_TYPES = ("vit", "siglip_vision_model", "clip_vision_model")
LOCAL_VISION_TYPES = (*VISION_TYPES, "siglip", "clip")
_POSITIVE = ("llm.vocab_size", "llm.hidden", "llm.layers", "llm.heads", "llm.kv_heads", "llm.intermediate",
             "llm.max_positions", "vision.image_size", "vision.patch_size", "vision.hidden", "vision.layers",
             "vision.heads", "vision.intermediate", "state.tokens_per_object", "state.hidden", "lora.r", "lora.alpha")
_HF_POSITIVE = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "max_position_embeddings", "image_size", "patch_size",
                "num_channels")
# (names, low, high, "open" | "half-open"): ranges outside which a config value makes NaN or no sense; a
# name matches itself and any key ending in "_<name>" (layer_norm_eps, resid_pdrop, partial_rotary_factor)
_RANGES = ((("eps", "epsilon"), 0.0, 1.0, "open"),  # normalisation epsilons (rms_norm_eps, layer_norm_eps)
           (("rope_theta", "factor"), 0.0, math.inf, "open"),  # RoPE base and scaling factors
           (("dropout", "dropout_prob", "pdrop", "dropout_rate"), 0.0, 1.0, "half-open"))
_TOKEN_ID_KEYS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "sep_token_id")
_LAYER_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers", "layers")


def _check_number(value: Any, where: str, key: str, *, integer: bool) -> None:
    """An int (integer=True) or a finite number; never a bool."""
    ok = type(value) is int or (not integer and type(value) is float)
    if not ok:
        raise ValueError(f"{where}: {key} must be {'an integer' if integer else 'a number'}, got {_kind(value)}")
    if type(value) is float and not math.isfinite(value):
        raise ValueError(f"{where}: {key} must be finite, got {value}")


def _check_field(value: Any, hint: Any, where: str, key: str) -> None:
    """`value` against a PalmEConfig annotation: a section (dataclass), bool, int, float, str, list[float] or
    list[str]."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        _check_section(value, hint, where, key)
    elif hint is bool:
        if type(value) is not bool:
            raise ValueError(f"{where}: {key} must be true or false, got {_kind(value)}")
    elif hint in (int, float):
        _check_number(value, where, key, integer=hint is int)
    elif hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: {key} must be a string, got {_kind(value)}")
    elif origin is list and args in ((float,), (str,)):
        if not isinstance(value, list):
            raise ValueError(f"{where}: {key} must be a list, got {_kind(value)}")
        for i, item in enumerate(value):
            _check_field(item, args[0], where, f"{key}[{i}]")
    else:  # a new annotation: teach this function its JSON form
        raise TypeError(f"PalmEConfig {key}: no JSON check for the annotation {hint!r}")


def _check_section(data: Any, kind: type, where: str, key: str) -> None:
    """A JSON object of `kind`'s fields (a PalmEConfig section): no unknown key (did-you-mean), each field typed."""
    if not isinstance(data, dict):
        msg = f"{where}: {key} must be a JSON object (the model's {kind.__name__}), got {_kind(data)}"
        raise ValueError(msg)  # noqa: TRY004 - house rule: bad input is a ValueError
    hints = typing.get_type_hints(kind)
    known = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        near = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
        guesses = "; ".join(f"{k!r}: did you mean {m[0]!r}?" for k, m in near.items() if m)
        raise ValueError(f"{where}: {key} has unknown keys {unknown} (a {kind.__name__} has no such fields)"
                         + (f"; {guesses}" if guesses else ""))
    for name, value in data.items():
        _check_field(value, hints[name], where, f"{key}.{name}")


def _at(data: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key of nested dicts (`_MISSING` when absent: the default applies)."""
    for part in dotted.split("."):
        if part not in data:
            return _MISSING
        data = data[part]
    return data


_MISSING = object()


def check_palme_section(data: Any, where: str) -> PalmEConfig:
    """config.json's `palme` section -> PalmEConfig, every field's type and range checked first.

    Types follow the PalmEConfig annotations, section by section (a bool is not an int, an int is a
    number); sizes are integers in [1, 2**31), `prompt.history_window` >= 0, `seed` in [0, 2**63),
    vision.image_mean / image_std 3 numbers in [0, 1] (std at least MIN_PIXEL_STD), `lora.dropout`
    in [0, 1); `llm.backbone`, `vision.backbone`, `vision.projector`, `llm.attn_implementation`, each
    of `prompt.tokens` and of `state.features` name something this code has. Missing fields take
    their defaults; unknown fields are refused (with a did-you-mean). Raises ValueError naming
    `where` and the key.
    """
    from agent.model.features import OBJECT_FEATURES
    from agent.model.llm import LLMS
    from agent.model.parts import PROJECTORS, VISION_BACKBONES
    from agent.model.tokens import TOKEN_TYPES

    _check_section(data, PalmEConfig, where, "palme")
    for key in _POSITIVE:
        value = _at(data, key)
        if value is not _MISSING and not 1 <= value <= MAX_INT:
            raise ValueError(f"{where}: palme.{key} must be in [1, {MAX_INT}], got {value}")
    for key, low, high, shown in (("prompt.history_window", 0, MAX_INT, f"[0, {MAX_INT}]"),
                                  ("seed", 0, MAX_SEED, f"[0, {MAX_SEED}]")):
        value = _at(data, key)
        if value is not _MISSING and not low <= value <= high:
            raise ValueError(f"{where}: palme.{key} must be in {shown}, got {value}")
    dropout = _at(data, "lora.dropout")
    if dropout is not _MISSING and not 0 <= dropout < 1:
        raise ValueError(f"{where}: palme.lora.dropout must be in [0, 1), got {dropout}")
    for key, low in (("vision.image_mean", 0.0), ("vision.image_std", MIN_PIXEL_STD)):
        values = _at(data, key)
        if values is _MISSING:
            continue
        if len(values) != 3:
            raise ValueError(f"{where}: palme.{key} must hold 3 numbers (R, G, B), got {len(values)}")
        if any(not low <= v <= 1 for v in values):
            raise ValueError(f"{where}: palme.{key} must lie in [{low:g}, 1] (statistics of [0, 1] pixels), "
                             f"got {values}")
    choices = {"llm.backbone": LLMS, "vision.backbone": VISION_BACKBONES, "vision.projector": PROJECTORS,
               "llm.attn_implementation": ATTN_IMPLEMENTATIONS}
    for key, allowed in choices.items():
        value = _at(data, key)
        if value is not _MISSING and value not in allowed:
            raise ValueError(f"{where}: palme.{key} {value!r} is not one of {sorted(allowed)}")
    for key, allowed in (("prompt.tokens", TOKEN_TYPES), ("state.features", OBJECT_FEATURES)):
        for i, value in enumerate(() if (values := _at(data, key)) is _MISSING else values):
            if value not in allowed:
                raise ValueError(f"{where}: palme.{key}[{i}] {value!r} is not one of {sorted(allowed)}")
    try:
        cfg = PalmEConfig.from_dict(data)
    except ValueError as err:
        raise ValueError(f"{where}: palme: {one_line(err)}") from None
    if cfg.vision.backbone == "scratch" and cfg.vision.hidden % cfg.vision.heads:
        raise ValueError(f"{where}: palme.vision.hidden {cfg.vision.hidden} must be a multiple of "
                         f"palme.vision.heads {cfg.vision.heads}")
    return cfg


def causal_lm_types() -> frozenset[str]:
    """The `model_type`s of transformers' causal LMs (what `llm_config.model_type` may be)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return frozenset(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def check_model_config(data: Any, where: str, key: str, allowed: Collection[str]) -> Any:
    """A saved transformers config dict (`llm_config` / `vision_config`) -> its config object, checked.

    `model_type` must be one of `allowed`; every number finite and every integer within 2**31;
    sizes (vocab_size, hidden_size, layer and head counts, ...) >= 1; token ids within vocab_size;
    epsilons in (0, 1), RoPE theta and factors > 0, dropouts in [0, 1); `return_dict` true; an
    `hidden_act` an activation transformers has. The rest is checked by transformers' strict config
    classes (field types, value ranges, architecture rules).
    Raises ValueError naming `where`, `key` and the field.
    """
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig
    from transformers.activations import ACT2FN

    if not isinstance(data, dict):
        msg = f"{where}: {key} must be a JSON object (a transformers config), got {_kind(data)}"
        raise ValueError(msg)  # noqa: TRY004 - house rule: bad input is a ValueError
    model_type = data.get("model_type")
    if model_type not in allowed:
        shown = sorted(allowed) if len(allowed) <= 8 else "a transformers causal LM type such as 'llama'"
        raise ValueError(f"{where}: {key}.model_type {_kind(model_type)} is not supported; expected {shown}")
    vocab = data.get("vocab_size")
    for path, value in _walk(data, key):
        if type(value) is float and not math.isfinite(value):
            raise ValueError(f"{where}: {path} must be finite, got {value}")
        if type(value) is int and abs(value) > MAX_INT:
            raise ValueError(f"{where}: {path} = {value} is out of range (at most {MAX_INT} in size)")
        name = path.rsplit(".", 1)[-1]
        for names, low, high, kind in _RANGES:
            if value is None or not (name in names or name.endswith(tuple("_" + n for n in names))):
                continue
            number = type(value) in (int, float)
            if not number or not (low < value < high if kind == "open" else low <= value < high):
                bounds = f"({low:g}, {high:g})" if kind == "open" else f"[{low:g}, {high:g})"
                raise ValueError(f"{where}: {path} must be a number in {bounds}, got {_kind(value)}")
        if name in _TOKEN_ID_KEYS and type(vocab) is int:
            ids = value if isinstance(value, list) else [value]
            if any(type(i) is int and not 0 <= i < vocab for i in ids):
                raise ValueError(f"{where}: {path} {_kind(value)} must be a token id in [0, {vocab}) (vocab_size)")
    for name in ("hidden_act", "hidden_activation"):
        act = data.get(name)
        if act is not None and (not isinstance(act, str) or act not in ACT2FN):
            raise ValueError(f"{where}: {key}.{name} {_kind(act)} is not an activation transformers has")
    if data.get("return_dict", True) is not True:
        raise ValueError(f"{where}: {key}.return_dict must be true (the model's outputs are read by name), "
                         f"got {_kind(data['return_dict'])}")
    for name in _HF_POSITIVE:
        value = data.get(name)
        if type(value) is int and value < 1:
            raise ValueError(f"{where}: {key}.{name} must be >= 1, got {value}")
    heads, kv = data.get("num_attention_heads"), data.get("num_key_value_heads")
    if type(heads) is int and type(kv) is int and (kv < 1 or heads % kv):
        raise ValueError(f"{where}: {key}.num_key_value_heads {kv} must divide num_attention_heads {heads}")
    try:
        return AutoConfig.for_model(**data)
    except (StrictDataclassError, ValueError, TypeError, AttributeError, KeyError) as err:
        raise ValueError(f"{where}: {key} is not a valid {model_type} config: {one_line(err)}") from None


def read_checkpoint_config(folder: str | Path) -> tuple[dict[str, Any], PalmEConfig]:
    """config.json of a PalmE checkpoint folder -> (its dict, the PalmEConfig), everything in it checked.

    The folder's JSON files may not name code (`refuse_code`); config.json must hold exactly the
    sections save_pretrained writes (schema and prompt format versions, `palme`, `llm_config`,
    `vision_config`: null for vision=scratch, a vision tower's config for vision=local).
    Nothing is built or loaded. Raises ValueError naming the file and the key.
    """
    from agent.model.palme import _check_versions

    folder = Path(folder)
    refuse_code(folder)
    path = folder / "config.json"
    meta = read_json_object(path)
    missing = [k for k in CONFIG_SECTIONS if k not in meta]
    unknown = sorted(set(meta) - set(CONFIG_SECTIONS))
    if missing or unknown:
        what = "; ".join([*([f"missing sections {missing}"] if missing else []),
                          *([f"unknown sections {unknown}"] if unknown else [])])
        raise ValueError(f"{path}: {what}; a PalmE config.json holds {list(CONFIG_SECTIONS)} (as save_pretrained "
                         "writes it)")
    _check_versions(meta, folder)
    cfg = check_palme_section(meta["palme"], str(path))
    check_model_config(meta["llm_config"], str(path), "llm_config", causal_lm_types())
    vision = meta["vision_config"]
    if cfg.vision.backbone == "scratch" and vision is not None:
        raise ValueError(f"{path}: vision_config must be null for palme.vision.backbone 'scratch' (the ViT is "
                         f"described by palme), got {_kind(vision)}")
    if cfg.vision.backbone == "local" and vision is None and "image" in cfg.prompt.tokens:
        raise ValueError(f"{path}: vision_config is null but palme.vision.backbone is 'local'; expected the "
                         "vision tower's config (a checkpoint never reads vision.path again)")
    if cfg.vision.backbone == "local" and vision is not None:
        check_model_config(vision, str(path), "vision_config", VISION_TYPES)
    return meta, cfg
