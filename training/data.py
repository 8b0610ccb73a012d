"""The data setup of a training run: validated log folders -> example sources, held-out episodes, the stream.

Every folder is validated first (a folder that fails is refused with the validation report, or its
bad episodes are skipped with `data.skip_invalid=true`). A seeded fraction of each folder's
episodes is held out: their examples are only ever used for evaluation during training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.prompts import Example, PromptBuilder
from training.config import DataConfig
from training.dataset import LogDataset, validate
from training.examples import ExampleBuilder, ExampleSpec, MixtureConfig

Ref = tuple[int, ExampleSpec]  # (folder index, spec)


class DataValidationError(ValueError):
    """A training folder failed `palme-dataset validate`; the message is the report."""


@dataclass
class TrainData:
    """Example sources for training and for held-out evaluation, over one or more log folders."""

    builders: list[ExampleBuilder]
    train: dict[str, list[Ref]]
    heldout: dict[str, list[Ref]]
    weights: dict[str, float]
    tasks: list[tuple[str, str]]  # (world, task) pairs found in the data, sorted
    heldout_episodes: list[set[int]] = field(default_factory=list)  # per folder: held-out episode positions
    skipped: int = 0  # episodes skipped as invalid
    image_shape: tuple[int, ...] | None = None
    notes: list[str] = field(default_factory=list)

    def example(self, ref: Ref) -> Example:
        """The Example (with arrays) of a reference."""
        folder, spec = ref
        return self.builders[folder].materialize(spec)

    def drawn(self, pair: tuple[str, int]) -> Example:
        """The Example of a (source, index) pair drawn by the training stream."""
        source, index = pair
        return self.example(self.train[source][index])

    def state_examples(self) -> list[Example]:
        """Object, zone and robot rows of every frame of the training episodes (for the model's state normalisation)."""
        out = []
        zones = self.builders[0].prompts.use_zones if self.builders else False  # zone rows count only when read
        for folder, builder in enumerate(self.builders):
            for pos, ep in enumerate(builder.ds.episodes):
                if pos not in self.heldout_episodes[folder]:
                    out += [Example(prompt="", objects=ep.env_state[i], robot=ep.robot[i],
                                    zones=ep.zones[i] if zones else None) for i in range(ep.length)]
        return out

    def sizes(self) -> dict[str, int]:
        """Training examples per source."""
        return {k: len(v) for k, v in self.train.items()}

    def texts(self) -> list[str]:
        """Every prompt and answer of the training sources (what a from-scratch tokenizer is trained on)."""
        return [t for refs in self.train.values() for _, s in refs for t in (s.prompt, s.answer)]


def check_folder(root: str | Path, cfg: DataConfig) -> None:
    """Refuse a folder that fails validation, with the full report (unless bad episodes are to be skipped)."""
    problems = validate(root, images=cfg.validate_images)
    errors = [p for p in problems if p.level == "error"]
    if errors and not cfg.skip_invalid:
        report = "\n".join(f"  {p}" for p in errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise DataValidationError(
            f"data folder {root} failed validation ({len(errors)} error(s)); refusing to train on it:\n"
            f"{report}{more}\nFix or re-collect those episodes, or pass data.skip_invalid=true to skip them."
        )


def _heldout_positions(n: int, fraction: float, seed: int, folder: int) -> set[int]:
    """A seeded choice of round(fraction * n) episodes (at least one when fraction > 0 and n >= 2)."""
    k = round(fraction * n)
    if fraction > 0 and n >= 2:
        k = max(1, k)
    k = min(k, n - 1) if n > 1 else 0
    rng = np.random.default_rng([seed, 7919, folder])
    return {int(i) for i in rng.choice(n, size=k, replace=False)} if k else set()


def _cap(refs: list[Ref], limit: int, seed: int) -> list[Ref]:
    """A seeded subset of at most `limit` references (0 = no limit), in their original order."""
    if limit <= 0 or len(refs) <= limit:
        return refs
    keep = np.random.default_rng([seed, 104729, len(refs)]).choice(len(refs), size=limit, replace=False)
    return [refs[int(i)] for i in sorted(keep)]


def load_data(cfg: DataConfig, prompts: PromptBuilder, seed: int, log: Callable[[str], None] = print) -> TrainData:
    """Validate the folders and build training / held-out example sources with the model's PromptBuilder."""
    if not cfg.dirs:
        raise ValueError("no training data: give data.dirs=[DIR,...] (folders written by palme-collect)")
    weights = MixtureConfig(preset=cfg.mixture, weights=dict(cfg.weights)).resolved()
    builders: list[ExampleBuilder] = []
    train: dict[str, list[Ref]] = {}
    heldout: dict[str, list[Ref]] = {}
    tasks: set[tuple[str, str]] = set()
    skipped, image_shape = 0, None
    held_all: list[set[int]] = []
    for folder, root in enumerate(cfg.dirs):
        check_folder(root, cfg)
        ds = LogDataset(root, on_error="skip" if cfg.skip_invalid else "raise")
        if ds.skipped:
            skipped += len(ds.skipped)
            log(f"skipped {len(ds.skipped)} invalid episode(s) of {root}: " + "; ".join(str(p) for p in ds.skipped[:3]))
        if cfg.max_episodes > 0:
            ds.episodes = ds.episodes[: cfg.max_episodes]
        world = (ds.info.get("palme") or {}).get("world", "?")
        tasks |= {(world, ep.task_name) for ep in ds.episodes}
        image_shape = image_shape or ds.image_shape
        builder = ExampleBuilder(ds, prompts, seed=seed, include_failed=cfg.include_failed)
        builders.append(builder)
        held = _heldout_positions(len(ds.episodes), cfg.val_fraction, seed, folder)
        held_all.append(held)
        for source, specs in builder.all_sources(weights).items():
            for spec in specs:
                (heldout if spec.episode in held else train).setdefault(source, []).append((folder, spec))
    for source in ("plan", "plan_full"):
        if source in train:
            train[source] = _cap(train[source], cfg.max_plan_examples, seed)
    if not any(train.get(s) for s, w in weights.items() if w > 0):
        raise ValueError(f"the data folders {list(cfg.dirs)} yield no training examples for the mixture {weights}")
    return TrainData(builders, train, heldout, weights, sorted(tasks), held_all, skipped, image_shape)
