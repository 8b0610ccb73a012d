"""PalmE speed against the bare HF LM it wraps, measured in one run (ratios, not absolute times).

    .venv/bin/python benchmarks/model_speed.py [--preset palme-small] [--batch 8] [--new-tokens 32] [--threads 1]

- generation: PalmE.generate (multimodal prefix, our KV-cache loop) tokens/s divided by the bare
  LM's `generate(input_ids)` tokens/s, same batch, same prefix length, same number of new tokens
  (EOS suppressed on both so each writes exactly that many). Goal >= 0.8.
- training: PalmE forward+backward samples/s (encoders included) divided by the bare LM's
  forward+backward (labels = input ids) at the same batch and sequence length. Goal >= 0.8.
Timings alternate between the two sides and report medians, which keeps a busy machine from
favouring one side.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from model_memorise import planning_examples

from agent.model import make_model


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of a and of b, run alternately after one warm-up each."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(timed(a))
        tb.append(timed(b))
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    """CLI: measure and print both ratios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="palme-small")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    examples = planning_examples(args.batch)
    # one prompt layout for every row, so neither side pads: only the arrays and the answers differ
    for e in examples:
        e.prompt, e.objects = examples[0].prompt, examples[0].objects
    model = make_model(args.preset, tokenizer_texts=[e.prompt + " " + e.answer for e in examples]).eval()
    lm = model.llm
    n_new = args.new_tokens

    prefix = model.collate(examples, train=False)["input_ids"]  # (B, P) after placeholder expansion
    gen = torch.Generator().manual_seed(0)
    vocab = model.llm.get_input_embeddings().num_embeddings
    ids = torch.randint(
        0, vocab, prefix.shape, generator=gen
    )  # the bare LM reads plain tokens of the same length
    gen_kw = {
        "max_new_tokens": n_new,
        "min_new_tokens": n_new,
        "do_sample": False,
        "eos_token_id": model.eos_id,
        "pad_token_id": model.tokenizer.pad_token_id,
    }
    with torch.no_grad():
        t_palme, t_lm = alternate(
            lambda: model.generate(examples, max_new_tokens=n_new, min_new_tokens=n_new),
            lambda: lm.generate(ids, attention_mask=torch.ones_like(ids), **gen_kw),
            args.repeats,
        )
    gen_ratio = t_lm / t_palme  # same token count on both sides
    print(
        f"generation: batch {args.batch}, prefix {prefix.shape[1]} tokens, {n_new} new tokens: "
        f"PalmE {args.batch * n_new / t_palme:.0f} tok/s, bare LM {args.batch * n_new / t_lm:.0f} tok/s"
    )

    model.train()
    batch = model.collate(examples, train=True)
    seq = batch["input_ids"].shape[1]
    train_ids = torch.randint(0, vocab, (args.batch, seq), generator=gen)
    t_palme_fb, t_lm_fb = alternate(
        lambda: model(batch).backward(),
        lambda: lm(input_ids=train_ids, labels=train_ids).loss.backward(),
        args.repeats,
    )
    train_ratio = t_lm_fb / t_palme_fb
    print(
        f"forward+backward: batch {args.batch}, {seq} tokens: PalmE {args.batch / t_palme_fb:.1f} samples/s, "
        f"bare LM {args.batch / t_lm_fb:.1f} samples/s"
    )
    print(f"RATIO generation tokens/s PalmE / bare LM = {gen_ratio:.2f} (goal >= 0.8)")
    print(f"RATIO forward+backward samples/s PalmE / bare LM = {train_ratio:.2f} (goal >= 0.8)")


if __name__ == "__main__":
    main()
