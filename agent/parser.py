"""`PlanParser`: model text -> `SkillCall` or `PlanError`, resolved against the objects in the scene.

The plan language is a closed grammar (see ARCHITECTURE.md): `pick up the X`, `place the X on
the Y`, `place the X in the Z zone`, `place the X on the table`, `push the X to <location>`,
`push the X <relation> the Y`, `push the X <distance> to the <direction>`, `done`. The parser is
tolerant of case, whitespace, punctuation, `step 2.` prefixes, the function-call form
(`pick(red cube)`, `place(red cube, blue cube)`, `push(red moon, top left corner)`), a few verb
synonyms and Language-Table's short names and board-location synonyms; it is strict about
everything else. It never evaluates model text and never raises: any string gives a `SkillCall`
or a `PlanError` whose reason says exactly what was wrong (it is fed back to the planner).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from envs.catalogue import COLOR_NAMES, SHAPE_NAMES, ObjectDesc
from envs.vocab import (
    BOARD_LOCATIONS,
    DIRECTIONS,
    DISTANCES,
    PUSH_RELATIONS,
    SkillCall,
    object_names,
    render_step,
)

ERROR_KINDS: tuple[str, ...] = ("parse_error", "unknown_skill", "unknown_object", "ambiguous_reference", "precondition")
MAX_STEP_CHARS = 300  # longer text is not a plan step (and is not worth scanning)
WORLD_SKILLS: dict[str, tuple[str, ...]] = {"pickplace": ("pick", "place", "done"), "push": ("push", "done")}


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
        """Skills of this world."""
        return WORLD_SKILLS.get(self.world or "", ("pick", "place", "push", "done"))

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


# ---- vocabulary ------------------------------------------------------------------------------
_SIZE_WORDS = {"small": "small", "little": "small", "tiny": "small", "large": "large", "big": "large"}
_GENERIC_NOUNS = {"block", "object", "thing", "piece", "one"}  # name an object by colour/size alone
_COLOR_WORDS = {c: c for c in COLOR_NAMES}
_SHAPE_WORDS = {s: s for s in SHAPE_NAMES} | {"cubes": "cube", "square": "cube", "crescent": "moon"}
_DIST_WORDS = {"slightly": "slightly", "a bit": "slightly", "a little": "slightly", "a little bit": "slightly",
               "far": "far", "a lot": "far", "much": "far", "far away": "far"}
_DIR_WORDS = {"up": "top", "down": "bottom", "upper": "top", "lower": "bottom", "top": "top", "bottom": "bottom",
              "left": "left", "right": "right"}
_REFERRAL = re.compile(r"^(?:obj|object)\s*(\d+)$")
# A referral's number as written, before punctuation is dropped: "obj" / "object", then (after
# spaces or "_") a token that starts with a sign or a digit of any script. Only "1", "2", ... are
# object references; "-1", "0", "01", "1.5", "٣", "³" are malformed (never read as another object).
_REFERRAL_RAW = re.compile(r"(?<![^\W_])(?:obj|object)[\s_]*(?P<num>[-+\u2010-\u2015\u2212]?[^\s,;()<>\[\]{}\"'`]*)")
_REFERRAL_NUMBER = re.compile(r"[1-9][0-9]*", re.ASCII)


def _board_synonyms() -> dict[str, str]:
    """Phrases (without articles) for Language-Table's 9 board locations -> BOARD_LOCATIONS key."""
    vert = {"top": ("top", "upper"), "bottom": ("bottom", "lower")}
    horiz = {"left": ("left",), "right": ("right",)}
    board = ("", " of board", " of table")
    out: dict[str, str] = {}
    for v, vws in vert.items():
        for h, hws in horiz.items():
            for vw in vws:
                for hw in hws:
                    for base in (f"{vw} {hw}", f"{hw} {vw}"):
                        for suffix in ("", " corner", " side"):
                            for b in board:
                                out[f"{base}{suffix}{b}"] = f"{v} {h}"
    for key, words in (vert | horiz).items():
        for w in words:
            for suffix in ("", " edge", " side", " center", " centre", " middle"):
                for b in board:
                    out[f"{w}{suffix}{b}"] = key
    for w in ("center", "centre", "middle"):
        for b in board:
            out[f"{w}{b}"] = "center"
    out["board center"] = out["board centre"] = out["table center"] = "center"
    return out


BOARD_SYNONYMS: dict[str, str] = _board_synonyms()

