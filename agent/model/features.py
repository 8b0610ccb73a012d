"""Object features: small modules whose outputs are summed onto the object tokens, chosen by name in the config.

An object token is the state MLP's output for the object's row plus, for each feature named in
`PalmEConfig.state.features` (in that order), the feature's (N, D) output:

    words        the LM's own input embeddings of the object's colour and shape words ("red", "cube"),
                 so that naming an object in a plan step is a copy of something its token holds
    size_word    adds the size word ("small" / "large": the nearer edge length) to those words
    words_above  a learned map of the words of the cubes above the object in its stack
    words_below  a learned map of the words of the cubes below it
    zone_words   a learned map of the words of the zone it lies in ("red zone"; the zone rows travel
                 with every example: `needs = ("zones",)`)
    board_words  a learned map of the words of the push board's locations the object is at ("top left
                 corner", "center") and of the board half it lies in ("left side")
    near_words   a learned map of the words of the blocks it is together with (centres closer than
                 Language-Table's 0.08 m)
    corner_words a learned map of "closest to the <corner> corner" for each board corner it is the scene's
                 nearest block to (PaLM-E's T1 names its block so)
    instruction_words  where the instruction names the object: for its colour, shape (or "zone") and size word,
                 attention over the instruction's frozen encoder states by cosine similarity to that word's own
                 encoder state, and a learned map of the attended states (needs the `instruction` token type)
    instruction_phrases  instruction_words that also reads the size word said before a name ("small" / "big" ...,
                 by word-piece id), so two cubes of one colour attend each to its own mention (takes its place)
    instruction_sides  the instruction's word for the board half the object lies in ("left" / "right"), found
                 by its word-piece id, and a learned map of that word's encoder state in context, which says
                 what the sentence does with that half (PaLM-E's T3 gathers one half and leaves the other)
    instruction_corners  the instruction's words for a board corner the object is the nearest block to ("top" /
                 "upper" and "left"), found by their word-piece ids, and a learned map of their states in context
                 (PaLM-E's T1 chooses the block closest to a corner)
    instruction_order  where the object's mention stands among the objects the instruction names (soft rank from the
                 start and from the end), read with the sentence's own vector: which end of "the a on the b on the c"
                 or "a tower of a, b and c, bottom first" it is (needs instruction_words before it)
    instruction_support  the words of the cube the instruction puts the object on and of the cube it puts on the
                 object (pairs scored from the mentions' encoder states), and whether each already is there
                 (needs words and instruction_words before it)

The words of an object (`ObjectContext.words`: the mean input embedding of each of its words, summed)
are computed once per batch, from the word mixes of every feature that has one (`word_mix`), and shared
by every feature that reads them. The learned maps start at zero, so a new model starts from the plain
object tokens. Relations are read from the rows with the soft predicates of `envs.geometry`
(`support_weights`, `zone_weights`).

Adding one (see tests/test_model_extension.py): subclass `ObjectFeature` (its `role` is "state", so
training stages train and freeze it with the state encoders), implement `forward(ctx)`, decorate it
with `@register_object_feature("name")`, and list the name in `state.features`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from envs.catalogue import COLOR_NAMES, OBJ_FIELDS, SHAPE_NAMES, SIZE_EDGES, SIZE_NAMES, ZONE_KIND
from envs.geometry import support_weights, zone_weights
from envs.tasks.push.geometry import (
    LOCATION_WORDS,
    NEAREST_WORDS,
    location_weights,
    nearest_weights,
    together_weights,
)

_COLOR_COL, _SHAPE_COL, _SIZE_COL = OBJ_FIELDS.index("color_id"), OBJ_FIELDS.index("shape_id"), OBJ_FIELDS.index("size")
SIZE_SPLIT = sum(SIZE_EDGES[s] for s in SIZE_NAMES) / len(SIZE_NAMES)  # edge length between "small" and "large"
_KINDS = (*SHAPE_NAMES, ZONE_KIND)  # the shape column: object shapes, then the zone kind


@dataclass(frozen=True)
class FeatureSetup:
    """What a feature is built from: the LM's embedding width D and vocabulary (for word mixes), and the model's
    frozen instruction encoder (`text_encoder.SentenceStates`; None when the model has no `instruction` tokens)."""

    width: int
    tokenizer: Any
    vocab_size: int
    text: Any = None

    def word_table(self, words: Sequence[str]) -> torch.Tensor:
        """(len(words), vocab_size): row r averages the token ids of " <words[r]>" (its mean embedding is row @ E)."""
        table = torch.zeros(len(words), self.vocab_size)
        for r, word in enumerate(words):
            ids = self.tokenizer.encode(" " + word, add_special_tokens=False)
            table[r, ids] += 1.0 / len(ids)
        return table


@dataclass
class ObjectContext:
    """What features read for N object rows of a batch; shared values are computed once (`memo`)."""

    rows: torch.Tensor  # (N, OBJ_DIM) object rows
    scene: torch.Tensor  # (N,) example index of each row
    context: Mapping[str, tuple[torch.Tensor, torch.Tensor]]  # key -> ((Nk, OBJ_DIM) rows, (Nk,) example index)
    embeddings: torch.Tensor  # (V, D) the LM's input embeddings
    # ((M, W) frozen encoder states of the examples' instructions, [CLS] and [SEP] included, grouped by example in
    # increasing example order; (M,) the example index of each), for features that `reads_instruction`
    instruction: tuple[torch.Tensor, torch.Tensor] | None = None
    instruction_ids: torch.Tensor | None = None  # (M,) the encoder's word-piece id of each of those states
    # training targets of the features that learn from one (`ObjectFeature.targets`): key -> (N,) long per row
    targets: Mapping[str, torch.Tensor] = field(default_factory=dict)
    mixes: list[torch.Tensor] = field(default_factory=list)  # (N, V) word mixes of the features, in config order
    losses: list[torch.Tensor] = field(default_factory=list)  # the features' auxiliary losses (`aux_loss`), weighted
    _memo: dict[str, Any] = field(default_factory=dict)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()`, once per context (what several features share)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def is_object(self) -> torch.Tensor:
        """(N,) whether a row is an object (its shape column holds an object shape, not the zone kind)."""
        return kind_of(self.rows) < len(SHAPE_NAMES)

    @property
    def words(self) -> torch.Tensor:
        """(N, D) the embeddings of each object's words: the sum of the features' word mixes, times E."""
        def compute() -> torch.Tensor:
            if not self.mixes:
                raise ValueError("no object feature gives the objects words; list 'words' in state.features")
            mix = self.mixes[0]
            for more in self.mixes[1:]:
                mix = mix + more
            return mix.to(self.embeddings.dtype) @ self.embeddings
        return self.memo("words", compute)


def kind_of(rows: torch.Tensor) -> torch.Tensor:
    """(N,) index into (*SHAPE_NAMES, ZONE_KIND) of each row's shape column."""
    return rows[:, _SHAPE_COL].round().long().clamp(0, len(_KINDS) - 1)


