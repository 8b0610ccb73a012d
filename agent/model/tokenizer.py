"""Tokenizers: a byte-level BPE trained on our text for the from-scratch LLM, and the placeholder tokens.

Byte-level BPE covers every string (unseen characters fall back to bytes), so any instruction or
answer encodes and decodes back exactly. The placeholders (`<img>`, `<obj_1>`..`<obj_8>`,
`<robot>`) are special tokens: never split, never merged with neighbouring text.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

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


def add_placeholders(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Make sure the placeholders are special tokens of `tokenizer` (and that it pads); return their ids."""
    missing = [p for p in PLACEHOLDERS if p not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; answers need one to end")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # pad positions are masked, so any id serves
    return {p: tokenizer.convert_tokens_to_ids(p) for p in PLACEHOLDERS}


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
