"""The data setup of a training run: validated log folders -> example sources, held-out episodes, the stream.

Every folder goes through the checks of `palme-dataset validate` (every image decoded unless
`data.validate_images=false`) before anything is built from it: a folder that fails is refused at
start with validate's one-line summary, or, with `data.skip_invalid=true`, its bad episodes (and the
episodes of a bad frame) are left out and counted; a problem of the folder itself is always refused.
A scene (world, task, seed) appears in one folder only, so a held-out episode never has a twin in
training. A seeded fraction of each folder's episodes is held out: their examples are only ever
used for evaluation during training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.prompts import Example, PromptBuilder
from training.batches import MixtureStream
from training.config import DataConfig
from training.dataset import LogDataset
from training.dataset.checks import summarize
from training.dataset.schema import load_info
from training.dataset.writer import block_sets_of
from training.examples import ExampleBuilder, ExampleSpec, check_state, mixture_weights
from training.sources import get_source

Ref = tuple[int, ExampleSpec]  # (folder index, spec)


class DataValidationError(ValueError):
    """A training folder failed `palme-dataset validate`; the message (one line) summarizes the report."""


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
    task_weights: dict[str, float] = field(default_factory=dict)  # data.task_weights ({}: each source is one pool)

    def example(self, ref: Ref) -> Example:
        """The Example (with arrays) of a reference."""
        folder, spec = ref
        return self.builders[folder].materialize(spec)

    def drawn(self, pair: tuple[str, int]) -> Example:
        """The Example of a (source, index) pair drawn by the training stream."""
        source, index = pair
        return self.example(self.train[source][index])

    def state_examples(self) -> list[Example]:
        """Object and robot rows of every frame of the training episodes (for the model's state normalisation)."""
        out = []
        for folder, builder in enumerate(self.builders):
            for pos, ep in enumerate(builder.ds.episodes):
                if pos not in self.heldout_episodes[folder]:
                    out += [Example(prompt="", objects=builder.rows(pos, i)[0], robot=ep.robot[i])
                            for i in range(ep.length)]
        return out

    def sizes(self) -> dict[str, int]:
        """Training examples per source."""
        return {k: len(v) for k, v in self.train.items()}

    def stream(self, seed: int) -> MixtureStream:
        """The training stream over the training examples (the mixture's weights and the task weights, seeded)."""
        if not self.task_weights:
            return MixtureStream(self.sizes(), self.weights, seed)
        groups = {source: [ref_task(self.builders, r) for r in refs] for source, refs in self.train.items()}
        return MixtureStream(self.sizes(), self.weights, seed, groups, self.task_weights)

    def heldout_picks(self, n: int) -> dict[str, list[Ref]]:
        """Per source of the mixture with held-out examples, `n` of them spread over its pool (the same sampler
        as training, `MixtureStream.spread`); {} when nothing is held out."""
        sizes = {k: len(v) for k, v in self.heldout.items()}
        if not any(n_ and self.weights.get(k, 0) > 0 for k, n_ in sizes.items()):
            return {}
        picks = MixtureStream(sizes, self.weights, 0).spread(n)
        return {k: [self.heldout[k][i] for i in idx] for k, idx in picks.items()}

    def texts(self) -> list[str]:
        """Every prompt and answer of the training sources (what a from-scratch tokenizer is trained on)."""
        return [t for refs in self.train.values() for _, s in refs for t in (s.prompt, s.answer)]


def open_folder(root: str | Path, cfg: DataConfig, log: Callable[[str], None] = print) -> LogDataset:
    """A log folder that passed validation (LogDataset runs validate's checks), or DataValidationError (one
    line: validate's summary); with `cfg.skip_invalid`, bad episodes are skipped and the count is logged."""
    try:
        ds = LogDataset(root, on_error="skip" if cfg.skip_invalid else "raise", images=cfg.validate_images)
    except ValueError as err:  # NotADatasetError (no readable info.json), DatasetError (with every error found)
        problems = getattr(err, "problems", None) or []
        if problems and all(p.episode is not None for p in problems) and not cfg.skip_invalid:
            hint = "fix or re-collect those episodes, or pass data.skip_invalid=true to skip them"
        else:
            hint = "fix the folder or drop it from data.dirs (data.skip_invalid skips bad episodes, not this)"
        what = summarize(problems) if problems else str(err)
        raise DataValidationError(f"data folder {root} failed validation, refusing to train on it: {what}; "
                                  f"run `palme-dataset validate {root}` for the full report; {hint}") from err
    if ds.skipped:
        frames = f", {ds.invalid_frames} invalid frame(s) among them" if ds.invalid_frames else ""
        log(f"skipped {len(ds.skipped)} invalid episode(s) of {root} (data.skip_invalid=true{frames}): "
            + summarize(ds.problems))
    return ds


def scene_key(info: dict[str, Any], task: str, seed: int) -> tuple[str, str, str, int]:
    """What names a scene of a folder: (world, block sets, task, seed). The push world draws a seed's blocks
    from the folder's block set (`block_sets_of`: palme.block_sets, or the split's N_CHOOSE_K), so BLOCK_8
    seed 1 is another scene than seed 1 of the default draw; palme-collect keeps one block set per folder."""
    palme = info["palme"]
    return palme["world"], "+".join(block_sets_of(palme)), task, seed


def drop_twins(ds: LogDataset, root: str | Path, seen: dict[tuple[str, str, str, int], str], skip: bool,
               log: Callable[[str], None] = print) -> int:
    """Refuse (or, with `skip`, drop and count) episodes whose scene (`scene_key`) an earlier folder holds: a
    held-out episode must never have a twin among the training episodes. Records the rest in `seen`."""
    world = ds.info["palme"]["world"]
    keys = [scene_key(ds.info, ep.task_name, ep.seed) for ep in ds.episodes]
    twins = [(pos, seen[key]) for pos, key in enumerate(keys) if key in seen]
    if twins and not skip:
        pos, where = twins[0]
        ep = ds.episodes[pos]
        raise DataValidationError(
            f"data folder {root}: episode {ep.index} ({world} {ep.task_name} seed {ep.seed}) is the same scene as "
            f"{where}" + (f" (+{len(twins) - 1} more)" if len(twins) > 1 else "")
            + "; a held-out episode would have a twin in training: collect with another seed_start, drop one "
              "folder, or pass data.skip_invalid=true to skip the repeats")
    if twins:
        drop = {pos for pos, _ in twins}
        ds.keep_only(p for p in range(len(ds.episodes)) if p not in drop)
        log(f"skipped {len(twins)} episode(s) of {root} that repeat a scene of an earlier folder "
            f"(first: {twins[0][1]})")
    for ep in ds.episodes:
        seen[scene_key(ds.info, ep.task_name, ep.seed)] = f"episode {ep.index} of {root}"
    return len(twins)


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
    weights = mixture_weights(cfg.mixture, cfg.weights)
    if cfg.state == "observed":  # a folder without the planner's rows is refused before validation decodes its images
        for root in cfg.dirs:
            try:
                info = load_info(root)
            except ValueError:
                continue  # not a dataset: open_folder says so
            check_state(cfg.state, info, root)
    builders: list[ExampleBuilder] = []
    train: dict[str, list[Ref]] = {}
    heldout: dict[str, list[Ref]] = {}
    tasks: set[tuple[str, str]] = set()
    skipped, image_shape = 0, None
    held_all: list[set[int]] = []
    seen: dict[tuple[str, str, int], str] = {}  # scene -> where it was first seen
    for folder, root in enumerate(cfg.dirs):
        ds = open_folder(root, cfg, log)
        skipped += len(ds.skipped)
        if cfg.max_episodes > 0:
            ds.episodes = ds.episodes[: cfg.max_episodes]
        skipped += drop_twins(ds, root, seen, cfg.skip_invalid, log)
        world = ds.info["palme"]["world"]
        tasks |= {(world, ep.task_name) for ep in ds.episodes}
        image_shape = image_shape or ds.image_shape
        builder = ExampleBuilder(ds, prompts, seed=seed, include_failed=cfg.include_failed, rephrase=cfg.rephrase,
                                 state=cfg.state)
        builders.append(builder)
        held = _heldout_positions(len(ds.episodes), cfg.val_fraction, seed, folder)
        held_all.append(held)
        for source, specs in builder.all_sources(weights).items():
            for spec in specs:
                (heldout if spec.episode in held else train).setdefault(source, []).append((folder, spec))
    for source, refs in train.items():
        if get_source(source).kind == "plan":
            train[source] = _cap(refs, cfg.max_plan_examples, seed)
    names = sorted({t for _, t in tasks})
    unknown = sorted(set(cfg.task_weights) - set(names))
    if unknown:
        raise ValueError(f"data.task_weights names {unknown}, not a task of the data folders; their tasks: {names}")
    if cfg.task_weights:  # weight 0 drops the task's examples; the rest are drawn by weight x count (TrainData.stream)
        dropped = {t for t, w in cfg.task_weights.items() if w == 0}
        train = {k: [r for r in refs if ref_task(builders, r) not in dropped] for k, refs in train.items()}
        log(f"data.task_weights {dict(cfg.task_weights)}: plan draws per task "
            + task_shares(train.get("plan", []), builders, cfg.task_weights))
    if not any(train.get(s) for s, w in weights.items() if w > 0):
        raise ValueError(f"the data folders {list(cfg.dirs)} yield no training examples for the mixture {weights}")
    return TrainData(builders, train, heldout, weights, sorted(tasks), held_all, skipped, image_shape,
                     task_weights=dict(cfg.task_weights))


def ref_task(builders: list[ExampleBuilder], ref: Ref) -> str:
    """The task name of the episode a reference comes from."""
    folder, spec = ref
    return builders[folder].ds.episodes[spec.episode].task_name


def task_shares(refs: list[Ref], builders: list[ExampleBuilder], task_weights: dict[str, float]) -> str:
    """"grasp 12.0%, stack 30.5%, ...": each task's share of a source's draws under `task_weights`."""
    counts: dict[str, int] = {}
    for ref in refs:
        task = ref_task(builders, ref)
        counts[task] = counts.get(task, 0) + 1
    mass = {t: task_weights.get(t, 1.0) * n for t, n in sorted(counts.items())}
    total = sum(mass.values()) or 1.0
    return ", ".join(f"{t} {100 * m / total:.1f}%" for t, m in mass.items())
