"""Training examples from demonstration logs: every registered source's `ExampleSpec`s, and the mixture presets.

What each source asks, on which frames, with which random stream, is declared once in its
`ExampleSource` (training/sources.py). `ExampleBuilder` runs them over a log folder. Examples are
built as light `ExampleSpec`s (text + frame reference); arrays are attached when an example is drawn
(`materialize`), from the dataset's decode-once image cache. The training stream that draws them is
`training.batches.MixtureStream`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.prompts import Example, PromptBuilder, count_objects
from training.config import DATA_STATES
from training.dataset.reader import LogDataset
from training.dataset.schema import OBSERVED_STATE_KEY
from training.sources import OBJECT_TARGETS, SOURCES, ExampleSource, Moment, get_source, source_rng
from training.vqa import Scene, camera_from_info, same_cubes

# PaLM-E's "full mixture" co-trains planning with VQA/captioning; robot-only keeps the planning sources.
MIXTURES: dict[str, dict[str, float]] = {
    "full": {"plan": 0.35, "plan_full": 0.1, "vqa_color": 0.06, "vqa_table": 0.08, "vqa_relation": 0.1,
             "vqa_feasibility": 0.1, "vqa_count": 0.05, "caption": 0.06, "success": 0.05, "skill_success": 0.05},
    "planning_only": {"plan": 0.75, "plan_full": 0.25},
}


def mixture_weights(preset: str = "full", weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """The weights in force: `weights` when given, else the preset's (a key of MIXTURES).

    ValueError names an unknown preset or unknown sources (listing the registered ones), or weights
    that are negative or sum to zero.
    """
    if not weights and preset not in MIXTURES:
        raise ValueError(f"unknown mixture preset {preset!r}; expected one of {sorted(MIXTURES)}")
    w = dict(weights) if weights else dict(MIXTURES[preset])
    unknown = sorted(set(w) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown mixture sources {unknown}; expected some of {sorted(SOURCES)}")
    if any(v < 0 for v in w.values()) or sum(w.values()) <= 0:
        raise ValueError(f"mixture weights must be >= 0 with a positive sum, got {w}")
    return w


def check_state(state: str, info: Mapping[str, Any], root: Any) -> None:
    """ValueError (one line) unless `state` is a data.state and the folder `root` (its info.json `info`) holds the
    rows it reads: "observed" needs the planner's rows, which palme-collect records with state=estimated|noisy."""
    if state not in DATA_STATES:
        raise ValueError(f"data.state must be one of {list(DATA_STATES)}, got {state!r}")
    if state == "observed" and OBSERVED_STATE_KEY not in info.get("features", {}):
        raise ValueError(f"data.state=observed reads the planner's rows ({OBSERVED_STATE_KEY}), and data folder {root} "
                         "has none (collected with state=privileged): collect one with `palme-collect state=estimated "
                         "out=DIR ...` (or state=noisy), or train on it with data.state=privileged")


@dataclass(frozen=True)
class ExampleSpec:
    """An example without its arrays: prompt text, answer, and which frame it is about."""

    source: str
    prompt: str
    answer: str
    episode: int  # position in LogDataset.episodes
    frame: int  # frame index within the episode
    prompt_loss: bool = True  # False: the prompt's history has steps the oracle would not take (no prompt loss)
    instruction: str | None = None  # the words `<instr>` reads (sources.Draft.instruction); None: the logged ones


