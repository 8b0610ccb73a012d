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

Beyond slots, one surface layer is shared by both worlds (issue #19: "instructions in the user's own words"):

- alternatives in a template's literal text, `"(put|place) the {obj}( down|)"` (no nesting; an empty
  alternative makes words optional: keep the spaces inside the group), and shared synonym sets by name,
  `"<take> the {obj}"` (`SYNONYMS`: verbs, prepositions, ...);
- sentence frames around an imperative template (`FRAMES`: polite and question forms, "please ...",
  "could you ...?", "go ahead and ..."), while a task's `goal_templates` state the goal first and take none;
- capitalisation and end punctuation (`surface`), which `normalize` folds away again.

Rendering draws every choice with the generator; parsing reads every alternative back.
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
GROUP = re.compile(r"\(([^()]*)\)")  # literal alternatives: "(put|place)"; an empty one makes words optional
MACRO = re.compile(r"<(\w+)>")  # a shared synonym set by name: "<take>"
_PIECE = re.compile(r"\{(\w+)\}|\(([^()]*)\)")

# Shared synonym sets (first = canonical). Both worlds' templates name them as <key>.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "take": ("pick up", "grab", "lift", "take", "get", "grasp", "lift up", "pick"),
    "place": ("put", "place", "set", "move", "drop", "lay"),
    "bring": ("put", "move", "bring", "take", "carry", "place", "get"),
    "on": ("on", "onto", "on top of", "atop"),
    "into": ("in", "into", "inside", "to", "inside of"),
    "every": ("all the", "every", "all", "each", "all of the"),
    "make": ("build", "make", "create", "form", "assemble"),
    "should": ("should", "must"),
    "want": ("i want", "i'd like", "i would like", "i need", "we want", "we need"),
}
# Sentence frames of an imperative template `{s}`: polite and question forms. `(?)` marks a question.
FRAMES: tuple[str, ...] = (
    "{s}",
    "please {s}",
    "{s}( please|, please)",
    "(could|can|would|will) you( please|) {s}(?)",
    "(i want|i'd like|i would like) you to {s}",
    "(go ahead and |now |next, |next |okay, |ok |first, |){s}",
    "(you should|you need to|try to|your task is to|the task is to) {s}",
    "(how do i|how can i|how to|how would you|how do you) {s}(?)",
    "(let's|let us) {s}",
    "{s}( for me| now|, thanks| thanks| right away|)",
)
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


def _tidy(text: str) -> str:
    """Runs of spaces (left by empty alternatives) folded, ends stripped."""
    return re.sub(r" {2,}", " ", text).strip()


def expand(template: str) -> str:
    """The template with each `<name>` replaced by its synonym group; ValueError for an unknown name."""

    def sub(m: re.Match[str]) -> str:
        if m[1] not in SYNONYMS:
            raise ValueError(f"template {template!r}: no synonym set <{m[1]}>; known: {sorted(SYNONYMS)}")
        return "(" + "|".join(SYNONYMS[m[1]]) + ")"

    return MACRO.sub(sub, template)


def literal_regex(text: str) -> str:
    """Regex of a template's literal text: escaped, each `(a|b)` group an alternation (longest first)."""
    parts = GROUP.split(text)
    return "".join(re.escape(p) if k % 2 == 0 else f"(?:{_alternation(p.split('|'))})" for k, p in enumerate(parts))


def surface(text: str, rng: np.random.Generator | None, question: bool = False) -> str:
    """Capitalisation and end punctuation of a rendered instruction (none without `rng`).

    With `rng`: first letter capitalised half of the time; a question ends in "?" (most often) or nothing,
    anything else in ".", nothing or "!". `normalize` undoes all of it.
    """
    if rng is None or not text:
        return text
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    ends = ("?", "?", "?", "") if question else (".", ".", "", "", "!")
    return text + ends[int(rng.integers(len(ends)))]


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


