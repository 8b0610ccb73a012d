"""The built-in skills' plan language: `pick`, `place` (pick-and-place world), `push` (pushing world), `done`.

One `SkillSpec` per skill: its forms (typed slots and canonical text), its grammar (`parse`, tolerant
of Language-Table's synonyms), its valid calls in a scene and its tokenizer corpus. The executing
`Skill` classes live in `policies/pickplace.py` and `policies/push.py`. See `envs.vocab.SkillSpec`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from envs.catalogue import COLOR_NAMES
from envs.vocab import (
    BOARD_LOCATIONS,
    DIRECTIONS,
    DISTANCES,
    OBJECT,
    PLACE_LOCATIONS,
    PUSH_RELATIONS,
    TARGET,
    ZONE,
    Form,
    PlanError,
    PlanScene,
    SkillCall,
    SkillSpec,
    StepReader,
    choice,
    plain_words,
    register_skill_spec,
)

# Words that start a push destination (object phrases never contain them).
_PUSH_DEST_START = {
    "to", "towards", "toward", "into", "in", "at", "next", "near", "close", "beside", "by", "against",
    "left", "right", "top", "bottom", "up", "down", "upper", "lower", "above", "below", "under", "over",
    "slightly", "far", "a", "much", "center", "centre", "middle", "onto",
}
# In the function-call form, a second argument starting with one of these is a destination phrase as written.
_CALL_DEST_START = _PUSH_DEST_START | {"on", "onto", "in", "into", "atop"}
_DIST_WORDS = {"slightly": "slightly", "a bit": "slightly", "a little": "slightly", "a little bit": "slightly",
               "far": "far", "a lot": "far", "much": "far", "far away": "far"}
_DIST_LONGEST_FIRST = sorted(_DIST_WORDS.items(), key=lambda kv: -len(kv[0]))
_DIR_WORDS = {"up": "top", "down": "bottom", "upper": "top", "lower": "bottom", "top": "top", "bottom": "bottom",
              "left": "left", "right": "right"}


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


def _holding(scene: PlanScene) -> bool:
    return scene.track_held and scene.held is not None


def _destination_args(name: str, args: list[str]) -> tuple[str, str, bool] | PlanError:
    """`name(x, dest...)` -> (x, dest, whether dest starts with a preposition), or the error for a missing dest."""
    if len(args) < 2:
        return PlanError("parse_error", f"{name} needs an object and a destination, e.g. {name}(red cube, blue cube)")
    dest = " ".join(args[1:])
    dest_words = plain_words(dest)
    return args[0], dest, bool(dest_words) and dest_words[0] in _CALL_DEST_START


# ---- pick -------------------------------------------------------------------------------------------------------
@register_skill_spec
class PickSpec(SkillSpec):
    """`pick up the X`: with an empty gripper (when the held object is known)."""

    name = "pick"
    worlds = ("pickplace",)
    verbs = ("pick up", "pick", "grasp", "grab", "lift")
    forms = (Form("pick up the {obj}", (OBJECT,)),)

    def call_sentence(self, args: list[str]) -> str | PlanError:
        if len(args) > 1:
            return PlanError("parse_error", f"pick takes one object, got {len(args)} arguments")
        return f"pick up {args[0]}"

    def parse(self, words: list[str], reader: StepReader) -> SkillCall | PlanError:
        if words[-1] == "up":
            words = words[:-1]
        obj = reader.resolve(words)
        if isinstance(obj, PlanError):
            return obj
        scene = reader.scene
        if _holding(scene):
            held = scene.names[scene.held]
            if scene.held == obj:
                return PlanError("precondition", f"the {held} is already in the gripper; place it somewhere")
            return PlanError("precondition", f"the gripper already holds the {held}; place it before picking up "
                             f"the {scene.names[obj]}")
        return SkillCall("pick", obj=obj)

    def valid_calls(self, scene: PlanScene) -> list[SkillCall]:
        if _holding(scene):
            return []
        return [c for i in range(len(scene.objects)) for c in self.calls_for(scene, i)]


# ---- place ------------------------------------------------------------------------------------------------------
_PLACE_ZONE = re.compile(r"^(?P<x>.+?) (?:in|into|inside|to|onto|on) (?P<z>[a-z]+) zone$")
_PLACE_TABLE = re.compile(r"^(?P<x>.+?) (?:on top of|onto|on|to|down on) table$")
_PLACE_ON = re.compile(r"^(?P<x>.+?) (?:on top of|onto|on|atop|over) (?P<y>.+)$")


@register_skill_spec
class PlaceSpec(SkillSpec):
    """`place the X on the Y | in the Z zone | on the table`: the held object (when the held object is known)."""

    name = "place"
    worlds = ("pickplace",)
    verbs = ("place", "stack", "put", "set", "move")
    forms = (
        Form("place the {obj} on the {target}", (OBJECT, TARGET)),
        Form("place the {obj} in the {zone} zone", (OBJECT, ZONE)),
        Form("place the {obj} on the {location}", (OBJECT, choice("location", PLACE_LOCATIONS))),
    )
    example = "place the {obj} on the table"

    def call_sentence(self, args: list[str]) -> str | PlanError:
        split = _destination_args(self.name, args)
        if isinstance(split, PlanError):
            return split
        first, dest, starts_with_prep = split
        if starts_with_prep:
            return f"place {first} {dest}"
        if plain_words(dest)[-1:] == ["zone"]:
            return f"place {first} in {dest}"
        return f"place {first} on {dest}"

    def parse(self, words: list[str], reader: StepReader) -> SkillCall | PlanError:
        scene = reader.scene
        phrase = " ".join(words)
        kwargs: dict[str, Any]
        if m := _PLACE_ZONE.match(phrase):
            zone = m["z"]
            if zone not in COLOR_NAMES:
                return PlanError("unknown_object", f"unknown zone colour {zone!r}; zones: {_zone_list(scene)}")
            if scene.zones and zone not in scene.zones:
                return PlanError("unknown_object", f"there is no {zone} zone; zones: {_zone_list(scene)}")
            x_words, kwargs = m["x"].split(), {"zone": zone}
        elif m := _PLACE_TABLE.match(phrase):
            x_words, kwargs = m["x"].split(), {"location": "table"}
        elif m := _PLACE_ON.match(phrase):
            target = reader.resolve(m["y"].split())
            if isinstance(target, PlanError):
                return target
            x_words, kwargs = m["x"].split(), {"target": target}
        else:
            return PlanError("parse_error", f"place needs a destination: 'on the <object>', 'in the <colour> zone' "
                             f"or 'on the table', got {phrase!r}")
        obj = reader.resolve(x_words)
        if isinstance(obj, PlanError):
            return obj
        if kwargs.get("target") == obj:
            return PlanError("precondition", f"cannot place the {scene.names[obj]} on itself")
        if scene.track_held:
            if scene.held is None:
                return PlanError("precondition", f"the gripper holds nothing; pick up the {scene.names[obj]} first")
            if scene.held != obj:
                return PlanError("precondition", f"the gripper holds the {scene.names[scene.held]}, "
                                 f"not the {scene.names[obj]}")
        return SkillCall("place", obj=obj, **kwargs)

    def valid_calls(self, scene: PlanScene) -> list[SkillCall]:
        if scene.track_held:
            movers = [] if scene.held is None else [scene.held]
        else:
            movers = range(len(scene.objects))
        return [c for i in movers for c in self.calls_for(scene, i)]

    def corpus(self, obj_name: str | None, names: Sequence[str]) -> list[str]:
        return [f"place the {obj_name} on the table", *(f"place the {obj_name} in the {c} zone" for c in COLOR_NAMES)]


def _zone_list(scene: PlanScene) -> str:
    return ", ".join(scene.zones) if scene.zones else "none known"


# ---- push -------------------------------------------------------------------------------------------------------
_TO_WORDS = re.compile(r"^(?:to|towards|toward|into|in|at|close to|near|onto)\s+")
_SIDE_OF = re.compile(r"^(?:to\s+)?(left|right|top|bottom|upper|lower)\s+(?:side\s+)?of\s+(.+)$")
_ABOVE_BELOW = re.compile(r"^(above|over|below|beneath|under)\s+(.+)$")
_NEXT_TO = re.compile(r"^(?:next to|beside|near|close to|by|to|towards|toward|against|into|onto|at)\s+(.+)$")


@register_skill_spec
class PushSpec(SkillSpec):
    """`push the X to <location>`, `push the X <relation> the Y`, `push the X <distance> to the <direction>`."""

    name = "push"
    worlds = ("push",)
    verbs = ("push", "slide", "put", "move")
    forms = (
        Form("push the {obj} to {location}", (OBJECT, choice("location", BOARD_LOCATIONS))),
        Form("push the {obj} {relation} the {target}", (OBJECT, TARGET, choice("relation", PUSH_RELATIONS))),
        Form("push the {obj} {distance} to the {direction}",
             (OBJECT, choice("direction", DIRECTIONS), choice("distance", DISTANCES))),
    )
    example = "push the {obj} to the center"

    def call_sentence(self, args: list[str]) -> str | PlanError:
        split = _destination_args(self.name, args)
        if isinstance(split, PlanError):
            return split
        first, dest, starts_with_prep = split
        return f"push {first} {dest}" if starts_with_prep else f"push {first} to {dest}"

    def parse(self, words: list[str], reader: StepReader) -> SkillCall | PlanError:
        if words[0] in ("a", "an"):
            words = words[1:]
        cut = next((i for i, w in enumerate(words) if w in _PUSH_DEST_START), len(words))
        if cut == 0:
            return PlanError("parse_error", f"push needs an object first, got {' '.join(words)!r}")
        if cut == len(words):
            return PlanError("parse_error", f"push needs a destination (a board location, a block or a direction), "
                             f"got only {' '.join(words)!r}")
        obj = reader.resolve(words[:cut])
        if isinstance(obj, PlanError):
            return obj
        dest = self._destination(words[cut:], obj, reader)
        if isinstance(dest, PlanError):
            return dest
        return SkillCall("push", obj=obj, **dest)

    @staticmethod
    def _destination(words: list[str], obj: int, reader: StepReader) -> dict[str, Any] | PlanError:
        phrase = " ".join(words)
        # "slightly to the left", "far left", "left slightly"
        dist, core = None, phrase
        for w, d in _DIST_LONGEST_FIRST:
            if core.startswith(w + " "):
                dist, core = d, core[len(w) + 1:]
                break
            if core.endswith(" " + w):
                dist, core = d, core[: -len(w) - 1]
                break
        stripped = _TO_WORDS.sub("", core)
        if dist is not None:
            direction = _direction(stripped)
            if direction is None:
                return PlanError("parse_error", f"a push by a distance needs a direction in {list(DIRECTIONS)}, "
                                 f"got {core!r}")
            return {"direction": direction, "distance": dist}
        if stripped in BOARD_SYNONYMS:
            return {"location": BOARD_SYNONYMS[stripped]}
        rel_target: tuple[str, str] | None = None
        if m := _SIDE_OF.match(core):
            rel_target = (_DIR_WORDS[m[1]] + " of", m[2])
        elif m := _ABOVE_BELOW.match(core):
            rel_target = ("top of" if m[1] in ("above", "over") else "bottom of", m[2])
        elif m := _NEXT_TO.match(core):
            rel_target = ("next to", m[1])
        if rel_target is None:
            return PlanError("parse_error", f"unknown push destination {phrase!r}; expected a board location "
                             f"(e.g. 'to the top left corner'), a block ('next to the blue cube', 'to the left of "
                             f"the blue cube') or a direction ('slightly to the left')")
        relation, target_text = rel_target
        target = reader.resolve(target_text.split())
        if isinstance(target, PlanError):
            return target
        if target == obj:
            return PlanError("precondition", f"cannot push the {reader.scene.names[obj]} relative to itself")
        return {"target": target, "relation": relation}

    def valid_calls(self, scene: PlanScene) -> list[SkillCall]:
        return [c for i in range(len(scene.objects)) for c in self.calls_for(scene, i)]

    def corpus(self, obj_name: str | None, names: Sequence[str]) -> list[str]:
        n = obj_name
        return [
            *(f"push the {n} to {where}" for where in BOARD_LOCATIONS.values()),
            *(f"push the {n} {d} to the {dr}" for d in DISTANCES for dr in DIRECTIONS),
            *(f"push the {n} {rel} the {m}" for rel in PUSH_RELATIONS.values() for m in names[:4]),
        ]


def _direction(text: str) -> str | None:
    """`left`, `top left`, `up`, `upper right` -> a DIRECTIONS entry."""
    parts = [_DIR_WORDS.get(w) for w in text.split()]
    if not parts or None in parts or len(parts) > 2:
        return None
    d = " ".join(parts)  # type: ignore[arg-type]
    if len(parts) == 2 and parts[0] in ("left", "right"):
        d = f"{parts[1]} {parts[0]}"
    return d if d in DIRECTIONS else None


# ---- done -------------------------------------------------------------------------------------------------------
@register_skill_spec
class DoneSpec(SkillSpec):
    """`done`: the plan is finished (every world; no skill executes it)."""

    name = "done"
    verbs = ("done", "finished", "finish", "stop")
    forms = (Form("done"),)
    ends_plan = True

    def call_sentence(self, args: list[str]) -> str | PlanError:
        return "done" if not args else PlanError("parse_error", "done takes no arguments")

    def parse(self, words: list[str], reader: StepReader) -> SkillCall | PlanError:
        if words:
            return PlanError("parse_error", f"done takes nothing after it, got {' '.join(words)!r}")
        return SkillCall("done")

    def valid_calls(self, scene: PlanScene) -> list[SkillCall]:
        return self.calls_for(scene, None)
