"""The one mixture sampler: which examples training draws, and which held-out ones evaluation scores.

Each batch slot picks a source with probability proportional to its weight; inside a source,
examples are taken in the order of a seeded permutation, epoch after epoch, so every example of a
source is seen once before any is seen twice. A source's permutations are seeded by its name
(crc32), so the examples a source yields, in their order, do not depend on which other sources the
mixture holds. The position (examples drawn, and per source its epoch and offset) is all a resumed
run needs to continue the exact same stream. Held-out evaluation asks the same sampler, over the
held-out examples, for a few examples of every source in the mixture, spread over its pool.

Weights inside a source (`data.task_weights`): a source's examples may carry a group label (their task) with a
weight per group. A slot that picked the source then picks a group with probability proportional to weight x the
group's example count (so weight 1 everywhere keeps every example's chance as in one pool) and takes the group's
next example in the group's own seeded permutation, epoch after epoch. Many distinct episodes of one task then
no longer imply a large share of the draws: the share is the weight's choice (Octo's per-dataset sample weights,
Octo Model Team 2024, applied to tasks).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np


class MixtureStream:
    """Deterministic stream of (source, index) pairs from weighted sources of known sizes."""

    def __init__(self, sizes: Mapping[str, int], weights: Mapping[str, float], seed: int,
                 groups: Mapping[str, list[str]] | None = None, group_weights: Mapping[str, float] | None = None) -> None:
        """`groups[source]`: a label per example of the source (its task); with `group_weights` (label -> weight,
        1.0 when absent) the source draws its groups as the module says. Without them a source is one pool."""
        self.sources = sorted(s for s, n in sizes.items() if n > 0 and weights.get(s, 0.0) > 0)
        if not self.sources:
            raise ValueError(f"no source has both examples and a positive weight: sizes {dict(sizes)}, "
                             f"weights {dict(weights)}")
        self.sizes = {s: int(sizes[s]) for s in self.sources}
        w = np.array([float(weights[s]) for s in self.sources])
        self.probs = w / w.sum()
        self.seed = seed
        self.drawn = 0
        # The pools a source draws from: its whole index range, or one pool per group (key "source/label").
        self.pools: dict[str, list[tuple[str, np.ndarray]]] = {}
        self.pool_cdf: dict[str, np.ndarray] = {}
        for s in self.sources:
            labels = (groups or {}).get(s)
            if group_weights is None or labels is None:
                self.pools[s] = [(s, np.arange(self.sizes[s]))]
                continue
            if len(labels) != self.sizes[s]:
                raise ValueError(f"source {s!r}: {len(labels)} group labels for {self.sizes[s]} examples")
            names = sorted(set(labels))
            arr = np.asarray(labels)
            index = {g: np.flatnonzero(arr == g) for g in names}
            mass = np.array([float(group_weights.get(g, 1.0)) * len(index[g]) for g in names])
            if mass.sum() <= 0:
                raise ValueError(f"source {s!r}: every group has weight 0 ({names})")
            self.pools[s] = [(f"{s}/{g}", index[g]) for g, m in zip(names, mass, strict=True) if m > 0]
            self.pool_cdf[s] = np.cumsum(mass[mass > 0] / mass.sum())  # cumulative: a uniform draw picks a pool
        keys = [k for s in self.sources for k, _ in self.pools[s]]
        self.epochs = {k: 0 for k in keys}
        self.offsets = {k: 0 for k in keys}
        self._perms: dict[tuple[str, int], np.ndarray] = {}

    def _perm(self, key: str, size: int, epoch: int) -> np.ndarray:
        if (key, epoch) not in self._perms:
            rng = np.random.default_rng([self.seed, zlib.crc32(key.encode()), epoch])
            self._perms = {k: v for k, v in self._perms.items() if k[0] != key}  # keep one epoch per pool
            self._perms[(key, epoch)] = rng.permutation(size)
        return self._perms[(key, epoch)]

    def next(self, n: int) -> list[tuple[str, int]]:
        """The next `n` (source, example index) pairs."""
        rng = np.random.default_rng([self.seed, self.drawn])  # depends only on the position: resumable
        picks = rng.choice(len(self.sources), size=n, p=self.probs)
        within = rng.random(n) if self.pool_cdf else None  # drawn only with groups: one-pool streams unchanged
        out = []
        for slot, k in enumerate(picks):
            s = self.sources[int(k)]
            pools = self.pools[s]
            j = 0
            if s in self.pool_cdf:
                j = min(int(np.searchsorted(self.pool_cdf[s], within[slot], side="right")), len(pools) - 1)
            key, index = pools[j]
            out.append((s, int(index[self._perm(key, len(index), self.epochs[key])[self.offsets[key]]])))
            self.offsets[key] += 1
            if self.offsets[key] == len(index):
                self.epochs[key] += 1
                self.offsets[key] = 0
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
        if set(state["epochs"]) != set(self.epochs):
            raise ValueError(f"the data's groups changed since the checkpoint: pools were {sorted(state['epochs'])}, "
                             f"now {sorted(self.epochs)}; resume needs the same data.task_weights")
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
