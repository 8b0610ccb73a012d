"""Checks of a model folder before anything in it is used: nothing in it runs, nothing it claims is allocated unchecked.

A PalmE checkpoint (config.json, model.safetensors, tokenizer.json, tokenizer_config.json) and the
local Hugging Face folders that `llm=local` / `vision=local` read are untrusted input. These checks
run before a model is built from them, and every refusal is a `ValueError` whose message is one
line naming the file, the key (or tensor) and what was expected:

- `read_file_capped` / `read_json_object` / `check_folder`: every file is read only if it is a
  regular file (symlinks followed; a FIFO would block, /dev/zero never ends) within its size cap
  (`json_size_cap`: 16 MiB for config JSON, 64 MiB for tokenizer.json), checked before a byte is read.
- `refuse_code`: no JSON file in the folder may name Python code (`auto_map`, `custom_pipelines`,
  at any depth, e.g. config.json's `llm_config.auto_map`) or a tokenizer class transformers does
  not ship; the loaders also pass `trust_remote_code=False, local_files_only=True`, so nothing is
  asked and nothing is fetched.
- `read_checkpoint_config`: config.json's sections and the type of every field (the PalmEConfig
  dataclass annotations, section by section; unknown keys refused with a did-you-mean;
  `llm_config` / `vision_config` through transformers' strict configs, with `model_type` limited
  to what this code builds).
- `read_header` / `check_layer_counts` / `allocation_budget` / `compare_with_header`: the
  safetensors header (names, shapes, dtypes; read without loading a tensor) against the model the
  config describes. The model is built within a budget of about the weights' bytes, so a config
  that claims a 4,000,000-token vocabulary is refused in well under a second instead of
  allocating gigabytes (the model is then built on the meta device to name the tensors that
  differ), and a model that fits is compared with the header before its weights are read.
- `check_weights`: the loaded tensors are finite and of a size a trained weight can have.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import os
import re
import stat
import typing
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch.overrides import TorchFunctionMode

from agent.model.config import PalmEConfig

CODE_KEYS = ("auto_map", "custom_pipelines")  # keys through which transformers imports Python files from a folder
MAX_INT = 2**31 - 1  # no size, count or id of a model config is larger
MAX_SEED = 2**63 - 1  # torch.manual_seed's range
MAX_ABS_WEIGHT = 65504.0  # float16's largest value: no trained weight or saved statistic comes near it
CONFIG_SECTIONS = ("schema_version", "prompt_format_version", "palme", "llm_config", "vision_config")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
MIN_PIXEL_STD = 1e-3  # image_std below this is no statistic of [0, 1] pixels (and divides them into overflow)
# Size caps of the JSON files of a model folder, checked before a byte is parsed (a 2 GB config.json
# would otherwise take a minute and GBs of memory to refuse). A config.json, tokenizer_config.json,
# generation_config.json or preprocessor_config.json is a few KB (a chat template adds some 100 KB):
# 16 MiB is far above any; tokenizer.json holds the vocabulary and merges: Llama-3's (128k tokens)
# is 9 MB, Gemma-3's (262k) 33 MB, so 64 MiB.
MAX_JSON_BYTES = 16 * 2**20
MAX_TOKENIZER_JSON_BYTES = 64 * 2**20
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
_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
           torch.bool: "BOOL"}


def one_line(err: BaseException | str, limit: int = 300) -> str:
    """An error's text on one line (whitespace runs collapsed), cut at `limit` characters."""
    text = " ".join(str(err).split())
    if not text and isinstance(err, BaseException):
        text = type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    """`value` as shown in a message: its JSON text (cut) and its type."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{text} ({type(value).__name__})"


# ---------------------------------------------------------------------------------------------
# files


def _file_kind(mode: int) -> str:
    """What a file of st_mode `mode` is, in words ("a FIFO (named pipe)", "a character device", ...)."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def file_problem(path: str | Path) -> str | None:
    """Why `path` cannot be read as a file, or None for a regular file (symlinks followed).

    "is missing" (also a dangling symlink), or "is a FIFO (named pipe), not a regular file" and the
    like: reading a FIFO blocks until someone writes, reading /dev/zero never ends. Never opens it.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "is missing"
    except OSError as err:
        return f"cannot be read ({err.strerror or one_line(err)})"
    return None if stat.S_ISREG(mode) else f"is {_file_kind(mode)}, not a regular file"


def json_size_cap(path: str | Path) -> int:
    """The size cap of a model folder's JSON file: MAX_TOKENIZER_JSON_BYTES for tokenizer.json, else MAX_JSON_BYTES."""
    return MAX_TOKENIZER_JSON_BYTES if Path(path).name == "tokenizer.json" else MAX_JSON_BYTES


