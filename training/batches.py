"""The one mixture sampler: which examples training draws, and which held-out ones evaluation scores.

Each batch slot picks a source with probability proportional to its weight; inside a source,
examples are taken in the order of a seeded permutation, epoch after epoch, so every example of a
source is seen once before any is seen twice. A source's permutations are seeded by its name
(crc32), so the examples a source yields, in their order, do not depend on which other sources the
mixture holds. The position (examples drawn, and per source its epoch and offset) is all a resumed
run needs to continue the exact same stream. Held-out evaluation asks the same sampler, over the
held-out examples, for a few examples of every source in the mixture, spread over its pool.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np


class MixtureStream:
    """Deterministic stream of (source, index) pairs from weighted sources of known sizes."""

    def __init__(self, sizes: Mapping[str, int], weights: Mapping[str, float], seed: int) -> None:
        self.sources = sorted(s for s, n in sizes.items() if n > 0 and weights.get(s, 0.0) > 0)
        if not self.sources:
            raise ValueError(f"no source has both examples and a positive weight: sizes {dict(sizes)}, "
                             f"weights {dict(weights)}")
        self.sizes = {s: int(sizes[s]) for s in self.sources}
        w = np.array([float(weights[s]) for s in self.sources])
        self.probs = w / w.sum()
        self.seed = seed
        self.drawn = 0
        self.epochs = {s: 0 for s in self.sources}
        self.offsets = {s: 0 for s in self.sources}
        self._perms: dict[tuple[str, int], np.ndarray] = {}

    def _perm(self, source: str, epoch: int) -> np.ndarray:
        key = (source, epoch)
        if key not in self._perms:
            rng = np.random.default_rng([self.seed, zlib.crc32(source.encode()), epoch])
            self._perms = {k: v for k, v in self._perms.items() if k[0] != source}  # keep one epoch per source
            self._perms[key] = rng.permutation(self.sizes[source])
        return self._perms[key]

    def next(self, n: int) -> list[tuple[str, int]]:
        """The next `n` (source, example index) pairs."""
        rng = np.random.default_rng([self.seed, self.drawn])  # depends only on the position: resumable
        picks = rng.choice(len(self.sources), size=n, p=self.probs)
        out = []
        for k in picks:
            s = self.sources[int(k)]
            out.append((s, int(self._perm(s, self.epochs[s])[self.offsets[s]])))
            self.offsets[s] += 1
            if self.offsets[s] == self.sizes[s]:
                self.epochs[s] += 1
                self.offsets[s] = 0
        self.drawn += n
        return out

    def spread(self, n: int) -> dict[str, list[int]]:
        """Per source of the mixture, `n` example indices spread evenly over its pool (all when it has fewer):
        the held-out examples evaluation scores, covering many episodes. Deterministic; the stream is untouched."""
        return {s: [int(i * size / n) for i in range(n)] if n < size else list(range(size))
                for s, size in self.sizes.items()}

    def state_dict(self) -> dict[str, Any]:
        """JSON-able position in the stream (plus what it was built from, to check on resume)."""
        return {"drawn": self.drawn, "epochs": dict(self.epochs), "offsets": dict(self.offsets),
                "sizes": dict(self.sizes), "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a saved position; the sources must be the ones it was saved with."""
        if dict(state["sizes"]) != self.sizes or state["seed"] != self.seed:
            raise ValueError(f"the data changed since the checkpoint: source sizes were {dict(state['sizes'])}, "
                             f"now {self.sizes} (seed {state['seed']} vs {self.seed}); resume needs the same data")
        self.drawn = int(state["drawn"])
        self.epochs = {s: int(v) for s, v in state["epochs"].items()}
        self.offsets = {s: int(v) for s, v in state["offsets"].items()}


def length_groups(lengths: list[int], world: int, accum: int) -> list[list[list[int]]]:
    """Split a global batch into micro-batches of similar length: `[rank][micro] -> example positions`.

    Sequences are left-padded to the longest of their micro-batch, so a mix of short questions and
    long plans wastes much of each forward pass on padding. Sorting the batch by length and cutting
    it into `world * accum` consecutive groups keeps every micro-batch's lengths close. Groups go to
    processes in snake order (short, long, long, short, ...) so each process gets a similar amount
    of work. The update's objective is a sum over all answer tokens of the global batch, so how the
    batch is split does not change it (only the order of floating-point sums).
    """
    n_groups = world * accum
    if world < 1 or accum < 1 or not lengths or len(lengths) % n_groups:
        raise ValueError(f"cannot split {len(lengths)} examples into {world} processes x {accum} micro-batches")
    size = len(lengths) // n_groups
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    groups = [order[g * size:(g + 1) * size] for g in range(n_groups)]
    out: list[list[list[int]]] = [[] for _ in range(world)]
    for g, group in enumerate(groups):
        lap, pos = divmod(g, world)
        out[pos if lap % 2 == 0 else world - 1 - pos].append(group)
    return out
