"""The plan vocabulary: `SkillCall`, the registry of skills' plan language (`SkillSpec`), object names.

This is the contract between tasks (which state oracle plans in it), skills (which execute it),
the parser (which turns model text into it) and the data (which stores its text). It lives in
the lowest layer so every other package can import it.

A skill's plan language is declared once, by one `SkillSpec` subclass registered with
`@register_skill_spec`: its name, the worlds whose plans use it, its verbs, its forms (typed
argument slots and the canonical text of each: what `render_step` writes and `_check_call`
accepts), its grammar (`parse`: the words after the verb -> a `SkillCall` or a `PlanError`), its
valid-call enumeration for a scene (`valid_calls`: what constrained decoding may write) and the
lines it adds to a tokenizer's training corpus. The executing `Skill` class in `policies/`
registers under the same name. The built-in skills (pick, place, push, done) are declared in
`envs/plan_skills.py`.
"""

from __future__ import annotations

import importlib
import itertools
import operator
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Protocol

import numpy as np

from envs.catalogue import COLOR_NAMES, ObjectDesc, descs_from_rows

# Language-Table's 9 absolute board locations; "top" is the far side from the camera (small x),
# "left" is -y. Canonical phrase used when a step is rendered as text.
BOARD_LOCATIONS: dict[str, str] = {
    "top left": "the top left corner",
    "top": "the top edge",
    "top right": "the top right corner",
    "left": "the left edge",
    "center": "the center",
    "right": "the right edge",
    "bottom left": "the bottom left corner",
    "bottom": "the bottom edge",
    "bottom right": "the bottom right corner",
}
# Push relative to another block: relation -> canonical phrase between the two names.
PUSH_RELATIONS: dict[str, str] = {
    "next to": "next to",
    "left of": "to the left of",
    "right of": "to the right of",
    "top of": "to the top of",
    "bottom of": "to the bottom of",
}
# Push by an offset from where the block is: 8 directions, two distances (Language-Table's near/far).
DIRECTIONS: tuple[str, ...] = (
    "left", "right", "top", "bottom", "top left", "top right", "bottom left", "bottom right"
)
DISTANCES: tuple[str, ...] = ("slightly", "far")
PLACE_LOCATIONS: tuple[str, ...] = ("table",)

ERROR_KINDS: tuple[str, ...] = ("parse_error", "unknown_skill", "unknown_object", "ambiguous_reference", "precondition")


@dataclass(frozen=True)
class SkillCall:
    """One plan step, resolved: which skill, on which object (by scene index), to where.

    The fields are the argument slots every skill draws from (a skill's forms say which it
    takes); `asdict` of a call is its JSON form in logs and traces. Raises ValueError when the
    call is not one of its skill's forms (see `SkillSpec.check`).
    """

    skill: str
    obj: int | None = None  # index of the object acted on (its slot in the scene)
    target: int | None = None  # index of the reference object: place on it / push next to it
    zone: str | None = None  # colour of the target zone: "place the X in the <zone> zone"
    location: str | None = None  # "table" (place) or a key of BOARD_LOCATIONS (push)
    relation: str | None = None  # push relative to `target`: a key of PUSH_RELATIONS
    direction: str | None = None  # push by an offset: one of DIRECTIONS
    distance: str | None = None  # with direction: one of DISTANCES

    def __post_init__(self) -> None:
        problem = _check_call(self)
        if problem:
            raise ValueError(f"invalid SkillCall {self!r}: {problem}")


ARG_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(SkillCall) if f.name != "skill")
OBJECT_FIELDS: tuple[str, ...] = ("obj", "target")  # the fields that hold a scene index (an object slot's field)
_ARGS = operator.attrgetter(*ARG_FIELDS)
_NONES = (None,) * len(ARG_FIELDS)


def _filled(call: SkillCall) -> tuple[bool, ...]:
    """Which argument fields of a call are set, in ARG_FIELDS order."""
    return tuple(map(operator.is_not, _ARGS(call), _NONES))