def read_file_capped(path: str | Path, cap: int) -> bytes:
    """The bytes of the regular file `path` (symlinks followed), refused in one line past `cap` bytes.

    Checked before reading: the file is regular (a FIFO, device, socket or folder is refused without
    being read: one would block, /dev/zero never ends) and at most `cap` bytes (its size and the cap
    are named); it is opened non-blocking and checked again, so a file swapped in between is refused
    too. Raises ValueError naming the file.
    """
    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise ValueError(f"{path} {problem}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise ValueError(f"{path} cannot be read: {err.strerror or one_line(err)}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path} is {_file_kind(st.st_mode)}, not a regular file")
        size = st.st_size
        data = b"" if size > cap else f.read(cap + 1)
    if size > cap or len(data) > cap:
        raise ValueError(f"{path} is {max(size, len(data)):,} bytes, over the {cap:,}-byte cap for this file "
                         f"({cap // 2**20} MiB): no such file of a model is that large")
    return data


def read_json_object(path: str | Path, cap: int | None = None) -> dict[str, Any]:
    """A JSON file holding an object, parsed; ValueError naming the file if missing, not a regular file, larger
    than `cap` bytes (default `json_size_cap`), not UTF-8, not JSON (an integer of more than 4300 digits
    included), not an object."""
    path = Path(path)
    raw = read_file_capped(path, json_size_cap(path) if cap is None else cap)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start} is {err.object[err.start]:#04x}): "
                         "expected a JSON file") from None
    try:
        data = json.loads(text)
    except ValueError as err:  # JSONDecodeError, and an integer too long to convert (over 4300 digits)
        raise ValueError(f"{path} is not valid JSON: {one_line(err)}") from None
    except RecursionError:
        raise ValueError(f"{path} nests JSON too deeply to be a config") from None
    if not isinstance(data, dict):
        msg = f"{path}: expected a JSON object at the top level, got {_kind(data)}"
        raise ValueError(msg)  # noqa: TRY004 - house rule: bad input is a ValueError
    return data


def check_folder(path: str | Path, files: Collection[str], what: str) -> Path:
    """`path` as a folder holding every name of `files`; ValueError saying which is not there."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{what} {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"{what} {path} is a file, not a folder; expected a folder holding {list(files)}")
    problems = {name: file_problem(path / name) for name in files}
    missing = [name for name, problem in problems.items() if problem == "is missing"]
    if missing:
        raise ValueError(f"{what} {path} is missing {', '.join(missing)}; it needs {list(files)}")
    for name, problem in problems.items():
        if problem:
            raise ValueError(f"{what} {path}: {name} {problem}")
    return path


def _walk(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key path, value) of every entry of nested JSON objects and lists, depth first."""
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path, value
            yield from _walk(value, path)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _walk(value, f"{prefix}[{i}]")


@functools.lru_cache(1)
def _tokenizer_class_names() -> frozenset[str]:
    """Tokenizer class names transformers ships (what a tokenizer_config.json may name)."""
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES

    names = {"PreTrainedTokenizerFast", "PreTrainedTokenizer", "TokenizersBackend"}
    for value in TOKENIZER_MAPPING_NAMES.values():
        for name in value if isinstance(value, (tuple, list)) else (value,):
            if name:
                names.update((name, name.removesuffix("Fast"), name.removesuffix("Fast") + "Fast"))
    return frozenset(names)


