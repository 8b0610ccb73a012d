"""Tokenizers: a byte-level BPE trained on our text for the from-scratch LLM, and the placeholder tokens.

Byte-level BPE covers every string (unseen characters fall back to bytes), so any instruction or
answer encodes and decodes back exactly. The placeholders (`<img>`, `<obj_1>`..`<obj_8>`,
`<zone_1>`..`<zone_4>`, `<robot>`) are special tokens: never split, never merged with neighbouring
text, and never produced from text: `encode_text` tokenises text (instructions, questions,
answers, anything from users or files) with `split_special_tokens`, so the characters `<img>` or
`<eos>` in it stay characters. Placeholder ids enter a sequence only where a `Prompt` holds one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from agent.model.checkpoint_checks import one_line, read_json_object
from agent.prompts import PLACEHOLDERS, PromptBuilder
from envs.catalogue import COLOR_NAMES, MAX_OBJECTS, SHAPE_NAMES, SIZE_NAMES
from envs.vocab import BOARD_LOCATIONS, DIRECTIONS, DISTANCES, PUSH_RELATIONS, referral_name

PAD, EOS = "<pad>", "<eos>"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A byte-level BPE of at most `vocab_size` tokens trained on `texts` (plus the built-in plan corpus)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS, *PLACEHOLDERS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: any text encodes
        show_progress=False,
    )
    tok.train_from_iterator([*default_corpus(), *texts], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS)


TOKENIZER_FILE, TOKENIZER_CONFIG = "tokenizer.json", "tokenizer_config.json"
_SPECIAL_KEYS = ("eos_token", "pad_token", "bos_token", "unk_token")


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerFast:
    """A PalmE checkpoint folder's tokenizer, read as data: tokenizer.json and tokenizer_config.json's special tokens.

    No tokenizer class named by the folder is looked up (no AutoTokenizer): tokenizer.json is a
    `tokenizers` serialisation (vocabulary, merges, pre-tokenizer, decoder), and from
    tokenizer_config.json only `eos_token` (required), `pad_token`, `bos_token`, `unk_token`,
    `model_max_length` and `clean_up_tokenization_spaces` are taken (other keys are bookkeeping
    of the transformers version that wrote them). For checkpoints written by `save_pretrained`
    the result encodes, decodes and pads exactly as `AutoTokenizer.from_pretrained(folder)`.
    Raises ValueError naming the file and the key: not UTF-8 JSON, not a tokenizers file,
    `truncation` / `padding` set (this code pads itself and never truncates), a special token that
    is not in the vocabulary, a placeholder (`<img>`, `<obj_j>`, ...) missing or not special.
    """
    folder = Path(folder)
    tok_path, cfg_path = folder / TOKENIZER_FILE, folder / TOKENIZER_CONFIG
    data = read_json_object(tok_path)
    for key, kind in (("model", dict), ("added_tokens", list)):
        if not isinstance(data.get(key), kind):
            msg = (f"{tok_path}: {key} must be a JSON {'object' if kind is dict else 'list'} (a tokenizers file as "
                   f"save_pretrained writes it), got {type(data[key]).__name__ if key in data else 'no such key'}")
            raise ValueError(msg)  # noqa: TRY004 - house rule: bad input is a ValueError
    for key in ("truncation", "padding"):
        if data.get(key) is not None:
            raise ValueError(f"{tok_path}: {key} must be null (the model pads its batches itself and never "
                             f"truncates), got {json.dumps(data[key])[:60]}")
    try:
        backend = Tokenizer.from_file(str(tok_path))
    except Exception as err:  # noqa: BLE001 - the tokenizers library raises bare Exceptions for malformed files
        raise ValueError(f"{tok_path} is not a tokenizers file: {one_line(err)}") from None
    vocab = backend.get_vocab(with_added_tokens=True)
    special = {t.content for t in backend.get_added_tokens_decoder().values() if t.special}
    bad = [p for p in PLACEHOLDERS if p not in special]
    if bad:
        raise ValueError(f"{tok_path}: added_tokens lacks the special placeholder tokens {bad}; a PalmE "
                         "tokenizer has every placeholder as a special added token")
    conf = read_json_object(cfg_path)
    kwargs: dict[str, Any] = {"name_or_path": str(folder)}
    for key in _SPECIAL_KEYS:
        raw = conf.get(key)
        if raw is None and key != "eos_token":
            continue
        value = raw.get("content") if isinstance(raw, dict) else raw  # a dict: an AddedToken as older versions wrote it
        if not isinstance(value, str) or value not in vocab:
            shown = json.dumps(raw)[:60]
            raise ValueError(f"{cfg_path}: {key} must name a token of {TOKENIZER_FILE}"
                             f"{' (answers end with it)' if key == 'eos_token' else ''}, got {shown}")
        kwargs[key] = value
    limit = conf.get("model_max_length")
    if limit is not None:
        if type(limit) not in (int, float) or not math.isfinite(limit) or limit < 1:
            raise ValueError(f"{cfg_path}: model_max_length must be a number >= 1, got {json.dumps(limit)[:60]}")
        kwargs["model_max_length"] = int(limit)
    cleanup = conf.get("clean_up_tokenization_spaces")
    if cleanup is not None:
        if type(cleanup) is not bool:
            raise ValueError(f"{cfg_path}: clean_up_tokenization_spaces must be true or false, "
                             f"got {json.dumps(cleanup)[:60]}")
        kwargs["clean_up_tokenization_spaces"] = cleanup
    try:  # copies `backend` through a round trip of its own format: what from_file lets pass, this may not
        return PreTrainedTokenizerFast(tokenizer_object=backend, **kwargs)
    except Exception as err:  # noqa: BLE001 - the tokenizers library raises bare Exceptions for malformed files
        raise ValueError(f"{tok_path} is not a usable tokenizers file: {one_line(err)}") from None


def add_placeholders(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Make sure the placeholders are special tokens of `tokenizer` (and that it pads); return their ids.

    Raises ValueError when the tokenizer already has a placeholder as an ordinary (non-special)
    token: text could then spell it.
    """
    vocab = tokenizer.get_vocab()
    missing = [p for p in PLACEHOLDERS if p not in vocab]
    special = set(_special_tokens(tokenizer))
    ordinary = [p for p in PLACEHOLDERS if p in vocab and p not in special]
    if ordinary:
        raise ValueError(f"the tokenizer has {ordinary} as ordinary tokens; placeholders must be special tokens "
                         f"(or absent, to be added as special tokens)")
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; answers need one to end")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # pad positions are masked, so any id serves
    return {p: tokenizer.convert_tokens_to_ids(p) for p in PLACEHOLDERS}