@dataclass(frozen=True)
class PlanError:
    """Why a step could not become a skill call; `reason` is written back into the planner's history."""

    kind: str  # one of ERROR_KINDS
    reason: str
    text: str = ""  # the step text as it came (truncated)

    def __post_init__(self) -> None:
        if self.kind not in ERROR_KINDS:
            raise ValueError(f"PlanError kind must be one of {list(ERROR_KINDS)}, got {self.kind!r}")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class PlanScene(Protocol):
    """What a skill's grammar and valid calls read of a scene (agent.parser.SceneContext has it)."""

    objects: tuple[ObjectDesc, ...]
    names: tuple[str, ...]  # canonical object names, one per object
    world: str | None
    zones: tuple[str, ...]  # colours of the target zones
    held: int | None  # index of the object in the gripper
    track_held: bool  # whether `held` is known


class StepReader(Protocol):
    """What a skill's `parse` gets from the parser: the scene and object-phrase resolution."""

    @property
    def scene(self) -> PlanScene: ...

    def resolve(self, words: Sequence[str]) -> int | PlanError:
        """The scene index of an object phrase (articles allowed), or why it names no single object."""
        ...


# ---- typed argument slots and forms ----------------------------------------------------------------
SLOT_KINDS: tuple[str, ...] = ("object", "zone", "choice")


@dataclass(frozen=True)
class Slot:
    """A typed argument of a skill: the SkillCall field it fills, the values it takes, how it reads.

    kind "object": a scene index, written as the object's name (a `target` is never the `obj`);
    "zone": a catalogue colour (in a scene: one of its zones), written as the colour;
    "choice": a key of `phrases`, written as its phrase.
    """

    field: str
    kind: str
    phrases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.field not in ARG_FIELDS:
            raise ValueError(f"slot field {self.field!r} is not a SkillCall field; expected one of {list(ARG_FIELDS)}")
        if self.kind not in SLOT_KINDS:
            raise ValueError(f"slot kind {self.kind!r} unknown; expected one of {list(SLOT_KINDS)}")
        if (self.kind == "choice") != bool(self.phrases):
            raise ValueError(f"slot {self.field!r}: a choice slot needs phrases, other kinds take none")
        if self.kind == "object" and self.field not in OBJECT_FIELDS:
            raise ValueError(f"object slot {self.field!r}: objects go in the obj or target field")

    @property
    def domain(self) -> tuple[Any, ...] | None:
        """The values this slot takes without a scene (None for an object: any scene index)."""
        if self.kind == "object":
            return None
        return COLOR_NAMES if self.kind == "zone" else tuple(self.phrases)

    def values(self, scene: PlanScene, obj: int | None) -> list[Any]:
        """Every value of this slot in `scene` for a call on object `obj`, in enumeration order."""
        if self.kind == "object":
            return [j for j in range(len(scene.objects)) if j != obj]
        if self.kind == "zone":
            return list(scene.zones)
        return list(self.phrases)


def choice(slot_field: str, options: Mapping[str, str] | Sequence[str]) -> Slot:
    """A choice slot: `options` is value -> phrase, or values written as themselves."""
    phrases = dict(options) if isinstance(options, Mapping) else {o: o for o in options}
    return Slot(slot_field, "choice", phrases)


OBJECT = Slot("obj", "object")  # the object acted on
TARGET = Slot("target", "object")  # a reference object
ZONE = Slot("zone", "zone")

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Form:
    """One shape of a skill's step: its typed slots and its canonical text, e.g. `place the {obj} on the {target}`.

    Each `{field}` of `text` is a slot's field: an object is written as its name, a choice as its
    phrase, a zone as its colour. The slots' order is the enumeration order of
    `SkillSpec.calls_for` (`obj` outermost). Raises ValueError when text and slots disagree or a
    field repeats.
    """

    text: str
    slots: tuple[Slot, ...] = ()
    _fmt: str = field(init=False, repr=False, compare=False)  # text with positional {} in placeholder order
    _writers: tuple = field(init=False, repr=False, compare=False)  # (field, is object, phrases) per placeholder
    _checks: tuple = field(init=False, repr=False, compare=False)  # (field, allowed values, problem) to check

    def __post_init__(self) -> None:
        object.__setattr__(self, "slots", tuple(self.slots))
        names = [s.field for s in self.slots]
        if len(set(names)) != len(names):
            raise ValueError(f"form {self.text!r}: a slot field repeats in {names}")
        placeholders = _PLACEHOLDER.findall(self.text)
        if sorted(placeholders) != sorted(names):
            raise ValueError(f"form {self.text!r}: its text names {placeholders}, its slots are {names}")
        by_field = {s.field: s for s in self.slots}
        object.__setattr__(self, "_fmt", _PLACEHOLDER.sub("{}", self.text.replace("{}", "")))
        object.__setattr__(self, "_writers", tuple(
            (f, by_field[f].kind == "object", by_field[f].phrases) for f in placeholders))
        object.__setattr__(self, "_checks", tuple(
            (s.field, frozenset(s.domain), f"{s.field} must be one of {list(s.domain)}")
            for s in self.slots if s.domain is not None))

    @property
    def field_set(self) -> frozenset[str]:
        return frozenset(s.field for s in self.slots)

    @property
    def filled(self) -> tuple[bool, ...]:
        """Which SkillCall argument fields a call of this form sets, in ARG_FIELDS order."""
        return tuple(k in self.field_set for k in ARG_FIELDS)

    def problem(self, call: SkillCall) -> str | None:
        """Why a call with this form's fields has a value outside its slot's domain, or None."""
        for slot_field, allowed, problem in self._checks:
            if getattr(call, slot_field) not in allowed:
                return problem
        return None

    def render(self, call: SkillCall, names: Sequence[str]) -> str:
        """The text of `call` (one of this form's calls), naming objects with `names`."""
        if not self.slots:
            return self.text
        values = [getattr(call, f) for f, _, _ in self._writers]
        return self._fmt.format(*[names[v] if is_obj else phrases.get(v, v)
                                  for v, (_, is_obj, phrases) in zip(values, self._writers)])


