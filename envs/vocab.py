"""The plan vocabulary: `SkillCall`, object names and the canonical text of every plan step.

This is the contract between tasks (which state oracle plans in it), skills (which execute it),
the parser (which turns model text into it) and the data (which stores its text). It lives in
the lowest layer so every other package can import it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from envs.catalogue import ObjectDesc, descs_from_rows

SKILLS: tuple[str, ...] = ("pick", "place", "push", "done")

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


@dataclass(frozen=True)
class SkillCall:
    """One plan step, resolved: which skill, on which object (by scene index), to where."""

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


def _check_call(c: SkillCall) -> str | None:
    """Why a SkillCall is malformed, or None when it is one of the plan language's forms."""
    if c.skill not in SKILLS:
        return f"skill must be one of {list(SKILLS)}"
    if c.skill == "done":
        fields = (c.obj, c.target, c.zone, c.location, c.relation, c.direction, c.distance)
        return None if all(f is None for f in fields) else "done takes no arguments"
    if c.obj is None:
        return f"{c.skill} needs an object"
    if c.target is not None and c.target == c.obj:
        return "an object cannot be its own target"
    if c.skill == "pick":
        rest = (c.target, c.zone, c.location, c.relation, c.direction, c.distance)
        return None if all(f is None for f in rest) else "pick takes only an object"
    if c.skill == "place":
        if c.relation is not None or c.direction is not None or c.distance is not None:
            return "place takes a target object, a zone or the table"
        if c.location is not None and c.location not in PLACE_LOCATIONS:
            return f"place location must be one of {list(PLACE_LOCATIONS)}"
        given = sum(x is not None for x in (c.target, c.zone, c.location))
        return None if given == 1 else "place needs exactly one of target, zone, location"
    # push
    if c.zone is not None:
        return "push takes no zone"
    if c.location is not None:
        if c.location not in BOARD_LOCATIONS:
            return f"push location must be one of {list(BOARD_LOCATIONS)}"
        rest = (c.target, c.relation, c.direction, c.distance)
        return None if all(f is None for f in rest) else "push to a location takes nothing else"
    if c.target is not None:
        if c.relation not in PUSH_RELATIONS:
            return f"push relative to a block needs a relation in {list(PUSH_RELATIONS)}"
        return None if c.direction is None and c.distance is None else "mixed push forms"
    if c.direction in DIRECTIONS and c.distance in DISTANCES and c.relation is None:
        return None
    return "push needs a board location, a target block with a relation, or a direction and distance"


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
    if call.skill == "done":
        return "done"
    x = names[call.obj]
    if call.skill == "pick":
        return f"pick up the {x}"
    if call.skill == "place":
        if call.target is not None:
            return f"place the {x} on the {names[call.target]}"
        if call.zone is not None:
            return f"place the {x} in the {call.zone} zone"
        return f"place the {x} on the table"
    if call.location is not None:
        return f"push the {x} to {BOARD_LOCATIONS[call.location]}"
    if call.target is not None:
        return f"push the {x} {PUSH_RELATIONS[call.relation]} the {names[call.target]}"
    return f"push the {x} {call.distance} to the {call.direction}"


def render_plan(calls: Sequence[SkillCall], names: Sequence[str]) -> list[str]:
    """Text of every step of a plan."""
    return [render_step(c, names) for c in calls]