# Verbs -> skill; "put" and "move" mean place in the pick-and-place world and push in the pushing world.
_VERBS: tuple[tuple[str, str], ...] = (
    ("pick up", "pick"), ("pick", "pick"), ("grasp", "pick"), ("grab", "pick"), ("lift", "pick"),
    ("place", "place"), ("stack", "place"), ("put", "put"), ("set", "place"),
    ("push", "push"), ("slide", "push"), ("move", "put"),
    ("done", "done"), ("finished", "done"), ("finish", "done"), ("stop", "done"),
)
_KNOWN_VERBS = sorted({v for v, _ in _VERBS})
_STEP_PREFIX = re.compile(r"^\s*(?:(?:step\s*\d+\s*[.:)\-]?|\d+\s*[.:)]|[-*\u2022>])\s*)+")
_CALL = re.compile(r"^([a-z][a-z ]*?)\s*\((.*)\)$")
_PUNCT = re.compile(r"[^a-z0-9 ]+")
_PLACE_ZONE = re.compile(r"^(?P<x>.+?) (?:in|into|inside|to|onto|on) (?P<z>[a-z]+) zone$")
_PLACE_TABLE = re.compile(r"^(?P<x>.+?) (?:on top of|onto|on|to|down on) table$")
_PLACE_ON = re.compile(r"^(?P<x>.+?) (?:on top of|onto|on|atop|over) (?P<y>.+)$")
# Words that start a push destination (object phrases never contain them).
_PUSH_DEST_START = {
    "to", "towards", "toward", "into", "in", "at", "next", "near", "close", "beside", "by", "against",
    "left", "right", "top", "bottom", "up", "down", "upper", "lower", "above", "below", "under", "over",
    "slightly", "far", "a", "much", "center", "centre", "middle", "onto",
}