# ---- skills: the plan-language side -----------------------------------------------------------------
class SkillSpec:
    """The plan language of one skill, declared once; subclass, set the class attributes, register.

    Class attributes: `name` (the SkillCall.skill value, lower case), `verbs` (the words a step of
    this skill starts with; several skills may share one, e.g. "put": the scene's world picks the
    skill), `forms` (its typed argument slots and canonical texts), `worlds` (the worlds whose plans
    use it; None: every world), `example` (a step with `{obj}` shown in "needs an object" errors;
    default: the first form), `ends_plan` (the step ends the episode and no `Skill` executes it).
    Methods to write: `parse` (grammar) and `valid_calls` (what constrained decoding may write);
    `call_sentence` (the function-call form `verb(a, b)`) and `corpus` (tokenizer text) have defaults.
    """

    name: ClassVar[str]
    verbs: ClassVar[tuple[str, ...]]
    forms: ClassVar[tuple[Form, ...]]
    worlds: ClassVar[tuple[str, ...] | None] = None
    example: ClassVar[str] = ""
    ends_plan: ClassVar[bool] = False

    def __init__(self) -> None:
        self._by_filled = {f.filled: f for f in self.forms}
        self.takes_object = any("obj" in f.field_set for f in self.forms)  # its steps name an object

    # -- calls and their text ---------------------------------------------------------------------------
    def form_of(self, call: SkillCall) -> Form | None:
        """The form whose slots are exactly the call's filled fields, or None."""
        return self._by_filled.get(_filled(call))

    def check(self, call: SkillCall) -> str | None:
        """Why `call` is not one of this skill's forms, or None when it is."""
        form = self.form_of(call)
        if form is None:
            given = [k for k in ARG_FIELDS if getattr(call, k) is not None]
            shapes = " | ".join("(" + ", ".join(s.field for s in f.slots) + ")" for f in self.forms)
            return f"{self.name} takes {shapes}; got ({', '.join(given)})"
        if call.target is not None and call.target == call.obj:
            return "an object cannot be its own target"
        problem = form.problem(call)
        return f"{self.name}: {problem}" if problem else None

    def render(self, call: SkillCall, names: Sequence[str]) -> str:
        """The canonical text of `call`, naming objects with `names` (from `object_names`)."""
        return self._by_filled[_filled(call)].render(call, names)  # a SkillCall is one of its forms when made

    def calls_for(self, scene: PlanScene, obj: int | None) -> list[SkillCall]:
        """Every call of every form on object `obj` (None for a skill without one) in `scene`.

        Forms in declaration order, then the values of their other slots in slot order.
        """
        out = []
        for form in self.forms:
            if ("obj" in form.field_set) != (obj is not None):
                continue
            others = [s for s in form.slots if s.field != "obj"]
            keys = [s.field for s in others]
            base = {} if obj is None else {"obj": obj}
            for values in itertools.product(*(s.values(scene, obj) for s in others)):
                out.append(SkillCall(self.name, **base, **dict(zip(keys, values))))
        return out

    def example_step(self, name: str) -> str:
        """A step of this skill on the object `name`, for error messages."""
        if self.example:
            return self.example.format(obj=name)
        form = self.forms[0]
        return form.text.format(**{s.field: (name if s.field == "obj" else f"<{s.field}>") for s in form.slots})

    # -- what every skill writes ---------------------------------------------------------------------------
    def parse(self, words: list[str], reader: StepReader) -> SkillCall | PlanError:
        """The call for the words after the verb (lower case, punctuation and `the` removed), or why not.

        Skills that take an object get at least one word. Must never raise for any words.
        """
        raise NotImplementedError

    def valid_calls(self, scene: PlanScene) -> list[SkillCall]:
        """Every call of this skill the plan language allows in `scene` (and state, when `held` is known)."""
        raise NotImplementedError

    # -- defaults ----------------------------------------------------------------------------------------
    def call_sentence(self, args: list[str]) -> str | PlanError:
        """The function-call form `verb(a, b, ...)` (its arguments, stripped) as a sentence to parse.

        Default: `<first verb> a b ...`. Skills that take an object get at least one argument.
        """
        return " ".join([self.verbs[0], *args])

    def corpus(self, obj_name: str | None, names: Sequence[str]) -> list[str]:
        """Steps of this skill for a tokenizer's training text: those acting on `obj_name` (None for a skill
        without an object), other objects named from `names[:4]`, zones from every colour."""
        pool = [n for n in names[:4] if n != obj_name]
        out = []
        for form in self.forms:
            if ("obj" in form.field_set) != (obj_name is not None):
                continue
            others = [s for s in form.slots if s.field != "obj"]
            texts = [pool if s.kind == "object" else list(COLOR_NAMES if s.kind == "zone" else s.phrases.values())
                     for s in others]
            for values in itertools.product(*texts):
                out.append(form.text.format(obj=obj_name, **{s.field: v for s, v in zip(others, values)}))
        return out