class ObjectFeature(nn.Module):
    """A module that adds to the object tokens; subclass it and register it with `register_object_feature`."""

    role: ClassVar[str] = "state"  # trains with the state encoders (config.STAGE_ROLES)
    needs: ClassVar[tuple[str, ...]] = ()  # observation keys it reads besides the object rows (collated with them)
    requires: ClassVar[tuple[str, ...]] = ()  # features that must come before it in state.features
    provides: ClassVar[tuple[str, ...]] = ()  # features whose place it takes (their `requires`), never listed with it
    reads_instruction: ClassVar[bool] = False  # whether it reads `ObjectContext.instruction` (collated with the rows)
    # per-object training targets it learns from besides the answers (`aux_loss`), which training examples carry
    # (`training.sources.OBJECT_TARGETS`): each (MAX_OBJECTS,) int, an object index, -1 for "none", -100 unknown
    targets: ClassVar[tuple[str, ...]] = ()
    name: str = ""  # set by the registry

    def __init__(self, setup: FeatureSetup) -> None:
        super().__init__()

    def word_mix(self, ctx: ObjectContext) -> torch.Tensor | None:
        """(N, V) weights of this feature's words in each object's words (`ctx.words`); None: it adds none."""
        return None

    def forward(self, ctx: ObjectContext) -> torch.Tensor | None:
        """(N, D) added to every token of each object; None: nothing (its word mix may still count)."""
        raise NotImplementedError

    def aux_loss(self, ctx: ObjectContext) -> torch.Tensor | None:
        """A weighted scalar loss from `ctx.targets` (called after `forward`, only when the batch carries this
        feature's targets: training); None: none for this batch."""
        return None


OBJECT_FEATURES: dict[str, type[ObjectFeature]] = {}


def register_object_feature(name: str) -> Callable[[type[ObjectFeature]], type[ObjectFeature]]:
    """Class decorator: register an ObjectFeature under `name`; ValueError if the name is taken."""
    def register(cls: type[ObjectFeature]) -> type[ObjectFeature]:
        if name in OBJECT_FEATURES:
            raise ValueError(f"object feature {name!r} is already registered")
        cls.name = name
        OBJECT_FEATURES[name] = cls
        return cls
    return register


def feature_class(name: str) -> type[ObjectFeature]:
    """The registered feature `name`; ValueError listing the known ones."""
    if name not in OBJECT_FEATURES:
        raise ValueError(f"unknown object feature {name!r}; known object features: {sorted(OBJECT_FEATURES)}")
    return OBJECT_FEATURES[name]


