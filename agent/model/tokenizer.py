"""Tokenizers: a byte-level BPE trained on our text for the from-scratch LLM, and the placeholder tokens.

Byte-level BPE covers every string (unseen characters fall back to bytes), so any instruction or
answer encodes and decodes back exactly. The placeholders of a model's token types (`<img>`,
`<obj_1>`..`<obj_8>`, `<robot>`: `tokens.placeholders_of(cfg.prompt.tokens)`) are special tokens:
never split, never merged with neighbouring text, and never produced from text: `encode_text`
tokenises text (instructions, questions, answers, anything from users or files) with
`split_special_tokens`, so the characters `<img>` or `<eos>` in it stay characters. Placeholder ids
enter a sequence only where a `Prompt` holds one. A loaded tokenizer may hold more special tokens
than its model's token types use (the shipped one still has `<zone_1>`..`<zone_4>` of a removed
variant): they keep their ids, and like every special token they never come from text and are never
generated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from agent.model.checkpoint_checks import one_line, read_json_object
from agent.model.config import DEFAULT_TOKENS
from agent.model.tokens import placeholders_of
from agent.prompts import PromptBuilder
from envs.catalogue import COLOR_NAMES, MAX_OBJECTS, SHAPE_NAMES, SIZE_NAMES
from envs.vocab import referral_name, skill_specs

PAD, EOS = "<pad>", "<eos>"


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 1024, placeholders: Sequence[str] | None = None
) -> PreTrainedTokenizerFast:
    """A byte-level BPE of at most `vocab_size` tokens trained on `texts` (plus the built-in plan corpus).

    Its special tokens: padding, EOS, then `placeholders` (default: those of the token types
    image, object, robot), in that order.
    """
    placeholders = placeholders_of(DEFAULT_TOKENS) if placeholders is None else list(placeholders)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS, *placeholders],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: any text encodes
        show_progress=False,
    )
    tok.train_from_iterator([*default_corpus(), *texts], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS)


TOKENIZER_FILE, TOKENIZER_CONFIG = "tokenizer.json", "tokenizer_config.json"
_SPECIAL_KEYS = ("eos_token", "pad_token", "bos_token", "unk_token")
# The pipeline `train_tokenizer` writes (and save_pretrained keeps): key -> the component types allowed.
# None: the key is null. No component that runs a pattern of the file's own (Split, Replace, ...): a
# regex such as (a+)+$ loads fine and makes the Rust library panic on some text, mid-episode.
OWN_PIPELINE: dict[str, tuple[str | None, ...]] = {
    "normalizer": (None, "NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Sequence"),  # a Sequence of the others
    "pre_tokenizer": ("ByteLevel",),  # its regex is the library's own (GPT-2's)
    "post_processor": (None, "ByteLevel", "TemplateProcessing"),  # what transformers writes; encode_text adds nothing
    "decoder": ("ByteLevel",),
    "model": ("BPE",),
}
# Texts every tokenizer encodes and decodes at load time: a plan step, long runs of one character (what
# a backtracking pattern chokes on), digits, punctuation, non-ASCII and control characters.
PROBE_TEXTS = ("pick up the red cube", "a" * 64 + "b", "0" * 64 + "!", " " * 64 + "x",
               "step 2. place obj 3 on the table <img> <eos>", "\u00e9\u202e\u65e5\u672c \t\n\x00 \U0001f600")


def is_rust_panic(err: BaseException) -> bool:
    """Whether `err` is a panic of a Rust library (pyo3's `pyo3_runtime.PanicException`).

    It derives from BaseException, so `except Exception` does not catch it; its class cannot be
    imported, so it is recognised by name.
    """
    return any(c.__name__ == "PanicException" for c in type(err).__mro__)


def probe_tokenizer(encode: Callable[[str], Sequence[int]], decode: Callable[[Sequence[int]], str], where: str) -> None:
    """Encode and decode PROBE_TEXTS; a tokenizer that panics or fails on them is refused.

    Raises ValueError naming `where` (the file or folder) and the text, instead of the Rust panic
    the tokenizers library raises for, e.g., a pre-tokenizer pattern that backtracks without end.
    """
    for text in PROBE_TEXTS:
        try:
            decode(encode(text))
        except BaseException as err:  # a Rust panic is a BaseException; KeyboardInterrupt and the like pass on
            if not (is_rust_panic(err) or isinstance(err, Exception)):
                raise
            raise ValueError(f"{where}: the tokenizer fails on the text {text[:40]!r}: {one_line(err)}") from None


def _component(value: Any) -> str | None:
    """The `type` of a tokenizer.json component (None for null); ValueError-worthy values give their JSON."""
    if value is None:
        return None
    return value.get("type") if isinstance(value, dict) and isinstance(value.get("type"), str) else json.dumps(value)[:60]


def pipeline_problem(data: dict[str, Any]) -> str | None:
    """Why a tokenizer.json's pipeline is not the one `train_tokenizer` writes (`OWN_PIPELINE`), or None.

    Also refused: BPE dropout (encoding would be random).
    """
    for key, allowed in OWN_PIPELINE.items():
        kind = _component(data.get(key))
        if kind not in allowed:
            return (f"{key} is {kind if kind is None or key in data else 'absent'!s:.60}; this model's tokenizer has "
                    f"{' or '.join('null' if a is None else a for a in allowed)} there (only the byte-level BPE "
                    "pipeline train_tokenizer writes is loaded)")
    norm = data.get("normalizer")
    if _component(norm) == "Sequence":
        parts = norm.get("normalizers")
        kinds = [_component(n) for n in parts] if isinstance(parts, list) else [json.dumps(parts)[:60]]
        bad = [k for k in kinds if k not in OWN_PIPELINE["normalizer"] or k in (None, "Sequence")]
        if bad:
            return f"normalizer.normalizers holds {bad[0]}; expected only {list(OWN_PIPELINE['normalizer'][1:-1])}"
    if data["model"].get("dropout") is not None:
        return f"model.dropout is {json.dumps(data['model']['dropout'])[:40]}; expected null (dropout makes encoding random)"
    return None


def token_id_problem(data: dict[str, Any]) -> str | None:
    """Why a tokenizer.json's ids are ambiguous, or None: every id names one token and every token has one id.

    `model.vocab` (an object token -> id) may not give one id to two tokens; `added_tokens` may not
    repeat an id or a content, nor give a token an id that model.vocab gives to another token (or
    give a vocab token another id). Which token such an id decodes to would depend on hash order.
    """
    vocab = data["model"].get("vocab")
    owner: dict[int, str] = {}
    if isinstance(vocab, dict):
        for token, i in vocab.items():
            if type(i) is not int or i < 0:
                return f"model.vocab[{token!r:.40}] is {json.dumps(i)[:20]}; expected a token id >= 0"
            if i in owner:
                return f"model.vocab gives the id {i} to both {owner[i]!r:.40} and {token!r:.40}"
            owner[i] = token
    seen: dict[str, int] = {}
    for k, added in enumerate(data["added_tokens"]):
        if not isinstance(added, dict) or type(added.get("id")) is not int or not isinstance(added.get("content"), str):
            return f"added_tokens[{k}] is {json.dumps(added)[:60]}; expected an object with an integer id and a content"
        i, content = added["id"], added["content"]
        if content in seen:
            return f"added_tokens list {content!r:.40} twice (ids {seen[content]} and {i})"
        if i in seen.values():
            return f"added_tokens give the id {i} to two tokens ({content!r:.40} is the second)"
        seen[content] = i
        if owner.get(i, content) != content:
            return f"added_tokens[{k}] {content!r:.40} has the id {i}, which model.vocab gives to {owner[i]!r:.40}"
        if isinstance(vocab, dict) and vocab.get(content, i) != i:
            return f"added_tokens[{k}] {content!r:.40} has the id {i} but model.vocab gives it {vocab[content]}"
    return None


def load_tokenizer(
    folder: str | Path, placeholders: Sequence[str] | None = None, own: bool = True
) -> PreTrainedTokenizerFast:
    """A PalmE checkpoint folder's tokenizer, read as data: tokenizer.json and tokenizer_config.json's special tokens.

    No tokenizer class named by the folder is looked up (no AutoTokenizer): tokenizer.json is a
    `tokenizers` serialisation (vocabulary, merges, pre-tokenizer, decoder), and from
    tokenizer_config.json only `eos_token` (required), `pad_token`, `bos_token`, `unk_token`,
    `model_max_length` and `clean_up_tokenization_spaces` are taken (other keys are bookkeeping
    of the transformers version that wrote them). For checkpoints written by `save_pretrained`
    the result encodes, decodes and pads exactly as `AutoTokenizer.from_pretrained(folder)`.
    Raises ValueError naming the file and the key: not UTF-8 JSON, not a tokenizers file,
    `truncation` / `padding` set (this code pads itself and never truncates), a special token that
    is not in the vocabulary, a placeholder (`placeholders`, default those of the token types image, object,
    robot) missing or not special, an id given to two tokens (`token_id_problem`), a tokenizer
    that panics or fails on `PROBE_TEXTS`. `own` (a from-scratch LM's tokenizer, the default): the
    pipeline must be the one `train_tokenizer` writes (`pipeline_problem`: byte-level BPE, no
    normalizer but Unicode forms and lower-casing, nothing that runs a pattern of the file's);
    `own=False` (llm local / smollm2: another model's tokenizer) takes any pipeline, probed.
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
    problem = (pipeline_problem(data) if own else None) or token_id_problem(data)
    if problem:
        raise ValueError(f"{tok_path}: {problem}")
    try:  # from the JSON already read and checked (the file is not read twice)
        backend = Tokenizer.from_str(json.dumps(data))
    except BaseException as err:  # bare Exceptions (or a Rust panic) for malformed files
        if not (is_rust_panic(err) or isinstance(err, Exception)):
            raise
        raise ValueError(f"{tok_path} is not a tokenizers file: {one_line(err)}") from None
    probe_tokenizer(lambda text: backend.encode(text, add_special_tokens=False).ids, backend.decode, str(tok_path))
    vocab = backend.get_vocab(with_added_tokens=True)
    special = {t.content for t in backend.get_added_tokens_decoder().values() if t.special}
    bad = [p for p in (placeholders_of(DEFAULT_TOKENS) if placeholders is None else placeholders) if p not in special]
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


def add_placeholders(tokenizer: PreTrainedTokenizerBase, placeholders: Sequence[str]) -> dict[str, int]:
    """Make sure `placeholders` are special tokens of `tokenizer` (and that it pads); return their ids.

    Tokens the tokenizer already has keep their ids; missing placeholders are added after them.
    Raises ValueError when the tokenizer already has a placeholder as an ordinary (non-special)
    token: text could then spell it.
    """
    vocab = tokenizer.get_vocab()
    missing = [p for p in placeholders if p not in vocab]
    special = set(_special_tokens(tokenizer))
    ordinary = [p for p in placeholders if p in vocab and p not in special]
    if ordinary:
        raise ValueError(f"the tokenizer has {ordinary} as ordinary tokens; placeholders must be special tokens "
                         f"(or absent, to be added as special tokens)")
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    probe_tokenizer(lambda text: encode_text(tokenizer, text), tokenizer.decode, str(tokenizer.name_or_path or "the tokenizer"))
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; answers need one to end")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # pad positions are masked, so any id serves
    return {p: tokenizer.convert_tokens_to_ids(p) for p in placeholders}


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

    For text without special-token text the ids are those of `tokenizer.encode(text)`. A Rust panic of
    the tokenizers library on the text (a BaseException) becomes a ValueError naming the text.
    """
    try:
        return tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    except BaseException as err:  # only a Rust panic (a BaseException) becomes a ValueError
        if not is_rust_panic(err):
            raise
        raise ValueError(f"the tokenizer fails on the text {text[:60]!r}: {one_line(err)}") from None


def default_corpus() -> list[str]:
    """Plan steps over the whole object vocabulary and prompt skeletons: what the model reads and writes."""
    names = [f"{c} {s}" for c in COLOR_NAMES for s in SHAPE_NAMES]
    names += [f"{z} {n}" for z in SIZE_NAMES for n in names] + [referral_name(i) for i in range(MAX_OBJECTS)]
    specs = skill_specs()  # each registered skill's corpus lines: the ones without an object, then per object name
    steps = [s for spec in specs if not spec.takes_object for s in spec.corpus(None, names)]
    for n in names:
        steps += [s for spec in specs if spec.takes_object for s in spec.corpus(n, names)]
    builder = PromptBuilder()
    prompts = [
        builder.planning(
            "stack the red cube on the blue cube", [("pick up the red cube", "ok")], MAX_OBJECTS
        ),
        builder.whole_plan("sort the blocks by colour into corners", 3),
        builder.question("what colour is obj 1?", 3),
    ]
    return steps + prompts
