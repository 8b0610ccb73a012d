"""`PlanParser`: model text -> `SkillCall` or `PlanError`, resolved against the objects in the scene.

The plan language is a closed grammar (see ARCHITECTURE.md) whose steps are declared per skill in
the registry of `envs.vocab` (`SkillSpec`: verbs, forms, grammar, valid calls; the built-ins are in
`envs/plan_skills.py`): `pick up the X`, `place the X on the Y`, `place the X in the Z zone`,
`place the X on the table`, `push the X to <location>`, `push the X <relation> the Y`,
`push the X <distance> to the <direction>`, `done`. This module is the engine the skills share:
it normalises the text (case, whitespace, punctuation, `step 2.` prefixes, `<obj_j>`), turns the
function-call form (`pick(red cube)`, `place(red cube, blue cube)`, `push(red moon, top left
corner)`) into a sentence, finds the skill by its verb (a verb two skills share, such as "put",
means the skill of the scene's world), hands the words after the verb to that skill's `parse`,
and resolves object phrases (colour, shape, size, Language-Table's short names, `obj j`) for it.
It is tolerant of those forms and strict about everything else. It never evaluates model text and
never raises: any string gives a `SkillCall` or a `PlanError` whose reason says exactly what was
wrong (it is fed back to the planner).

The skills' grammars are word and regex rules per skill rather than a parser generator: a lark
grammar of the same language (Earley, for the free-word object phrases) parsed about 40 times
slower, a LALR one of the canonical forms alone was already slower than this whole parser, and
both would still need this module's error reasons rebuilt from their syntax errors.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.catalogue import (
    COLOR_NAMES,
    SHAPE_NAMES,
    ObjectDesc,
    descs_from_rows,
    same_kind,
    zone_colors_from_rows,
)
from envs.plan_skills import BOARD_SYNONYMS
from envs.vocab import (
    ERROR_KINDS,
    PlanError,
    SkillCall,
    SkillSpec,
    match_verb,
    object_names,
    plain_words,
    skill_spec,
    skill_specs,
    verb_table,
    world_skills,
)

__all__ = [
    "BOARD_SYNONYMS", "ERROR_KINDS", "MAX_STEP_CHARS", "PlanError", "PlanParser", "SceneContext", "parse_step",
    "planning_scene", "valid_calls", "valid_steps",
]

MAX_STEP_CHARS = 300  # longer text is not a plan step (and is not worth scanning)


@dataclass(frozen=True)
class SceneContext:
    """What the parser needs to know about the scene: objects, their names, the held object, zones."""

    objects: tuple[ObjectDesc, ...]
    names: tuple[str, ...] = ()  # canonical names (object_names(objects) when empty)
    world: str | None = None  # "pickplace" / "push"; None allows every skill
    zones: tuple[str, ...] = ()  # colours of the target zones; empty = no zone checks
    held: int | None = None  # index of the object in the gripper
    track_held: bool = False  # whether `held` is known (enables pick/place preconditions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        object.__setattr__(self, "zones", tuple(self.zones))
        object.__setattr__(self, "names", tuple(self.names) or tuple(object_names(self.objects)))
        if len(self.names) != len(self.objects):
            raise ValueError(f"names must name every object: {len(self.objects)} objects, {len(self.names)} names")

    @property
    def skills(self) -> tuple[str, ...]:
        """Skills of this world (`envs.vocab.world_skills`)."""
        return world_skills(self.world)

    @classmethod
    def from_env(cls, env: Any) -> SceneContext:
        """The context of an env's current state (wrapped or not); held object and zones when the world exposes them."""
        env = getattr(env, "unwrapped", env)
        held_fn = getattr(env, "held_object", None)
        held = held_fn() if callable(held_fn) else None
        zones = getattr(env, "zone_colors", None) or getattr(env, "zones", None)  # pick-and-place: colour -> centre
        if callable(zones):
            zones = zones()
        return cls(
            objects=tuple(env.objects),
            names=tuple(env.names),
            world=getattr(env, "world", None),
            zones=tuple(zones or ()),
            held=held,
            track_held=callable(held_fn),
        )

    @classmethod
    def from_obs(cls, obs: Mapping[str, Any], base: SceneContext) -> SceneContext:
        """The scene as an observation's rows show it: what a planner whose rows are not the simulator's
        (`state=estimated`, `noisy`) may name, so that its allowed steps come from what it perceives.

        Objects: `descs_from_rows(obs["objects"])` in row order, with their canonical names (`object_names`);
        zones: `zone_colors_from_rows(obs["zones"])`; world and `track_held`: `base`'s (the env's, from
        `from_env`). The held object is a fact of touch (the fingers close on something) and of the planner's own
        pick, so it comes from `base` too, placed on the row of its colour and shape (and size, where both say one)
        nearest the end effector (`obs["robot"]`). When the hand holds an object no row shows, the scene has
        no objects: nothing can be picked with a full hand and the held object has no name to place it by.
        """
        objects = descs_from_rows(obs["objects"])
        zones = zone_colors_from_rows(obs["zones"])
        held = None
        if base.track_held and base.held is not None:
            held = _seen_held(base.objects[base.held], objects, obs)
            if held is None:
                objects = []
        return cls(objects=tuple(objects), world=base.world, zones=tuple(zones), held=held,
                   track_held=base.track_held)