_SPECS: dict[str, SkillSpec] = {}
_DERIVED: dict[Any, Any] = {}  # verb tables and world skills, cleared when the registry changes
_BUILTINS = "envs.plan_skills"
_REQUIRED = ("parse", "valid_calls")


def _specs() -> dict[str, SkillSpec]:
    """The registry, with the built-in skills registered first (on first use)."""
    if _BUILTINS not in sys.modules:
        importlib.import_module(_BUILTINS)
    return _SPECS


def register_skill_spec(cls: type[SkillSpec]) -> type[SkillSpec]:
    """Class decorator: add a skill's plan language to the registry (after the built-ins, in order).

    Raises ValueError, naming the class and what is missing, when the name is taken or not a
    lower-case word, verbs or forms are missing, or `parse` / `valid_calls` are not written
    (a skill without `valid_calls` could never be written under constrained decoding).
    """
    known = _specs()
    where = f"skill spec {cls.__name__}"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z_]*", name):
        raise ValueError(f"{where}: name must be a lower-case word, got {name!r}")
    if name in known:
        raise ValueError(f"{where}: skill {name!r} is already registered; registered skills: {list(known)}")
    verbs = getattr(cls, "verbs", ())
    if not verbs or not all(isinstance(v, str) and v == " ".join(v.split()) and v == v.lower() and v for v in verbs):
        raise ValueError(f"{where}: verbs must be a non-empty tuple of lower-case words, got {verbs!r}")
    forms = getattr(cls, "forms", ())
    if not forms or not all(isinstance(f, Form) for f in forms):
        raise ValueError(f"{where}: forms must be a non-empty tuple of Form, got {forms!r}")
    if cls.worlds is not None and not (isinstance(cls.worlds, tuple) and all(isinstance(w, str) for w in cls.worlds)):
        raise ValueError(f"{where}: worlds must be a tuple of world names or None, got {cls.worlds!r}")
    missing = [m for m in _REQUIRED if getattr(cls, m) is getattr(SkillSpec, m)]
    if missing:
        raise ValueError(f"{where} ({name!r}) does not define {missing}: every skill declares its grammar (parse) "
                         f"and its valid calls in a scene (valid_calls), or constrained decoding can never write it")
    known[name] = cls()
    _DERIVED.clear()
    return cls


