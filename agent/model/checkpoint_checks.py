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

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch.overrides import TorchFunctionMode

# re-exported: the file and config.json checks live in their own modules
from agent.model.checkpoint_config import (  # noqa: F401
    _HF_POSITIVE,
    _LAYER_KEYS,
    _MISSING,
    _POSITIVE,
    _RANGES,
    _TOKEN_ID_KEYS,
    ATTN_IMPLEMENTATIONS,
    CONFIG_SECTIONS,
    LOCAL_VISION_TYPES,
    MAX_INT,
    MAX_SEED,
    MIN_PIXEL_STD,
    VISION_TYPES,
    _at,
    _check_field,
    _check_number,
    _check_section,
    causal_lm_types,
    check_model_config,
    check_palme_section,
    read_checkpoint_config,
)
from agent.model.checkpoint_files import (  # noqa: F401
    CODE_KEYS,
    MAX_JSON_BYTES,
    MAX_TOKENIZER_JSON_BYTES,
    _file_kind,
    _kind,
    _tokenizer_class_names,
    _walk,
    check_folder,
    file_problem,
    json_size_cap,
    one_line,
    read_file_capped,
    read_json_object,
    refuse_code,
)

MAX_ABS_WEIGHT = 65504.0  # float16's largest value: no trained weight or saved statistic comes near it
_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
           torch.bool: "BOOL"}





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