class ExampleBuilder:
    """Builds the registered sources' ExampleSpecs from a LogDataset with one PromptBuilder.

    `seed` is the base seed of every source's random stream (`sources.source_rng`); `include_failed`
    also learns from episodes whose task failed (sources with `every_episode` always see them); `rephrase`: other
    training phrasings of each episode's goal its prompts may hold (`sources.given_words`; 0 = the logged words).
    `state`: the rows the model reads (`data.state`, training.config.DataConfig): "privileged", the simulator's, or
    "observed", the rows the planner saw (a folder collected with state=estimated|noisy; ValueError, one line, for a
    folder without them): the examples' arrays, their prompts' object counts and the referrals questions name. Every
    answer and scene relation a question asks about is the simulator's (`scene`) either way.
    """

    def __init__(self, ds: LogDataset, prompts: PromptBuilder | None = None, seed: int = 0,
                 include_failed: bool = False, rephrase: int = 0, state: str = "privileged") -> None:
        check_state(state, ds.info, ds.root)
        self.ds = ds
        self.observed = state == "observed"
        self.rephrase = rephrase
        self.prompts = prompts or PromptBuilder()
        self.seed = seed
        self.include_failed = include_failed
        self.camera, self.table_z, self.workspace = camera_from_info(ds.info)
        self._memo: dict[Any, Any] = {}
        self._scenes: dict[tuple[int, int], Scene] = {}  # the frames of the episode being built

    def learns_from(self, pos: int) -> bool:
        """Whether episode `pos` teaches: successful, failed with include_failed, or labelled (DAgger)."""
        ep = self.ds.episodes[pos]
        return ep.success or self.include_failed or any(s.get("label") is not None for s in ep.steps)

    def rows(self, pos: int, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(object rows, zone rows) of frame i of episode pos that the model reads (`state`)."""
        obs = self.ds.frame(pos, i, image=False, observed=self.observed)
        return obs["objects"], obs["zones"]

    def scene_counts(self, pos: int, i: int) -> tuple[int, int]:
        """(objects, zones) in frame i of episode pos: the scene a prompt is written for (the rows the model reads)."""
        objects, zones = self.rows(pos, i)
        return count_objects(objects), count_objects(zones)

    def scene(self, pos: int, i: int) -> Scene:
        """Frame i of episode pos as a Scene (objects, relations, zones: the simulator's, what answers are computed
        from), built once while the episode is built; referrals name the rows the model reads (`vqa.same_cubes`)."""
        if (pos, i) not in self._scenes:
            ep = self.ds.episodes[pos]
            referrals = same_cubes(ep.env_state[i], self.rows(pos, i)[0]) if self.observed else None
            self._scenes[(pos, i)] = Scene(ep.env_state[i], ep.names or None, self.camera, self.table_z,
                                           self.workspace, ee=ep.robot[i][:3], zones=ep.zones[i], referrals=referrals)
        return self._scenes[(pos, i)]

    def memo(self, key: Any, make: Callable[[], Any]) -> Any:
        """`make()`, computed once per builder for `key`."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def _episode_specs(self, pos: int, sources: list[ExampleSource]) -> Iterator[ExampleSpec]:
        ep = self.ds.episodes[pos]
        learn = self.learns_from(pos)
        self._scenes = {}
        for src in sources:
            if not (learn or src.every_episode):
                continue
            for i, step in src.frames(ep):
                draft = src.build(Moment(self, pos, i, step), source_rng(self.seed, src.name, ep.index, i, step))
                if draft is not None:
                    yield ExampleSpec(src.name, draft.prompt, draft.answer, pos, i, prompt_loss=draft.prompt_loss,
                                      instruction=draft.instruction)
        self._scenes = {}

    def all_sources(self, wanted: Mapping[str, float] | None = None) -> dict[str, list[ExampleSpec]]:
        """Specs per source (in registration order; each in episode and frame order): every registered source,
        or those with weight > 0 in `wanted` (ValueError for an unknown name)."""
        if wanted is not None:
            for k in wanted:
                get_source(k)
        names = [k for k in SOURCES if wanted is None or wanted.get(k, 0) > 0]
        sources = [SOURCES[k] for k in names]
        out: dict[str, list[ExampleSpec]] = {k: [] for k in names}
        for pos in range(len(self.ds.episodes)):
            for spec in self._episode_specs(pos, sources):
                out[spec.source].append(spec)
        return out

    def specs(self, name: str) -> list[ExampleSpec]:
        """Specs of one source (ValueError for an unknown name)."""
        return self.all_sources({name: 1.0})[name]

    def materialize(self, spec: ExampleSpec) -> Example:
        """The Example the model sees: the spec's text with the frame's arrays."""
        ep = self.ds.episodes[spec.episode]
        obs = self.ds.frame(spec.episode, spec.frame, image=self.prompts.reads("rgb"), observed=self.observed)
        if spec.instruction is not None:
            obs["instruction"] = spec.instruction
        ex = self.prompts.example(spec.prompt, obs, answer=spec.answer, kind=spec.source, episode=ep.index,
                                  frame=spec.frame, task=ep.task_name, source=spec.source)
        ex.prompt_loss = spec.prompt_loss
        if not self.observed:  # targets index the simulator's objects, which observed rows need not follow
            for key in self.prompts.targets:
                if key not in OBJECT_TARGETS:
                    raise ValueError(f"no training target {key!r}; known: {sorted(OBJECT_TARGETS)}")
                target = OBJECT_TARGETS[key](Moment(self, spec.episode, spec.frame))
                if target is not None:
                    ex.carry(key, target)
        return ex