def and_list(items: Sequence[str]) -> str:
    """"A", "A and B", "A, B and C" (items: at least one)."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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
        return and_list(items)

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
    parts = tuple(SLOT.split(normalize(expand(template))))
    names = parts[1::2]
    if len(set(names)) != len(names):
        raise ValueError(f"template {template!r} uses a slot twice")
    return parts, re.compile("".join(literal_regex(p) if k % 2 == 0 else ".*" for k, p in enumerate(parts)))


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
        """The template with each slot said and each `(a|b)` group chosen: the canonical (first) phrase and
        alternative, or ones drawn with `rng` (left to right); runs of spaces folded.

        ValueError if the template has a slot this grammar has no type for, or an unknown `<name>`.
        """

        def fill(m: re.Match[str]) -> str:
            if m[1] is not None:
                return self._slot(m[1], template).say(values[m[1]], objects, rng)
            return _draw(m[2].split("|"), rng)

        return _tidy(_PIECE.sub(fill, expand(template)))

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
                literal_regex(p) if k % 2 == 0 else f"(?P<{p}>{readers[p].pattern})" for k, p in enumerate(parts)
            )
            m = re.fullmatch(regex, text)
            if m is None:
                continue
            values = {name: readers[name].read(phrase) for name, phrase in m.groupdict().items()}
            if all(v is not None for v in values.values()):
                yield template, values


MAX_DRAWS = 20  # renderings drawn before giving up on one that no held-out template reads


def choose(text: str, rng: np.random.Generator | None) -> str:
    """`text` with each `(a|b)` group replaced by one alternative (the first without `rng`)."""
    return GROUP.sub(lambda m: _draw(m[1].split("|"), rng), text)


def frame_text(frame: str, clause: str, rng: np.random.Generator | None) -> tuple[str, bool]:
    """(`clause` said in `frame`, whether the frame is a question); the frame's groups drawn with `rng`."""
    question = frame.endswith("(?)")
    before, after = frame.removesuffix("(?)").split("{s}")
    return _tidy(choose(before, rng) + clause + choose(after, rng)), question


@cache
def _frame_regex(frame: str) -> re.Pattern[str]:
    before, after = normalize(frame.removesuffix("(?)")).split("{s}")
    return re.compile(f"{literal_regex(before)}(?P<s>.+?){literal_regex(after)}")


def unframe(text: str, frames: Sequence[str]) -> Iterator[str]:
    """The clauses that `frames` (other than the bare `{s}`) could have wrapped normalised `text` in."""
    for frame in frames:
        if frame != "{s}":
            m = _frame_regex(frame).fullmatch(text)
            if m:
                yield m["s"]