def check_features(names: Sequence[str]) -> None:
    """ValueError unless `names` are registered features, each once, each after the features it requires."""
    for i, name in enumerate(names):
        cls = feature_class(name)
        if name in names[:i]:
            raise ValueError(f"state.features names {name!r} twice: {list(names)}")
        stands_in = [p for p in cls.provides if p in names]
        if stands_in:
            raise ValueError(f"object feature {name!r} takes the place of {stands_in}: list one of them, got {list(names)}")
        provided = {p for n in names[:i] for p in (n, *feature_class(n).provides)}
        missing = [r for r in cls.requires if r not in provided]
        if missing:
            raise ValueError(f"object feature {name!r} needs {missing} before it in state.features, got {list(names)}")


def build_features(names: Sequence[str], setup: FeatureSetup) -> nn.ModuleDict:
    """The features `names`, in order, as a ModuleDict (parameter names `object_features.<name>.*`)."""
    check_features(names)
    return nn.ModuleDict({name: feature_class(name)(setup) for name in names})


def feature_context(names: Sequence[str]) -> tuple[str, ...]:
    """The observation keys the features `names` read besides the object rows (what examples must carry)."""
    return tuple(dict.fromkeys(key for name in names for key in feature_class(name).needs))


def feature_targets(names: Sequence[str]) -> tuple[str, ...]:
    """The per-object training targets the features `names` learn from (what training examples carry)."""
    return tuple(dict.fromkeys(key for name in names for key in feature_class(name).targets))


def add_features(tokens: torch.Tensor, features: nn.ModuleDict, ctx: ObjectContext) -> torch.Tensor:
    """(N, k, D) object tokens plus the sum of the features' (N, D) outputs (summed first, in order, then added).
    The auxiliary losses of features whose targets the batch carries go to `ctx.losses`."""
    ctx.mixes[:] = [m for f in features.values() if (m := f.word_mix(ctx)) is not None]
    total = None
    for feature in features.values():
        out = feature(ctx)
        if out is not None:
            total = out if total is None else total + out
        if feature.targets and all(key in ctx.targets for key in feature.targets):
            loss = feature.aux_loss(ctx)
            if loss is not None:
                ctx.losses.append(loss)
    return tokens if total is None else tokens + total[:, None, :]


def _zero_map(width: int, in_width: int | None = None) -> nn.Linear:
    """A learned map (in_width, default D) -> D that starts at zero (a new model starts from the plain object tokens)."""
    layer = nn.Linear(in_width or width, width, bias=False)
    nn.init.zeros_(layer.weight)
    return layer


# ---------------------------------------------------------------------------------------------
# the features of the shipped model


@register_object_feature("words")
class Words(ObjectFeature):
    """The object's colour and shape words ("red", "cube"): `ctx.words`, the LM's own embeddings."""

    def __init__(self, setup: FeatureSetup) -> None:
        super().__init__(setup)
        self.register_buffer("table", color_kind_table(setup), persistent=False)

    def word_mix(self, ctx: ObjectContext) -> torch.Tensor:
        return row_mix(self.table, ctx.rows)

    def forward(self, ctx: ObjectContext) -> torch.Tensor:
        return ctx.words


@register_object_feature("size_word")
class SizeWord(ObjectFeature):
    """The object's size word ("small" / "large", whichever edge length is nearer), added to `ctx.words`."""

    requires = ("words",)

    def __init__(self, setup: FeatureSetup) -> None:
        super().__init__(setup)
        self.register_buffer("table", setup.word_table(SIZE_NAMES), persistent=False)

    def word_mix(self, ctx: ObjectContext) -> torch.Tensor:
        large = (ctx.rows[:, _SIZE_COL] >= SIZE_SPLIT).long()  # index into SIZE_NAMES ("small", "large")
        return ctx.is_object.to(self.table.dtype)[:, None] * self.table[large]  # zone rows: no size word

    def forward(self, ctx: ObjectContext) -> None:
        return None  # its word is in ctx.words


def stacks(ctx: ObjectContext) -> torch.Tensor:
    """(N, N) soft "cube j is above cube i" weights of the batch's rows (`geometry.support_weights`), once per batch."""
    return ctx.memo("stacks", lambda: support_weights(ctx.rows, ctx.scene, ctx.is_object).to(ctx.words.dtype))


class _StackWords(ObjectFeature):
    """A learned map of the words of the cubes above (or below) the object in its stack."""

    requires = ("words",)
    below: ClassVar[bool] = False

    def __init__(self, setup: FeatureSetup) -> None:
        super().__init__(setup)
        self.map = _zero_map(setup.width)

    def forward(self, ctx: ObjectContext) -> torch.Tensor:
        above = stacks(ctx)  # (N, N): row i, column j: j is above i
        return self.map((above.T if self.below else above) @ ctx.words)