def planning_scene(env: Any, obs: Mapping[str, Any], scene: SceneContext) -> SceneContext:
    """The scene a planner's allowed steps come from (constrained decoding, the random baseline) at a decision point
    with observation `obs` on `env`, whose simulator scene is `scene` (`from_env`).

    `scene` itself when the env's rows are the simulator's (`state=privileged`, or an env without a state source);
    otherwise (`estimated`, `noisy`) the scene as the observation's rows show it (`SceneContext.from_obs`): the
    planner is constrained to what it perceives, never told by its allowed steps which objects the simulator holds
    (with the camera blanked under `state=estimated` that leaves the object-free steps, `done`). The agent loop
    reads the written step against this scene too, then carries it onto the simulator's objects for execution
    (`agent.grounding.read_step`; a step naming an object the simulator does not hold fails there).
    """
    source = getattr(getattr(env, "unwrapped", env), "state_source", None)
    if source is None or source.name == "privileged":
        return scene
    return SceneContext.from_obs(obs, scene)


def _seen_held(desc: ObjectDesc, seen: Sequence[ObjectDesc], obs: Mapping[str, Any]) -> int | None:
    """The index among `seen` (the present rows of `obs["objects"]`) of the held object `desc`: the row of its
    colour and shape (and size, where both have one) nearest the end effector; None when no row fits."""
    fits = [k for k, d in enumerate(seen) if same_kind(d, desc)]
    if len(fits) <= 1:
        return fits[0] if fits else None
    rows = np.asarray(obs["objects"], dtype=np.float64)
    rows = rows[rows[:, -1] > 0.5]
    ee = np.asarray(obs["robot"], dtype=np.float64)[:3]
    return min(fits, key=lambda k: float(np.linalg.norm(rows[k, :3] - ee)))


# ---- object words ------------------------------------------------------------------------------
_SIZE_WORDS = {"small": "small", "little": "small", "tiny": "small", "large": "large", "big": "large"}
_GENERIC_NOUNS = {"block", "object", "thing", "piece", "one"}  # name an object by colour/size alone
_COLOR_WORDS = {c: c for c in COLOR_NAMES}
_SHAPE_WORDS = {s: s for s in SHAPE_NAMES} | {"cubes": "cube", "square": "cube", "crescent": "moon"}
_REFERRAL = re.compile(r"^(?:obj|object)\s*(\d+)$")
# A referral's number as written, before punctuation is dropped: "obj" / "object", then (after
# spaces or "_") a token that starts with a sign or a digit of any script. Only "1", "2", ... are
# object references; "-1", "0", "01", "1.5", "٣", "³" are malformed (never read as another object).
_REFERRAL_RAW = re.compile(r"(?<![^\W_])(?:obj|object)[\s_]*(?P<num>[-+\u2010-\u2015\u2212]?[^\s,;()<>\[\]{}\"'`]*)")
_REFERRAL_NUMBER = re.compile(r"[1-9][0-9]*", re.ASCII)