def _special_tokens(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Every special token of a tokenizer: its named ones and added tokens flagged special."""
    added = getattr(tokenizer, "added_tokens_decoder", {})
    return [*tokenizer.all_special_tokens, *(t.content for t in added.values() if getattr(t, "special", False))]


def reserved_ids(tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Ids that text must never become: every special token (placeholders, padding, EOS, ...)."""
    ids = tokenizer.convert_tokens_to_ids(_special_tokens(tokenizer))
    return frozenset(i for i in ids if i is not None)


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of `text` read as plain text: special-token texts in it (`<img>`, `<eos>`) are split like any text.

    For text without special-token text the ids are those of `tokenizer.encode(text)`.
    """
    return tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)


def default_corpus() -> list[str]:
    """Plan steps over the whole object vocabulary and prompt skeletons: what the model reads and writes."""
    names = [f"{c} {s}" for c in COLOR_NAMES for s in SHAPE_NAMES]
    names += [f"{z} {n}" for z in SIZE_NAMES for n in names] + [referral_name(i) for i in range(MAX_OBJECTS)]
    steps = ["done"]
    for n in names:
        steps += [f"pick up the {n}", f"place the {n} on the table"]
        steps += [f"place the {n} in the {c} zone" for c in COLOR_NAMES]
        steps += [f"push the {n} to {where}" for where in BOARD_LOCATIONS.values()]
        steps += [f"push the {n} {d} to the {dr}" for d in DISTANCES for dr in DIRECTIONS]
        steps += [f"push the {n} {rel} the {m}" for rel in PUSH_RELATIONS.values() for m in names[:4]]
    builder = PromptBuilder()
    prompts = [
        builder.planning(
            "stack the red cube on the blue cube", [("pick up the red cube", "ok")], MAX_OBJECTS
        ),
        builder.whole_plan("sort the blocks by colour into corners", 3),
        builder.question("what colour is obj 1?", 3),
    ]
    return steps + prompts