@register_object_feature("words_above")
class WordsAbove(_StackWords):
    """A learned map of the words of the cubes above the object in its stack ("the blue cube is on me")."""


@register_object_feature("words_below")
class WordsBelow(_StackWords):
    """A learned map of the words of the cubes below the object in its stack ("I rest on the red cube")."""

    below = True


@register_object_feature("zone_words")
class ZoneWords(ObjectFeature):
    """A learned map of the words of the zone the object lies in ("red zone"; `geometry.zone_weights`)."""

    needs = ("zones",)
    requires = ("words",)

    def __init__(self, setup: FeatureSetup) -> None:
        super().__init__(setup)
        self.register_buffer("table", color_kind_table(setup), persistent=False)
        self.map = _zero_map(setup.width)

    def forward(self, ctx: ObjectContext) -> torch.Tensor | None:
        zones, zone_scene = ctx.context["zones"]
        if not zones.numel():
            return None
        inside = zone_weights(ctx.rows, ctx.scene, ctx.is_object, zones, zone_scene).to(ctx.words.dtype)  # (N, Nz)
        zone_words = row_mix(self.table, zones).to(ctx.embeddings.dtype) @ ctx.embeddings  # (Nz, D): "<colour> zone"
        return self.map(inside @ zone_words)


@register_object_feature("board_words")
class BoardWords(ObjectFeature):
    """A learned map of the words of the push board's locations the object is at and of its board half.

    The locations and radii are Language-Table's (`envs.tasks.push.geometry.LOCATION_POINTS`: 0.115 m, the
    center 0.1 m), so a block that a location task would count as there carries that location's words
    ("top left corner", "center"), and every block the words of its half ("left side", y < 0). Pick-and-place
    rows get the words of the same points of their table (the map learns what they are worth there).
    """

    def __init__(self, setup: FeatureSetup) -> None:
        super().__init__(setup)
        self.register_buffer("table", setup.word_table(LOCATION_WORDS), persistent=False)
        self.map = _zero_map(setup.width)

    def forward(self, ctx: ObjectContext) -> torch.Tensor:
        at = location_weights(ctx.rows) * ctx.is_object[:, None]  # (N, len(LOCATION_WORDS)); zone rows: none
        words = self.table.to(ctx.embeddings.dtype) @ ctx.embeddings  # (len(LOCATION_WORDS), D)
        return self.map(at.to(words.dtype) @ words)


@register_object_feature("near_words")
class NearWords(ObjectFeature):
    """A learned map of the words of the blocks the object is together with (`together_weights`: centre
    distance under Language-Table's 0.08 m "together" threshold, as side_together and separate judge it)."""

    requires = ("words",)

    def __init__(self, setup: FeatureSetup) -> None:
        super().__init__(setup)
        self.map = _zero_map(setup.width)

    def forward(self, ctx: ObjectContext) -> torch.Tensor:
        near = together_weights(ctx.rows, ctx.scene, ctx.is_object).to(ctx.words.dtype)  # (N, N)
        return self.map(near @ ctx.words)


@register_object_feature("corner_words")
class CornerWords(ObjectFeature):
    """A learned map of "closest to the <corner> corner" for each board corner the object is its scene's nearest
    block to (`nearest_weights`, soft): the block PaLM-E's T1 (corner_to_same_color) names by its place."""

    def __init__(self, setup: FeatureSetup) -> None:
        super().__init__(setup)
        self.register_buffer("table", setup.word_table(NEAREST_WORDS), persistent=False)
        self.map = _zero_map(setup.width)

    def forward(self, ctx: ObjectContext) -> torch.Tensor:
        nearest = nearest_weights(ctx.rows, ctx.scene, ctx.is_object)  # (N, 4)
        words = self.table.to(ctx.embeddings.dtype) @ ctx.embeddings  # (4, D)
        return self.map(nearest.to(words.dtype) @ words)


def color_kind_table(setup: FeatureSetup) -> torch.Tensor:
    """(n_colours + n_shapes + 1, V): the word mixes of the colour names, the shape names and the zone kind."""
    return setup.word_table([*COLOR_NAMES, *_KINDS])


def row_mix(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(N, V) the colour word plus the shape (or "zone") word of each row, from a `color_kind_table`."""
    color = rows[:, _COLOR_COL].round().long().clamp(0, len(COLOR_NAMES) - 1)
    return table[color] + table[len(COLOR_NAMES) + kind_of(rows)]



from agent.model import instruction_features  # noqa: F401 - registers the features that read the instruction