class TemplatePhrasing:
    """Instruction text <-> goal through a grammar's templates; a mixin for `Task` classes.

    A task sets `grammar` and its `templates` (imperative clauses, said inside one of the shared
    `FRAMES`), `goal_templates` (goal-first statements, said as they are) and `heldout_templates`
    (L4 only, never trained on), and implements `goal_from_slots` (and `slots_for` when its templates
    have slots). `random_phrases`: draw a phrase per slot when sampling (else the canonical one).
    L4 draws from the held-out templates and the independent test set (`envs.tasks.independent_instructions`).
    """

    grammar: ClassVar[Grammar]
    templates: ClassVar[tuple[str, ...]]
    goal_templates: ClassVar[tuple[str, ...]] = ()
    heldout_templates: ClassVar[tuple[str, ...]]
    frames: ClassVar[tuple[str, ...]] = FRAMES
    random_phrases: ClassVar[bool] = True

    def slots_for(self, template: str, goal: Any, objects: Objects) -> dict[str, Any] | None:
        """Slot values that say `goal` in `template`, or None when the template cannot say it (default {})."""
        return {}

    @abstractmethod
    def goal_from_slots(self, template: str, slots: dict[str, Any], objects: Objects) -> Any | None:
        """The goal that a matched template's slot values mean for these objects, or None if inconsistent."""

    def training_templates(self) -> tuple[str, ...]:
        """Every template training says: the imperative ones, then the goal-first ones."""
        return (*self.templates, *self.goal_templates)

    def canonical(self, goal: Any, objects: Objects) -> str | None:
        """`goal` in the first imperative template that can say it, with canonical phrases and no frame: the
        task's plainest wording (what `prompt.restate` plans from), or None when no imperative template can say it."""
        for template in self.templates:
            if self.slots_for(template, goal, objects) is not None:
                return self.render(template, goal, objects)
        return None

    def templates_of(self, split: str) -> tuple[str, ...]:
        """The project's templates an instance of `split` may use: held-out ones in L4 (if any), else training ones."""
        return self.heldout_templates if split == "L4" and self.heldout_templates else self.training_templates()

    def say(self, rng: np.random.Generator, goal: Any, objects: Objects, split: str) -> tuple[str, str]:
        """(template, instruction text) for `goal`, drawn with ONE `rng.integers` call whatever is said.

        Training phrasings (every split but L4): a template that can say the goal, its phrases, an
        imperative template's frame and the surface (`surface`), redrawn while a held-out template reads the
        text. L4: one of the held-out templates or of the independent set's templates for this task
        (template "independent: <text>"). ValueError if nothing can say the goal (a task bug).
        """
        sub = np.random.default_rng(int(rng.integers(2**63)))  # the scene's draws do not depend on the wording
        if split == "L4":
            return self._say_heldout(sub, goal, objects)
        usable = [t for t in self.training_templates() if self.slots_for(t, goal, objects) is not None]
        if not usable:
            raise ValueError(f"no {split} template of {type(self).__name__} can express goal {goal!r}")
        for _ in range(MAX_DRAWS):
            template = usable[int(sub.integers(len(usable)))]
            text = self.render(template, goal, objects, sub if self.random_phrases else None)
            question = False
            if template in self.templates:
                text, question = frame_text(self.frames[int(sub.integers(len(self.frames)))], text, sub)
            if not self._heldout_reads(text, objects):
                break
        else:
            text, question = self.render(template, goal, objects), False  # the canonical phrase
        return template, surface(text, sub, question)

    def _heldout_reads(self, text: str, objects: Objects) -> bool:
        return any(True for _ in self.grammar.parse(self.heldout_templates, text, objects))

    def _say_heldout(self, rng: np.random.Generator, goal: Any, objects: Objects) -> tuple[str, str]:
        from envs.tasks.independent_instructions import independent_set

        held = [t for t in self.heldout_templates if self.slots_for(t, goal, objects) is not None]
        ii = independent_set()
        ind = ii.usable(self.name, goal, objects) if self.name in ii.tasks else []
        if not held and not ind:
            raise ValueError(f"no L4 template of {type(self).__name__} can express goal {goal!r}")
        k = int(rng.integers(len(held) + len(ind)))
        if k < len(held):
            return held[k], self.render(held[k], goal, objects, rng if self.random_phrases else None)
        template, values = ind[k - len(held)]
        return f"independent: {template.text}", ii.fill(template, values, objects, rng)

    def render(
        self, template: str, goal: Any, objects: Objects, rng: np.random.Generator | None = None
    ) -> str:
        """The instruction text of `goal` in `template` (no frame); ValueError if the template cannot say it."""
        slots = self.slots_for(template, goal, objects)
        if slots is None:
            raise ValueError(f"template {template!r} cannot express goal {goal!r}")
        return self.grammar.render(template, slots, objects, rng)

    def read(self, text: str, objects: Objects, heldout: bool = True) -> Any | None:
        """The goal of the first template matched consistently, or None: the whole text against every template
        (training, then held-out unless `heldout` is False), then each frame's clause against the imperative ones.

        With `heldout=False` this reads exactly what training can say (see `say`), modulo `normalize`."""
        held = self.heldout_templates if heldout else ()
        text = normalize(text)
        attempts = [(text, (*self.training_templates(), *held))]
        attempts += [(clause, (*self.templates, *held)) for clause in unframe(text, self.frames)]
        for clause, templates in attempts:
            for template, slots in self.grammar.parse(templates, clause, objects):
                goal = self.goal_from_slots(template, slots, objects)
                if goal is not None:
                    return goal
        return None

    def parse_instruction(self, text: str, objects: list[ObjectDesc]) -> Any | None:
        """The goal of `text` (see `read`), held-out templates included, or None."""
        return self.read(text, objects)
