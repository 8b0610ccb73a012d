"""One instruction grammar for every world: templates with typed slots, rendered from goals and parsed back.

A template is literal text with slots, `"push the {obj} to the {loc}"`. A `Grammar` gives each slot
name a type, and a type knows how to say a value and how to read it back:

- `Words`: a closed synonym set, value -> phrases (board locations, directions, colours, ...);
- `ObjectRef`: one object of the scene, by the phrases a world gives for it (scene-dependent);
- `ObjectList`: several distinct objects ("the a, the b and the c", "the a on the b").

Rendering fills each slot with a phrase for its value: the canonical (first) one, or one drawn with
a generator. Parsing normalises the text (`normalize`), matches it against each template in turn,
every slot accepting only the phrases of its type (as an anchored regex), and reads the values back.
A task says which slot values put its goal into a template and which goal matched values mean
(`TemplatePhrasing.slots_for` / `goal_from_slots`); the rest (choosing a template per split,
rendering, parsing) is shared. Nothing here evaluates text.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, ClassVar

import numpy as np

from envs.catalogue import ObjectDesc

Objects = Sequence[ObjectDesc]
SLOT = re.compile(r"\{(\w+)\}")
# Between the items of a list once normalised: "a, b", "a, and b", "a, then b", "a and b", "a then b".
LIST_SEP = r", (?:and |then )?| and | then "


def normalize(text: str) -> str:
    """Lower case, single spaces, ", " after commas, American "color", no trailing punctuation or spaces."""
    text = re.sub(r"\s+", " ", text.strip().lower())
    text = re.sub(r"\bcolour", "color", text)
    text = re.sub(r" ?, ?", ", ", text)
    return re.sub(r"[\s.!?;,]+$", "", text)


def _draw(options: Sequence[str], rng: np.random.Generator | None) -> str:
    return options[0] if rng is None else options[int(rng.integers(len(options)))]


def _alternation(phrases: Sequence[str]) -> str:
    """Regex matching any of the phrases, longest first."""
    return "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))


@dataclass(frozen=True)
class Reader:
    """How a slot reads in one scene: a group-free regex, and the value of a phrase it matched (or None)."""

    pattern: str
    read: Callable[[str], Any]


class Slot(ABC):
    """A slot type: says a value in words and reads it back."""

    @abstractmethod
    def say(self, value: Any, objects: Objects, rng: np.random.Generator | None = None) -> str:
        """A phrase for `value`: the canonical one, or one drawn with `rng` (one draw per choice made)."""

    @abstractmethod
    def reader(self, objects: Objects) -> Reader:
        """What the slot accepts in this scene."""


class Words(Slot):
    """A closed synonym set: value -> phrases, first canonical (a phrase listed twice reads as the later)."""

    def __init__(self, table: Mapping[Any, Sequence[str]]) -> None:
        self.table = {k: tuple(v) for k, v in table.items()}
        lookup = {syn: value for value, syns in self.table.items() for syn in syns}
        self._reader = Reader(_alternation(list(lookup)), lookup.get)

    def say(self, value: Any, objects: Objects, rng: np.random.Generator | None = None) -> str:
        return _draw(self.table[value], rng)

    def reader(self, objects: Objects) -> Reader:
        return self._reader


@dataclass(frozen=True)
class ObjectRef(Slot):
    """One object of the scene, as an index.

    `names(i, objects)`: the phrases that say object i (first canonical); `readings(objects)`: every
    phrase read as an object, phrase -> index (only phrases that name one object). `article` ("the ")
    is put before the phrase said, and may stand before the phrase read.
    """

    names: Callable[[int, Objects], Sequence[str]]
    readings: Callable[[Objects], Mapping[str, int]]
    article: str = ""

    def say(self, value: int, objects: Objects, rng: np.random.Generator | None = None) -> str:
        return self.article + _draw(self.names(value, objects), rng)

    def reader(self, objects: Objects) -> Reader:
        table = self.readings(objects)
        article = f"(?:{re.escape(self.article)})?" if self.article else ""
        return Reader(
            f"{article}(?:{_alternation(list(table))})", lambda p: table.get(p.removeprefix(self.article))
        )

    def with_article(self, article: str) -> ObjectRef:
        return replace(self, article=article)


@dataclass(frozen=True)
class ObjectList(Slot):
    """Distinct objects in order, as a list of indices.

    Said as `lead + item` joined by `sep`, or, with `sep=None`, as "a", "a and b", "a, b and c".
    Read with an optional `lead` first and `read_sep` (a regex without groups; default: `sep`
    itself, or `LIST_SEP` when `sep` is None) between items; a list that names an object twice
    reads as nothing.
    """

    item: ObjectRef
    sep: str | None = None
    lead: str = ""
    read_sep: str | None = None

    def say(self, value: Sequence[int], objects: Objects, rng: np.random.Generator | None = None) -> str:
        items = [self.lead + self.item.say(i, objects, rng) for i in value]
        if self.sep is not None:
            return self.sep.join(items)
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]

    def reader(self, objects: Objects) -> Reader:
        item = self.item.reader(objects)
        sep = self.read_sep or (LIST_SEP if self.sep is None else re.escape(self.sep))
        lead = f"(?:{re.escape(self.lead)})?" if self.lead else ""
        pattern = f"{lead}(?:{item.pattern})(?:(?:{sep})(?:{item.pattern}))*"

        def read(phrase: str) -> list[int] | None:
            idx = [item.read(part) for part in re.split(sep, phrase.removeprefix(self.lead))]
            if any(i is None for i in idx) or len(set(idx)) != len(idx):
                return None
            return idx

        return Reader(pattern, read)


@cache
def _parts(template: str) -> tuple[tuple[str, ...], re.Pattern[str]]:
    """The normalised template split into literal text (even positions) and slot names (odd positions), and
    its skeleton: a regex with any text for each slot (a cheap test that the typed regex may match)."""
    parts = tuple(SLOT.split(normalize(template)))
    names = parts[1::2]
    if len(set(names)) != len(names):
        raise ValueError(f"template {template!r} uses a slot twice")
    return parts, re.compile("".join(re.escape(p) if k % 2 == 0 else ".*" for k, p in enumerate(parts)))


class Grammar:
    """Slot name -> slot type; renders templates from slot values and parses text back into them."""

    def __init__(self, slots: Mapping[str, Slot]) -> None:
        self.slots = dict(slots)

    def extend(self, **slots: Slot) -> Grammar:
        """This grammar with more (or other) slot types, e.g. a task's own."""
        return Grammar({**self.slots, **slots})

    def _slot(self, name: str, template: str) -> Slot:
        if name not in self.slots:
            raise ValueError(f"template {template!r}: no slot type for {{{name}}}")
        return self.slots[name]

    def slot_names(self, template: str) -> tuple[str, ...]:
        """The slots a template uses, in order."""
        return tuple(SLOT.findall(template))

    def render(
        self,
        template: str,
        values: Mapping[str, Any],
        objects: Objects,
        rng: np.random.Generator | None = None,
    ) -> str:
        """The template with each slot said: its canonical phrase, or one drawn with `rng` (left to right).

        ValueError if the template has a slot this grammar has no type for.
        """

        def fill(m: re.Match[str]) -> str:
            return self._slot(m[1], template).say(values[m[1]], objects, rng)

        return SLOT.sub(fill, template)

    def parse(
        self, templates: Sequence[str], text: str, objects: Objects
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(template, slot values) per template the normalised text matches, in order; errors as `render`."""
        text = normalize(text)
        readers: dict[str, Reader] = {}
        for template in templates:
            parts, skeleton = _parts(template)
            if not skeleton.fullmatch(text):
                continue
            for name in parts[1::2]:
                if name not in readers:
                    readers[name] = self._slot(name, template).reader(objects)
            regex = "".join(
                re.escape(p) if k % 2 == 0 else f"(?P<{p}>{readers[p].pattern})" for k, p in enumerate(parts)
            )
            m = re.fullmatch(regex, text)
            if m is None:
                continue
            values = {name: readers[name].read(phrase) for name, phrase in m.groupdict().items()}
            if all(v is not None for v in values.values()):
                yield template, values


class TemplatePhrasing:
    """Instruction text <-> goal through a grammar's templates; a mixin for `Task` classes.

    A task sets `grammar` and its `templates` / `heldout_templates`, and implements `goal_from_slots`
    (and `slots_for` when its templates have slots). `random_phrases`: draw a phrase per slot when
    sampling (else the canonical one).
    """

    grammar: ClassVar[Grammar]
    templates: ClassVar[tuple[str, ...]]
    heldout_templates: ClassVar[tuple[str, ...]]
    random_phrases: ClassVar[bool] = False

    def slots_for(self, template: str, goal: Any, objects: Objects) -> dict[str, Any] | None:
        """Slot values that say `goal` in `template`, or None when the template cannot say it (default {})."""
        return {}

    @abstractmethod
    def goal_from_slots(self, template: str, slots: dict[str, Any], objects: Objects) -> Any | None:
        """The goal that a matched template's slot values mean for these objects, or None if inconsistent."""

    def templates_of(self, split: str) -> tuple[str, ...]:
        """Phrasings an instance of `split` may use: the held-out ones in L4 (if any), else training ones."""
        return self.heldout_templates if split == "L4" and self.heldout_templates else self.templates

    def say(self, rng: np.random.Generator, goal: Any, objects: Objects, split: str) -> tuple[str, str]:
        """(template, instruction text) for `goal`: a template of the split that can say it, drawn with `rng`.

        ValueError if none can (a task bug)."""
        usable = [t for t in self.templates_of(split) if self.slots_for(t, goal, objects) is not None]
        if not usable:
            raise ValueError(f"no {split} template of {type(self).__name__} can express goal {goal!r}")
        template = usable[int(rng.integers(len(usable)))]
        return template, self.render(template, goal, objects, rng if self.random_phrases else None)

    def render(
        self, template: str, goal: Any, objects: Objects, rng: np.random.Generator | None = None
    ) -> str:
        """The instruction text of `goal` in `template`; ValueError if the template cannot say it."""
        slots = self.slots_for(template, goal, objects)
        if slots is None:
            raise ValueError(f"template {template!r} cannot express goal {goal!r}")
        return self.grammar.render(template, slots, objects, rng)

    def parse_instruction(self, text: str, objects: list[ObjectDesc]) -> Any | None:
        """The goal of the first template (training, then held-out) matched consistently, or None."""
        for template, slots in self.grammar.parse((*self.templates, *self.heldout_templates), text, objects):
            goal = self.goal_from_slots(template, slots, objects)
            if goal is not None:
                return goal
        return None
