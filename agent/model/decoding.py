"""Greedy decoding with a KV cache from a prefix of embeddings, and the token-level prefix-trie constraint.

Our own loop rather than `generate(inputs_embeds=...)`: the whole multimodal prefix goes through the
LM in one call whose cache we create and own, so the prefix can never be dropped (OpenVLA issue 346),
and a per-example constraint is one mask on the logits.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from torch import nn
from transformers import DynamicCache


class PrefixTrie:
    """Allowed token sequences as a trie: at each node, only the children may come next."""

    def __init__(self, sequences: Sequence[Sequence[int]]):
        if not sequences:
            raise ValueError("constrained decoding needs at least one allowed answer")
        self.root: dict[int, dict] = {}
        self.depth = max(len(s) for s in sequences)
        for seq in sequences:
            node = self.root
            for tok in seq:
                node = node.setdefault(tok, {})

    @staticmethod
    def allowed(node: dict[int, dict]) -> list[int]:
        """Token ids that may follow at `node`."""
        return list(node)


def _cache_kwarg(lm: nn.Module) -> str:
    """Name of the KV-cache argument: `cache` in transformers >= 5.2x, `past_key_values` before."""
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm  # peft wraps the LM
    params = inspect.signature(type(base).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _new_cache(lm: nn.Module) -> DynamicCache:
    try:
        return DynamicCache(config=lm.config)
    except TypeError:  # older transformers
        return DynamicCache()


@torch.no_grad()
def greedy_decode(
    lm: nn.Module,
    embed_tokens: Callable[[torch.Tensor], torch.Tensor],
    prefix: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    max_new_tokens: int,
    eos_id: int,
    banned: Sequence[int] = (),
    tries: Sequence[PrefixTrie | None] | None = None,
    min_new_tokens: int = 0,
) -> list[list[int]]:
    """Greedy continuation of a left-padded prefix (B, T, D); returns each row's new ids without EOS.

    Rows with a trie only ever take a token the trie allows, and stop at its end; `banned` ids
    (placeholders, padding) are never generated, nor EOS before `min_new_tokens` (for benchmarks).
    Raises ValueError when the prefix and the new tokens would go past the LM's positions
    (`lm.config.max_position_embeddings`): positions past them are never decoded.
    """
    bsz = prefix.shape[0]
    tries = list(tries) if tries is not None else [None] * bsz
    nodes = [t.root if t is not None else None for t in tries]
    steps = max([max_new_tokens] + [t.depth for t in tries if t is not None])
    limit = getattr(getattr(lm, "config", None), "max_position_embeddings", None)
    longest = int(position_ids.max()) + 1 if position_ids.numel() else 0
    if limit is not None and longest + steps > limit:
        raise ValueError(f"a {longest}-token prefix and {steps} new tokens exceed the LM's {limit} positions")
    cache_kw = {_cache_kwarg(lm): _new_cache(lm)}
    out = lm(
        inputs_embeds=prefix,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        logits_to_keep=1,
        **cache_kw,
    )
    done = torch.zeros(bsz, dtype=torch.bool, device=prefix.device)
    result: list[list[int]] = [[] for _ in range(bsz)]
    for step in range(steps):
        logits = out.logits[:, -1].float()  # (B, V)
        if banned:
            logits[:, list(banned)] = float("-inf")
        if step < min_new_tokens:
            logits[:, eos_id] = float("-inf")
        for i, node in enumerate(nodes):
            if node is not None:
                keep = torch.full_like(logits[i], float("-inf"))
                keep[PrefixTrie.allowed(node) or [eos_id]] = 0.0
                logits[i] += keep
        token = logits.argmax(-1)  # (B,)
        token[done] = eos_id
        for i in range(bsz):
            if done[i]:
                continue
            tok = int(token[i])
            if nodes[i] is not None:
                nodes[i] = nodes[i].get(tok, {})
            if tok == eos_id or (nodes[i] is not None and not nodes[i]):
                done[i] = True
            if tok != eos_id:
                result[i].append(tok)
        if bool(done.all()):
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(bsz, 1)], dim=1)  # (B, T+1)
        position_ids = position_ids[:, -1:] + 1  # (B, 1)
        out = lm(
            inputs_embeds=embed_tokens(token[:, None]),
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            logits_to_keep=1,
            **cache_kw,
        )
    return result