_STEP_PREFIX = re.compile(r"^\s*(?:(?:step\s*\d+\s*[.:)\-]?|\d+\s*[.:)]|[-*\u2022>])\s*)+")
_CALL = re.compile(r"^([a-z][a-z ]*?)\s*\((.*)\)$")
_OBJ_TOKEN = re.compile(r"<\s*(obj\s*\d+)\s*>")
_TRAILING = re.compile(r"[\s.!;,:?\"'`]+$")


# ---- the parser ------------------------------------------------------------------------------
class PlanParser:
    """Turns one step of plan text into a `SkillCall` for `ctx`, or a `PlanError`. Never raises.

    It is the `StepReader` the skills' grammars get: `scene` and `resolve(words)`.
    """

    def __init__(self, ctx: SceneContext) -> None:
        self.ctx = ctx

    @property
    def scene(self) -> SceneContext:
        return self.ctx

    def parse(self, text: object) -> SkillCall | PlanError:
        """Parse one step; any input gives a SkillCall or a PlanError."""
        shown = text[:120] if isinstance(text, str) else repr(text)[:120]
        try:
            out = self._parse(text)
        except Exception as err:  # noqa: BLE001 - a parser bug must not end an episode: report it as a parse error
            out = PlanError("parse_error", f"could not parse the step ({type(err).__name__}: {err})")
        if isinstance(out, PlanError):
            return PlanError(out.kind, out.reason, shown)
        return out

    # -- steps --------------------------------------------------------------------------------
    def _parse(self, text: object) -> SkillCall | PlanError:
        if not isinstance(text, str):
            return PlanError("parse_error", f"a step must be text, got {type(text).__name__}")
        if len(text) > MAX_STEP_CHARS:
            return PlanError("parse_error", f"a step has at most {MAX_STEP_CHARS} characters, got {len(text)}")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if not lines:
            return PlanError("parse_error", "empty step; expected e.g. 'pick up the red cube' or 'done'")
        control = next((c for c in lines[0] if c not in "\t\r" and unicodedata.category(c) in ("Cc", "Cf")), None)
        if control is not None:
            return PlanError("parse_error", f"the step holds the control character {control!r}; a step is plain text")
        bad_ref = self._malformed_referral(lines[0].lower())
        if bad_ref is not None:
            return bad_ref
        line = lines[0].lower().replace("_", " ").replace("-", " ").replace("\t", " ")
        line = _OBJ_TOKEN.sub(r"\1", line)
        line = _STEP_PREFIX.sub("", line).strip().strip("\"'`").strip()
        line = _TRAILING.sub("", line)
        m = _CALL.match(line)
        if m:
            sentence = self._call_to_sentence(m.group(1).strip(), m.group(2))
            if isinstance(sentence, PlanError):
                return sentence
            line = sentence
        words = [w for w in plain_words(line) if w != "the"]
        if not words:
            return PlanError("parse_error", f"no step in {text[:60]!r}; expected e.g. 'pick up the red cube' or 'done'")
        return self._sentence(words)

    def _malformed_referral(self, line: str) -> PlanError | None:
        """An `unknown_object` error for the first malformed `obj N` in a (lower-cased) line, else None."""
        for m in _REFERRAL_RAW.finditer(line):
            num = m["num"].rstrip(".!?:")
            if not num or not (num[0] in "-+\u2212" or unicodedata.category(num[0]) in ("Pd", "Nd", "No", "Nl")):
                continue  # "object" used as a noun ("the red object"), not a referral
            if not _REFERRAL_NUMBER.fullmatch(num):
                n = len(self.ctx.objects)
                scene = f"the scene has obj 1 to obj {n}" if n else "the scene has no objects"
                return PlanError("unknown_object", f"{m[0].rstrip('.!?:')[:40]!r} is not an object reference; {scene}")
        return None

    def _skill_of(self, skills: tuple[str, ...]) -> SkillSpec:
        """The skill a verb means here: the first of `skills` this world has, else the first."""
        if len(skills) > 1:
            allowed = self.ctx.skills
            skills = [s for s in skills if s in allowed] or skills
        return skill_spec(skills[0])

    def _call_to_sentence(self, name: str, args_text: str) -> str | PlanError:
        """`place(red cube, blue cube)` -> `place red cube on blue cube` (then parsed as a sentence)."""
        args = [a.strip() for a in args_text.split(",") if a.strip()]
        verb = name.split()[0] if name else ""
        table = verb_table()
        skills = table.get(name, table.get(verb))
        if skills is None:
            return PlanError("unknown_skill", f"unknown skill {name!r}; skills: {list(self.ctx.skills)}")
        spec = self._skill_of(skills)
        if spec.takes_object and not args:
            return PlanError("parse_error", f"{name}(...) needs an object, e.g. {name}(red cube)")
        return spec.call_sentence(args)

    def _sentence(self, words: list[str]) -> SkillCall | PlanError:
        found = match_verb(words)
        if found is None:
            return PlanError("unknown_skill", f"unknown skill {words[0]!r}; a step starts with one of {self._verb_list()}")
        spec, rest = self._skill_of(found[0]), words[found[1]:]
        if spec.name not in self.ctx.skills:
            return PlanError("unknown_skill", f"{spec.name} is not a skill of the {self.ctx.world} world; "
                             f"skills: {list(self.ctx.skills)}")
        if spec.takes_object and not rest:
            x = self.ctx.names[0] if self.ctx.names else "red cube"
            return PlanError("parse_error", f"{spec.name} needs an object, e.g. '{spec.example_step(x)}'")
        return spec.parse(rest, self)

    def _verb_list(self) -> list[str]:
        allowed = set(self.ctx.skills)
        return sorted(v for v, skills in verb_table().items() if not allowed.isdisjoint(skills))

    # -- objects ------------------------------------------------------------------------------
    def resolve(self, words: Sequence[str]) -> int | PlanError:
        """Resolve an object phrase (articles allowed) to a scene index, or say why it names no single object."""
        words = [w for w in words if w not in ("the", "a", "an")]
        phrase = " ".join(words)
        if not words:
            return PlanError("parse_error", "a step names no object")
        n = len(self.ctx.objects)
        if m := _REFERRAL.match(phrase):
            j = int(m[1])
            if not 1 <= j <= n:
                return PlanError("unknown_object", f"there is no obj {j}; the scene has obj 1 to obj {n}")
            return j - 1
        if phrase in self.ctx.names:
            return self.ctx.names.index(phrase)
        color = shape = size = None
        for w in words:
            if w in _COLOR_WORDS and color is None:
                color = _COLOR_WORDS[w]
            elif w in _SHAPE_WORDS and shape is None:
                shape = _SHAPE_WORDS[w]
            elif w in _SIZE_WORDS and size is None:
                size = _SIZE_WORDS[w]
            elif w in _GENERIC_NOUNS:
                continue
            else:
                return PlanError("unknown_object", f"no object called {phrase!r} (unknown word {w!r}); "
                                 f"objects: {self._object_list()}")
        if color is None and shape is None and size is None:
            return PlanError("ambiguous_reference" if n > 1 else "unknown_object",
                             f"{phrase!r} does not say which object; objects: {self._object_list()}")
        found = [i for i, o in enumerate(self.ctx.objects)
                 if (color is None or o.color == color) and (shape is None or o.shape == shape)
                 and (size is None or o.size == size)]
        if not found:
            return PlanError("unknown_object", f"there is no {phrase} in the scene; objects: {self._object_list()}")
        if len(found) > 1:
            options = " or ".join(f"the {self.ctx.names[i]}" for i in found)
            return PlanError("ambiguous_reference", f"'{phrase}' could mean {options}")
        return found[0]

    def _object_list(self) -> str:
        return ", ".join(self.ctx.names) if self.ctx.names else "none"


def parse_step(text: object, ctx: SceneContext) -> SkillCall | PlanError:
    """Parse one step of plan text for a scene (shortcut for PlanParser(ctx).parse)."""
    return PlanParser(ctx).parse(text)


def valid_calls(ctx: SceneContext) -> list[SkillCall]:
    """Every skill call the plan language allows in this scene (and state, when the held object is known).

    The world's skills in registration order, each its `SkillSpec.valid_calls`.
    """
    allowed = ctx.skills
    return [c for spec in skill_specs() if spec.name in allowed for c in spec.valid_calls(ctx)]


def valid_steps(ctx: SceneContext) -> list[str]:
    """Canonical text of every valid step (grammar-constrained decoding, the random-valid baseline)."""
    allowed = ctx.skills
    return [spec.render(c, ctx.names) for spec in skill_specs() if spec.name in allowed for c in spec.valid_calls(ctx)]