def unregister_skill_spec(name: str) -> None:
    """Remove a registered skill (a test that declared its own skill undoes it). Raises ValueError if unknown."""
    known = _specs()
    if name not in known:
        raise ValueError(f"unknown skill {name!r}; registered skills: {list(known)}")
    del known[name]
    _DERIVED.clear()


def skill_spec(name: str) -> SkillSpec:
    """The registered plan language of a skill; an unknown name lists the registered ones (ValueError)."""
    spec = _specs().get(name)
    if spec is None:
        raise ValueError(f"unknown skill {name!r}; registered skills: {list(_SPECS)}")
    return spec


def skill_specs() -> tuple[SkillSpec, ...]:
    """Every registered skill, in registration order (the built-ins first)."""
    return tuple(_specs().values())


def skill_names() -> tuple[str, ...]:
    """Names of the registered skills, in registration order."""
    return tuple(_specs())


def world_skills(world: str | None) -> tuple[str, ...]:
    """The skills of a world's plans, in registration order; every skill for None or a world no skill names."""
    key = ("world", world)
    if key not in _DERIVED:
        specs = _specs().values()
        if world is None or not any(s.worlds is not None and world in s.worlds for s in specs):
            _DERIVED[key] = tuple(s.name for s in specs)
        else:
            _DERIVED[key] = tuple(s.name for s in specs if s.worlds is None or world in s.worlds)
    return _DERIVED[key]


def verb_table() -> dict[str, tuple[str, ...]]:
    """Verb -> the skills it starts a step of, in registration order."""
    if "verbs" not in _DERIVED:
        table: dict[str, tuple[str, ...]] = {}
        for spec in _specs().values():
            for verb in spec.verbs:
                table[verb] = (*table.get(verb, ()), spec.name)
        _DERIVED["verbs"] = table
        _DERIVED["verb_words"] = max(len(v.split()) for v in table)
    return _DERIVED["verbs"]


def match_verb(words: Sequence[str]) -> tuple[tuple[str, ...], int] | None:
    """(the skills of the longest verb that starts `words`, how many words it has), or None."""
    table = verb_table()
    for k in range(min(_DERIVED["verb_words"], len(words)), 0, -1):
        skills = table.get(" ".join(words[:k]))
        if skills is not None:
            return skills, k
    return None


def _check_call(c: SkillCall) -> str | None:
    """Why a SkillCall is malformed, or None when it is one of its skill's forms."""
    spec = _specs().get(c.skill)
    if spec is None:
        return f"skill must be one of {list(_specs())}"
    return spec.check(c)


_PUNCT = re.compile(r"[^a-z0-9 ]+")


def plain_words(text: str) -> list[str]:
    """Lower-case text as words: every character but a-z, 0-9 and space becomes a space."""
    return _PUNCT.sub(" ", text).split()


# ---- object names and step text -------------------------------------------------------------------------
def object_names(objects: Sequence[ObjectDesc]) -> list[str]:
    """A unique name per object: `<colour> <shape>`, with `small`/`large` only when that disambiguates.

    Objects that even size cannot tell apart fall back to their referral name `obj j`.
    """
    base = [f"{o.color} {o.shape}" for o in objects]
    sized = [f"{o.size} {b}" if o.size else b for o, b in zip(objects, base)]
    base_count, sized_count = Counter(base), Counter(sized)
    names = []
    for i, (b, s) in enumerate(zip(base, sized)):
        if base_count[b] == 1:
            names.append(b)
        elif sized_count[s] == 1 and objects[i].size is not None:
            names.append(s)
        else:
            names.append(referral_name(i))
    return names


def row_names(rows: np.ndarray) -> list[str]:
    """`object_names` of the present object rows of a state estimate: the names a scene's plan steps use."""
    return object_names(descs_from_rows(rows))


def referral_name(index: int) -> str:
    """PaLM-E's entity referral for the object in slot `index`: `obj 1` is slot 0."""
    return f"obj {index + 1}"


def render_step(call: SkillCall, names: Sequence[str]) -> str:
    """The canonical text of a plan step, naming objects with `names` (from `object_names`)."""
    return skill_spec(call.skill).render(call, names)


def render_plan(calls: Sequence[SkillCall], names: Sequence[str]) -> list[str]:
    """Text of every step of a plan."""
    return [render_step(c, names) for c in calls]