# ---- the parser ------------------------------------------------------------------------------
class PlanParser:
    """Turns one step of plan text into a `SkillCall` for `ctx`, or a `PlanError`. Never raises."""

    def __init__(self, ctx: SceneContext) -> None:
        self.ctx = ctx

    def parse(self, text: object) -> SkillCall | PlanError:
        """Parse one step; any input gives a SkillCall or a PlanError."""
        shown = text[:120] if isinstance(text, str) else repr(text)[:120]
        try:
            out = self._parse(text)
        except Exception as err:  # noqa: BLE001 - a parser bug must not end an episode: report it as a parse error
            out = _Err("parse_error", f"could not parse the step ({type(err).__name__}: {err})")
        if isinstance(out, _Err):
            return PlanError(out.kind, out.reason, shown)
        return out

    # -- steps --------------------------------------------------------------------------------
    def _parse(self, text: object) -> SkillCall | _Err:
        if not isinstance(text, str):
            return _Err("parse_error", f"a step must be text, got {type(text).__name__}")
        if len(text) > MAX_STEP_CHARS:
            return _Err("parse_error", f"a step has at most {MAX_STEP_CHARS} characters, got {len(text)}")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if not lines:
            return _Err("parse_error", "empty step; expected e.g. 'pick up the red cube' or 'done'")
        control = next((c for c in lines[0] if c not in "\t\r" and unicodedata.category(c) in ("Cc", "Cf")), None)
        if control is not None:
            return _Err("parse_error", f"the step holds the control character {control!r}; a step is plain text")
        bad_ref = self._malformed_referral(lines[0].lower())
        if bad_ref is not None:
            return bad_ref
        line = lines[0].lower().replace("_", " ").replace("-", " ").replace("\t", " ")
        line = re.sub(r"<\s*(obj\s*\d+)\s*>", r"\1", line)
        line = _STEP_PREFIX.sub("", line).strip().strip("\"'`").strip()
        line = re.sub(r"[\s.!;,:?\"'`]+$", "", line)
        m = _CALL.match(line)
        if m:
            sentence = self._call_to_sentence(m.group(1).strip(), m.group(2))
            if isinstance(sentence, _Err):
                return sentence
            line = sentence
        words = [w for w in _PUNCT.sub(" ", line).split() if w != "the"]
        if not words:
            return _Err("parse_error", f"no step in {text[:60]!r}; expected e.g. 'pick up the red cube' or 'done'")
        return self._sentence(words)

    def _malformed_referral(self, line: str) -> _Err | None:
        """An `unknown_object` error for the first malformed `obj N` in a (lower-cased) line, else None."""
        for m in _REFERRAL_RAW.finditer(line):
            num = m["num"].rstrip(".!?:")
            if not num or not (num[0] in "-+\u2212" or unicodedata.category(num[0]) in ("Pd", "Nd", "No", "Nl")):
                continue  # "object" used as a noun ("the red object"), not a referral
            if not _REFERRAL_NUMBER.fullmatch(num):
                n = len(self.ctx.objects)
                scene = f"the scene has obj 1 to obj {n}" if n else "the scene has no objects"
                return _Err("unknown_object", f"{m[0].rstrip('.!?:')[:40]!r} is not an object reference; {scene}")
        return None

    def _call_to_sentence(self, name: str, args_text: str) -> str | _Err:
        """`place(red cube, blue cube)` -> `place red cube on blue cube` (then parsed as a sentence)."""
        args = [a.strip() for a in args_text.split(",") if a.strip()]
        verb = name.split()[0] if name else ""
        skill = dict(_VERBS).get(name, dict(_VERBS).get(verb))
        if skill is None:
            return _Err("unknown_skill", f"unknown skill {name!r}; skills: {list(self.ctx.skills)}")
        if skill == "done":
            return "done" if not args else _Err("parse_error", "done takes no arguments")
        if not args:
            return _Err("parse_error", f"{name}(...) needs an object, e.g. {name}(red cube)")
        skill = self._resolve_put(skill)
        first, rest = args[0], args[1:]
        if skill == "pick":
            if rest:
                return _Err("parse_error", f"pick takes one object, got {len(args)} arguments")
            return f"pick up {first}"
        if not rest:
            return _Err("parse_error", f"{skill} needs an object and a destination, e.g. {skill}(red cube, blue cube)")
        dest = " ".join(rest)
        dest_words = _PUNCT.sub(" ", dest).split()
        starts_with_prep = bool(dest_words) and dest_words[0] in _PUSH_DEST_START | {"on", "onto", "in", "into", "atop"}
        if skill == "place":
            if starts_with_prep:
                return f"place {first} {dest}"
            if dest_words and dest_words[-1] == "zone":
                return f"place {first} in {dest}"
            return f"place {first} on {dest}"
        return f"push {first} {dest}" if starts_with_prep else f"push {first} to {dest}"

    def _resolve_put(self, skill: str) -> str:
        if skill != "put":
            return skill
        return "push" if self.ctx.world == "push" else "place"

    def _sentence(self, words: list[str]) -> SkillCall | _Err:
        skill, rest = None, words
        for verb, sk in _VERBS:
            vw = verb.split()
            if words[: len(vw)] == vw:
                skill, rest = sk, words[len(vw):]
                break
        if skill is None:
            return _Err("unknown_skill", f"unknown skill {words[0]!r}; a step starts with one of {self._verb_list()}")
        skill = self._resolve_put(skill)
        if skill not in self.ctx.skills:
            return _Err("unknown_skill", f"{skill} is not a skill of the {self.ctx.world} world; skills: {list(self.ctx.skills)}")
        if skill == "done":
            return SkillCall("done") if not rest else _Err("parse_error", f"done takes nothing after it, got {' '.join(rest)!r}")
        if not rest:
            return _Err("parse_error", f"{skill} needs an object, e.g. '{self._example(skill)}'")
        if skill == "pick":
            return self._pick(rest)
        if skill == "place":
            return self._place(rest)
        return self._push(rest)

    def _verb_list(self) -> list[str]:
        allowed = set(self.ctx.skills)
        return [v for v in _KNOWN_VERBS if self._resolve_put(dict(_VERBS)[v]) in allowed]

    def _example(self, skill: str) -> str:
        x = self.ctx.names[0] if self.ctx.names else "red cube"
        return {"pick": f"pick up the {x}", "place": f"place the {x} on the table",
                "push": f"push the {x} to the center"}[skill]

    def _pick(self, rest: list[str]) -> SkillCall | _Err:
        if rest[-1] == "up":
            rest = rest[:-1]
        obj = self._object(rest)
        if isinstance(obj, _Err):
            return obj
        if self.ctx.track_held and self.ctx.held is not None:
            held = self.ctx.names[self.ctx.held]
            if self.ctx.held == obj:
                return _Err("precondition", f"the {held} is already in the gripper; place it somewhere")
            return _Err("precondition", f"the gripper already holds the {held}; place it before picking up the {self.ctx.names[obj]}")
        return SkillCall("pick", obj=obj)

    def _place(self, rest: list[str]) -> SkillCall | _Err:
        phrase = " ".join(rest)
        kwargs: dict[str, Any]
        if m := _PLACE_ZONE.match(phrase):
            zone = m["z"]
            if zone not in COLOR_NAMES:
                return _Err("unknown_object", f"unknown zone colour {zone!r}; zones: {self._zone_list()}")
            if self.ctx.zones and zone not in self.ctx.zones:
                return _Err("unknown_object", f"there is no {zone} zone; zones: {self._zone_list()}")
            x_words, kwargs = m["x"].split(), {"zone": zone}
        elif m := _PLACE_TABLE.match(phrase):
            x_words, kwargs = m["x"].split(), {"location": "table"}
        elif m := _PLACE_ON.match(phrase):
            target = self._object(m["y"].split())
            if isinstance(target, _Err):
                return target
            x_words, kwargs = m["x"].split(), {"target": target}
        else:
            return _Err("parse_error", f"place needs a destination: 'on the <object>', 'in the <colour> zone' or "
                        f"'on the table', got {phrase!r}")
        obj = self._object(x_words)
        if isinstance(obj, _Err):
            return obj
        if kwargs.get("target") == obj:
            return _Err("precondition", f"cannot place the {self.ctx.names[obj]} on itself")
        if self.ctx.track_held:
            if self.ctx.held is None:
                return _Err("precondition", f"the gripper holds nothing; pick up the {self.ctx.names[obj]} first")
            if self.ctx.held != obj:
                return _Err("precondition", f"the gripper holds the {self.ctx.names[self.ctx.held]}, "
                            f"not the {self.ctx.names[obj]}")
            if kwargs.get("target") == self.ctx.held:
                return _Err("precondition", f"cannot place the {self.ctx.names[obj]} on itself")
        return SkillCall("place", obj=obj, **kwargs)

    def _push(self, rest: list[str]) -> SkillCall | _Err:
        if rest[0] in ("a", "an"):
            rest = rest[1:]
        cut = next((i for i, w in enumerate(rest) if w in _PUSH_DEST_START), len(rest))
        if cut == 0:
            return _Err("parse_error", f"push needs an object first, got {' '.join(rest)!r}")
        if cut == len(rest):
            return _Err("parse_error", f"push needs a destination (a board location, a block or a direction), "
                        f"got only {' '.join(rest)!r}")
        obj = self._object(rest[:cut])
        if isinstance(obj, _Err):
            return obj
        dest = self._push_destination(rest[cut:], obj)
        if isinstance(dest, _Err):
            return dest
        return SkillCall("push", obj=obj, **dest)

    def _push_destination(self, words: list[str], obj: int) -> dict[str, Any] | _Err:
        phrase = " ".join(words)
        # "slightly to the left", "far left", "left slightly"
        dist, core = None, phrase
        for w, d in sorted(_DIST_WORDS.items(), key=lambda kv: -len(kv[0])):
            if core.startswith(w + " "):
                dist, core = d, core[len(w) + 1:]
                break
            if core.endswith(" " + w):
                dist, core = d, core[: -len(w) - 1]
                break
        stripped = re.sub(r"^(?:to|towards|toward|into|in|at|close to|near|onto)\s+", "", core)
        if dist is not None:
            direction = _direction(stripped)
            if direction is None:
                return _Err("parse_error", f"a push by a distance needs a direction in {list(DIRECTIONS)}, got {core!r}")
            return {"direction": direction, "distance": dist}
        if stripped in BOARD_SYNONYMS:
            return {"location": BOARD_SYNONYMS[stripped]}
        m = re.match(r"^(?:to\s+)?(left|right|top|bottom|upper|lower)\s+(?:side\s+)?of\s+(.+)$", core)
        rel_target: tuple[str, str] | None = None
        if m:
            rel_target = (_DIR_WORDS[m[1]] + " of", m[2])
        elif m := re.match(r"^(above|over|below|beneath|under)\s+(.+)$", core):
            rel_target = ("top of" if m[1] in ("above", "over") else "bottom of", m[2])
        elif m := re.match(r"^(?:next to|beside|near|close to|by|to|towards|toward|against|into|onto|at)\s+(.+)$", core):
            rel_target = ("next to", m[1])
        if rel_target is None:
            return _Err("parse_error", f"unknown push destination {phrase!r}; expected a board location "
                        f"(e.g. 'to the top left corner'), a block ('next to the blue cube', 'to the left of the "
                        f"blue cube') or a direction ('slightly to the left')")
        relation, target_text = rel_target
        target = self._object(target_text.split())
        if isinstance(target, _Err):
            return target
        if target == obj:
            return _Err("precondition", f"cannot push the {self.ctx.names[obj]} relative to itself")
        assert relation in PUSH_RELATIONS
        return {"target": target, "relation": relation}

    # -- objects ------------------------------------------------------------------------------
    def _object(self, words: Sequence[str]) -> int | _Err:
        """Resolve an object phrase (articles removed) to a scene index."""
        words = [w for w in words if w not in ("the", "a", "an")]
        phrase = " ".join(words)
        if not words:
            return _Err("parse_error", "a step names no object")
        n = len(self.ctx.objects)
        if m := _REFERRAL.match(phrase):
            j = int(m[1])
            if not 1 <= j <= n:
                return _Err("unknown_object", f"there is no obj {j}; the scene has obj 1 to obj {n}")
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
                return _Err("unknown_object", f"no object called {phrase!r} (unknown word {w!r}); "
                            f"objects: {self._object_list()}")
        if color is None and shape is None and size is None:
            return _Err("ambiguous_reference" if n > 1 else "unknown_object",
                        f"{phrase!r} does not say which object; objects: {self._object_list()}")
        found = [i for i, o in enumerate(self.ctx.objects)
                 if (color is None or o.color == color) and (shape is None or o.shape == shape)
                 and (size is None or o.size == size)]
        if not found:
            return _Err("unknown_object", f"there is no {phrase} in the scene; objects: {self._object_list()}")
        if len(found) > 1:
            options = " or ".join(f"the {self.ctx.names[i]}" for i in found)
            return _Err("ambiguous_reference", f"'{phrase}' could mean {options}")
        return found[0]

    def _object_list(self) -> str:
        return ", ".join(self.ctx.names) if self.ctx.names else "none"

    def _zone_list(self) -> str:
        return ", ".join(self.ctx.zones) if self.ctx.zones else "none known"