def refuse_code(folder: str | Path) -> None:
    """Refuse a folder whose JSON files would make transformers import Python code from it, without asking.

    Every top-level `*.json` file is read (files that are not JSON are left to their own loader):
    an `auto_map` or `custom_pipelines` key at any depth (config.json, its nested llm_config /
    vision_config, tokenizer_config.json, preprocessor_config.json, generation_config.json, ...) is
    refused, and so is a `tokenizer_class` that transformers does not ship. Every top-level entry
    must be a regular file or a folder (symlinks followed): a FIFO or a device (`ln -s /dev/zero
    notes.json`) is refused before anything reads it, and a JSON file past its size cap
    (`json_size_cap`: 16 MiB, 64 MiB for tokenizer.json) before it is parsed.
    Raises ValueError naming the file and the key (or what the file is, or its size and the cap).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        try:
            mode = path.stat().st_mode
        except OSError:
            continue  # a dangling symlink: whoever needs the file says it is missing
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            raise ValueError(f"{path} is {_file_kind(mode)}, not a regular file: a model folder holds files and "
                             "folders only (reading it would block or never end)")
        if path.suffix != ".json":
            continue
        try:
            text = read_file_capped(path, json_size_cap(path)).decode("utf-8")
        except UnicodeDecodeError:
            continue  # not JSON: whoever reads it refuses it; it cannot name code to anyone
        if "\\u" not in text and not any(k in text for k in (*CODE_KEYS, "tokenizer_class")):
            continue  # no such key, even escaped: nothing to parse (the common case, and fast)
        suspects: list[str] = []

        def note(pairs: list[tuple[str, Any]], suspects: list[str] = suspects) -> dict[str, Any]:
            suspects += [k for k, v in pairs if k in CODE_KEYS or (k == "tokenizer_class" and v is not None)]
            return dict(pairs)

        try:
            data = json.loads(text, object_pairs_hook=note)
        except (ValueError, RecursionError):
            continue
        if not suspects:
            continue
        for key, value in _walk(data):
            name = key.rsplit(".", 1)[-1]
            if name in CODE_KEYS:
                raise ValueError(f"{path}: key {key} names Python code to run ({_kind(value)}); "
                                 "code from a model folder is never run: remove the key")
            if name == "tokenizer_class" and value is not None and (
                    not isinstance(value, str) or value not in _tokenizer_class_names()):
                raise ValueError(f"{path}: {key} {_kind(value)} is not a tokenizer class transformers ships; "
                                 "custom tokenizer classes are refused (use a tokenizer.json)")


# ---------------------------------------------------------------------------------------------
# config.json


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


# ---------------------------------------------------------------------------------------------
# model.safetensors


def read_header(path: str | Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (shape, safetensors dtype such as "F32") of every tensor in a safetensors file; no tensor is read.

    safetensors checks that the header is well formed and that its offsets cover the file exactly,
    so a truncated or padded file is refused here; so is a FIFO or a device (before it is opened).
    Raises ValueError naming the file.
    """
    path = Path(path)
    problem = file_problem(path)
    if problem:
        raise ValueError(f"{path} {problem}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = {}
            for name in f.keys():  # noqa: SIM118 - safe_open is not a Mapping
                piece = f.get_slice(name)
                header[name] = (tuple(int(n) for n in piece.get_shape()), str(piece.get_dtype()))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable safetensors file: {one_line(err)}") from None
    if not header:
        raise ValueError(f"{path} holds no tensors")
    return header


class OverBudget(Exception):
    """Raised inside `allocation_budget` when a tensor would pass the budget (before it is allocated)."""


class _AllocationBudget(TorchFunctionMode):
    """Counts the bytes tensor factories (torch.empty, zeros, ones, full, ...) ask for; refuses past a limit.

    Each such call is first made on the meta device (no memory) to learn its size, so the call that
    would pass the limit raises `OverBudget` before anything is allocated, and so does every sized
    call after it (`tripped` stays true even if a library catches the first one). Calls for the
    meta device and tensors made from Python data (torch.tensor) are not counted.
    """

    SIZED = frozenset({torch.empty, torch.empty_strided, torch.zeros, torch.ones, torch.full, torch.rand,
                       torch.randn, torch.randint, torch.randperm, torch.arange, torch.eye, torch.linspace})

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.left = limit

    @property
    def tripped(self) -> bool:
        """Whether some call asked for more than the limit (and was refused)."""
        return self.left < 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SIZED and str(kwargs.get("device")) != "meta":
            probe = func(*args, **{**kwargs, "device": "meta"})
            self.left -= probe.numel() * probe.element_size()
            if self.left < 0:
                raise OverBudget(f"{func.__name__} of shape {list(probe.shape)}")
        return func(*args, **kwargs)


def allocation_budget(header: Mapping[str, tuple[tuple[int, ...], str]]) -> _AllocationBudget:
    """A context in which building a model may allocate about what a checkpoint's weights take, no more.

    The limit is twice the bytes of the tensors in `header` plus 16 MiB (non-persistent buffers,
    initialisation temporaries): a model whose config agrees with its weights always fits; one
    whose config claims a 4,000,000-token vocabulary raises `OverBudget` at its first big tensor.
    """
    sizes = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2}
    held = sum(math.prod(shape) * sizes.get(dtype, 1) for shape, dtype in header.values())
    return _AllocationBudget(2 * held + 16 * 2**20)