@dataclass(frozen=True)
class _Err:
    kind: str
    reason: str


def _direction(text: str) -> str | None:
    """`left`, `top left`, `up`, `upper right` -> a DIRECTIONS entry."""
    parts = [_DIR_WORDS.get(w) for w in text.split()]
    if not parts or None in parts or len(parts) > 2:
        return None
    d = " ".join(parts)  # type: ignore[arg-type]
    if len(parts) == 2 and parts[0] in ("left", "right"):
        d = f"{parts[1]} {parts[0]}"
    return d if d in DIRECTIONS else None


def parse_step(text: object, ctx: SceneContext) -> SkillCall | PlanError:
    """Parse one step of plan text for a scene (shortcut for PlanParser(ctx).parse)."""
    return PlanParser(ctx).parse(text)


def valid_calls(ctx: SceneContext) -> list[SkillCall]:
    """Every skill call the plan language allows in this scene (and state, when the held object is known)."""
    n = len(ctx.objects)
    calls: list[SkillCall] = []
    skills = ctx.skills
    if "pick" in skills and not (ctx.track_held and ctx.held is not None):
        calls += [SkillCall("pick", obj=i) for i in range(n)]
    if "place" in skills:
        movers = [ctx.held] if ctx.track_held and ctx.held is not None else ([] if ctx.track_held else range(n))
        for i in movers:
            calls += [SkillCall("place", obj=i, target=j) for j in range(n) if j != i]
            calls += [SkillCall("place", obj=i, zone=z) for z in ctx.zones]
            calls.append(SkillCall("place", obj=i, location="table"))
    if "push" in skills:
        for i in range(n):
            calls += [SkillCall("push", obj=i, location=loc) for loc in BOARD_LOCATIONS]
            calls += [SkillCall("push", obj=i, target=j, relation=r) for j in range(n) if j != i for r in PUSH_RELATIONS]
            calls += [SkillCall("push", obj=i, direction=d, distance=s) for d in DIRECTIONS for s in DISTANCES]
    calls.append(SkillCall("done"))
    return calls


def valid_steps(ctx: SceneContext) -> list[str]:
    """Canonical text of every valid step (grammar-constrained decoding, the random-valid baseline)."""
    return [render_step(c, ctx.names) for c in valid_calls(ctx)]