_LAYER_NAME = re.compile(r"^(.*?\.(?:layers?|h|blocks?))\.(\d{1,9})\.")  # <stack>.layers.<K>.<rest>
FREE_LAYERS = 64  # up to this many layers build in well under a second, even on the meta device
_WIDTH_KEYS = ("hidden_size", "hidden", "n_embd", "d_model")  # the width beside a layer count


def layer_stacks(header: Mapping[str, tuple[tuple[int, ...], str]]) -> dict[str, int]:
    """Stack prefix -> number of layers, from tensor NAMES `<stack>.layers.<K>.<rest>` (also `.layer.`, `.h.`,
    `.blocks.`), e.g. {"llm.model.layers": 3, "encoders.image.vision.backbone.layers": 2}.

    A stack's count is n when its layers 0..n-1 are all there, each with at least one tensor that
    is not empty: zero-size tensors and tensors outside a stack count for nothing.
    """
    stacks: dict[str, set[int]] = {}
    for name, (shape, _) in header.items():
        m = _LAYER_NAME.match(name)
        if m and math.prod(shape):
            stacks.setdefault(m.group(1), set()).add(int(m.group(2)))
    counts = {}
    for prefix, indices in stacks.items():
        n = 0
        while n in indices:
            n += 1
        counts[prefix] = n
    return counts


def check_layer_counts(meta: Mapping[str, Any], header: Mapping[str, tuple[tuple[int, ...], str]], where: str,
                       file: str) -> None:
    """A layer count in config.json above FREE_LAYERS must be backed by the file: refused before any model is built.

    Such a count N (llm_config.num_hidden_layers, palme.llm.layers, ...) needs a stack of at least
    N layers in the header's tensor NAMES (`layer_stacks`; the LM's `llm.model.layers.<K>.`, the
    vision encoder's) and at least N * width**2 weights in the file (every transformer layer holds
    a width x width projection; width: the hidden size beside the count), so a config that claims
    10000 layers is refused in milliseconds whatever zero-size or tiny tensors pad the file (building
    them would take minutes even on the meta device). Smaller counts are left to the comparison
    of the built model with the header (`compare_with_header`), which names the tensors.
    Raises ValueError naming config.json's key, the file and what it holds.
    """
    stacks = layer_stacks(header)
    most = max(stacks.values(), default=0)
    weights = sum(math.prod(shape) for shape, _ in header.values())
    parts = [(name, meta.get(name)) for name in ("palme", "llm_config", "vision_config")]
    parts += [(path, value) for name, part in parts[:] for path, value in _walk(part, name) if isinstance(value, dict)]
    for prefix, part in parts:
        if not isinstance(part, dict):
            continue
        width = next((part[k] for k in _WIDTH_KEYS if type(part.get(k)) is int), 0)
        for key, value in part.items():
            if key not in _LAYER_KEYS or type(value) is not int or value <= FREE_LAYERS:
                continue
            path = f"{prefix}.{key}"
            if value > most:
                shown = ", ".join(f"{k}: {n}" for k, n in sorted(stacks.items(), key=lambda kv: -kv[1])[:3])
                raise ValueError(f"{where}: {path} is {value} but {file} holds at most {most} layers in a stack "
                                 f"({shown or 'no <name>.layers.<K>. tensors'}): the config and the weights disagree")
            if weights < value * width**2:
                raise ValueError(f"{where}: {path} is {value} layers of width {width}, at least {value * width**2:,} "
                                 f"weights, but {file} holds {weights:,}: the config and the weights disagree")


def compare_with_header(expected: Mapping[str, torch.Tensor], header: Mapping[str, tuple[tuple[int, ...], str]],
                        file: str) -> None:
    """The state dict a config implies (`expected`, e.g. from a meta-device model) against the file's header.

    `expected` is `model.state_dict(keep_vars=True)`: names that share one tensor (tied weights) need
    only one of them in the file, as safetensors' save_model writes them. Every expected tensor must
    be in the file with the same shape and dtype, and the file may hold nothing else.
    Raises ValueError naming the first differences.
    """
    groups: dict[int, list[str]] = {}
    for name, tensor in expected.items():
        groups.setdefault(id(tensor), []).append(name)
    problems: list[str] = []
    missing: list[str] = []
    for names in groups.values():
        present = [n for n in names if n in header]
        if not present:
            missing.append(names[0])
        for name in present:
            tensor = expected[name]
            shape, dtype = header[name]
            want = _DTYPES.get(tensor.dtype, str(tensor.dtype))
            if shape != tuple(tensor.shape):
                problems.append(f"tensor {name} has shape {list(shape)} in the file but config.json implies "
                                f"{list(tensor.shape)}")
            elif dtype != want:
                problems.append(f"tensor {name} is {dtype} in the file but the model holds {want}")
    problems += [f"tensor {name} (which config.json implies) is not in the file" for name in missing]
    unexpected = sorted(set(header) - set(expected))
    problems += [f"the file has a tensor {name} that the model of config.json does not have" for name in unexpected]
    if problems:
        more = f" (and {len(problems) - 1} more differences)" if len(problems) > 1 else ""
        raise ValueError(f"{file} does not fit config.json: {problems[0]}{more}")


def check_weights(state: Mapping[str, torch.Tensor], file: str) -> None:
    """Every floating tensor of a loaded state dict is finite and within +-MAX_ABS_WEIGHT.

    A NaN or inf weight would make every answer empty; a weight beyond float16's range is no
    trained value (a corrupt file: a flipped exponent bit gives 1e36). Raises ValueError naming
    the tensor.
    """
    for name, tensor in state.items():
        if not tensor.is_floating_point() or not tensor.numel():
            continue
        peak = float(tensor.detach().abs().amax())  # NaN propagates
        if math.isfinite(peak) and peak <= MAX_ABS_WEIGHT:
            continue
        if math.isfinite(peak):
            raise ValueError(f"{file}: tensor {name} holds a value of magnitude {peak:.3g}, beyond "
                             f"{MAX_ABS_WEIGHT:g}: not a trained weight (a corrupt file?)")
        what = "NaN" if bool(tensor.isnan().any()) else "inf"
        raise ValueError(f"{file}: tensor {name} holds {what} values ({int((~tensor.isfinite()).sum())} of "
                         f"{tensor.numel()}); a model with them answers nothing")
