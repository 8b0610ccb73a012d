"""Tasks of the pushing world: Language-Table's single-step families and PaLM-E's long-horizon tasks.

Single-step (templates, synonyms and thresholds as in Language-Table): `block2block`,
`block2absolutelocation`, `block2relativelocation`, `block2block_relative_location`, `separate`.
Long-horizon (PaLM-E Table 2): `corner_to_same_color` (T1), `sort_corners` (T2),
`side_together` (T3), plus `all_to_center` and `color_to_location`.

Every oracle plan is a list of push steps computed from the CURRENT scene, so the oracle planner
can call it again after any step (failed, partial or successful) and continue correctly.
Goals that refer to the scene at the moment the instruction is given (the start of a relative
push, the block closest to a corner, the blocks on one side) are fixed by `bind(env, goal)`.
"""

from __future__ import annotations

import itertools
import re
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from envs.catalogue import ObjectDesc
from envs.push import EFFECTOR_START, WORKSPACE_BUFFER, X_MAX, X_MIN, Y_MAX, Y_MIN
from envs.push_blocks import (
    BLOCK_COLORS,
    BLOCK_WIDTH,
    block_synonyms,
    color_counts,
    sample_blocks,
)
from envs.tasks.base import Task, TaskInstance, register_task
from envs.vocab import DIRECTIONS, SkillCall, object_names, referral_name

if TYPE_CHECKING:
    from envs.push import PushEnv

# ---- Language-Table geometry and thresholds ------------------------------------------------------
# Absolute locations are offset towards the robot by 0.025 m in x, as in Language-Table.
_LX_MIN, _LX_MAX = X_MIN - 0.025, X_MAX - 0.025
_LX_C, _LY_C = (_LX_MIN + _LX_MAX) / 2, (Y_MIN + Y_MAX) / 2
LOCATION_POINTS: dict[str, np.ndarray] = {
    "top left": np.array([_LX_MIN, Y_MIN]),
    "top": np.array([_LX_MIN, _LY_C]),
    "top right": np.array([_LX_MIN, Y_MAX]),
    "left": np.array([_LX_C, Y_MIN]),
    "center": np.array([_LX_C, _LY_C]),
    "right": np.array([_LX_C, Y_MAX]),
    "bottom left": np.array([_LX_MAX, Y_MIN]),
    "bottom": np.array([_LX_MAX, _LY_C]),
    "bottom right": np.array([_LX_MAX, Y_MAX]),
}
CORNERS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
LOCATION_DIST = 0.115  # block2absolutelocation success radius (m)
CENTER_DIST = 0.1  # ... for the center
BLOCK2BLOCK_DIST = 0.05  # block2block: centre distance
RELATIVE_DIST = 0.1  # block2relativelocation: distance to the offset point
MAGNITUDES: dict[str, float] = {"slightly": 0.15, "far": 0.25}  # Language-Table's near / far
REL_OFFSET = 0.08  # block2block_relative_location: offset of the target point from the reference block
REL_DIST = 0.04  # ... success radius around the line from 0.5x to 1.1x the offset
DRAG_DIST = 0.05  # ... the reference block may not be dragged further
SEPARATE_OFFSET = 0.1  # separate: target 0.1 m from the avoided block, away from it
SEPARATE_DIST = 0.025  # ... success radius
JOINED_DIST = 0.08  # blocks closer than this are "together" (Language-Table's separate threshold)
MIN_GAP = 0.0175  # reset: free space between blocks' nominal footprints
MIN_CENTRE_DIST = BLOCK_WIDTH + MIN_GAP
ARM_CLEARANCE = 0.06 + BLOCK_WIDTH / 2  # reset: blocks start this far from the effector
SIDE_MARGIN = 0.03  # side_together: blocks start at least this far from the midline y = 0

# Unit vectors of the plan language's directions: "top" is -x (towards the robot base), "left" is -y.
_AXES = {
    "top": np.array([-1.0, 0]),
    "bottom": np.array([1.0, 0]),
    "left": np.array([0, -1.0]),
    "right": np.array([0, 1.0]),
}
DIRECTION_VECTORS: dict[str, np.ndarray] = {
    d: (lambda v: v / np.linalg.norm(v))(sum(_AXES[w] for w in d.split())) for d in DIRECTIONS
}
RELATION_VECTORS: dict[str, np.ndarray] = {f"{d} of": _AXES[d] for d in ("left", "right", "top", "bottom")}


def location_radius(location: str) -> float:
    """Success radius of a board location (Language-Table: 0.1 m for the center, else 0.115 m)."""
    return CENTER_DIST if location == "center" else LOCATION_DIST


def in_location(xy: np.ndarray, location: str, margin: float = 0.0) -> bool:
    """Whether a block at `xy` counts as being at a board location."""
    return float(np.linalg.norm(xy - LOCATION_POINTS[location])) < location_radius(location) - margin


def inside_bounds(xy: np.ndarray, buffer: float = WORKSPACE_BUFFER) -> bool:
    """Language-Table's check that a target point lies inside the buffered board."""
    return bool(X_MIN + buffer < xy[0] < X_MAX - buffer and Y_MIN + buffer < xy[1] < Y_MAX - buffer)


def offset_point(start: np.ndarray, direction: str, distance: str) -> np.ndarray:
    """Target of 'push X <distance> to the <direction>' from the block's start position."""
    return start + MAGNITUDES[distance] * DIRECTION_VECTORS[direction]


def relation_ok(xy: np.ndarray, ref_xy: np.ndarray, relation: str) -> bool:
    """Language-Table's block2block_relative_location test: within 0.04 m of the line from 0.5x to 1.1x
    the 0.08 m offset from the reference block ('next to': centre distance < 0.05 m)."""
    if relation == "next to":
        return float(np.linalg.norm(xy - ref_xy)) < BLOCK2BLOCK_DIST
    off = REL_OFFSET * RELATION_VECTORS[relation]
    pts = ref_xy + np.linspace(0.5, 1.1, 10)[:, None] * off
    return bool(np.min(np.linalg.norm(pts - xy, axis=1)) < REL_DIST)


def separated(xy: np.ndarray, avoid_xy: np.ndarray) -> bool:
    """Language-Table's separate test: within 0.025 m of the point 0.1 m away from the avoided block."""
    return abs(float(np.linalg.norm(xy - avoid_xy)) - SEPARATE_OFFSET) < SEPARATE_DIST


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else np.array([1.0, 0.0])


# ---- language: synonyms, templates, parsing ----------------------------------------------------
PUSH_VERBS = ("push", "move", "slide", "put")
PREPOSITIONS = ("to", "towards", "close to", "next to")
LOCATION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "top": ("top side", "top", "top of the board"),
    "top left": ("top left of the board", "top left", "upper left corner", "top left corner"),
    "top right": ("top right of the board", "top right", "upper right corner", "top right corner"),
    "center": ("middle of the board", "center of the board", "center", "middle"),
    "left": ("left side of the board", "center left", "left side"),
    "right": ("right side of the board", "center right", "right side"),
    "bottom": ("bottom side", "bottom", "bottom of the board"),
    "bottom left": ("bottom left of the board", "bottom left", "lower left corner", "bottom left corner"),
    "bottom right": (
        "bottom right of the board",
        "bottom right",
        "lower right corner",
        "bottom right corner",
    ),
}
_AXIS_WORDS = {
    "top": ("up", "upwards"),
    "bottom": ("down", "downwards"),
    "left": ("to the left", "left"),
    "right": ("to the right", "right"),
}
_DIAGONAL_FORMS = ("{} and {}", "{} and then {}", "diagonally {} and {}", "{} and {} diagonally")
DIRECTION_SYNONYMS: dict[str, tuple[str, ...]] = {
    d: (
        _AXIS_WORDS[d]
        if " " not in d
        else tuple(
            form.format(a, b)
            for form in _DIAGONAL_FORMS
            for a in _AXIS_WORDS[d.split()[0]]
            for b in _AXIS_WORDS[d.split()[1]]
        )
    )
    for d in DIRECTIONS
}
SLIGHTLY_SYNONYMS = ("slightly", "a bit", "a little", "a little bit", "somewhat")
RELATION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "top of": ("above", "to the top side of", "to the top of"),
    "bottom of": ("below", "to the bottom side of", "to the bottom of"),
    "left of": ("just left of", "to the left of", "left of", "to the left side of"),
    "right of": ("just right of", "to the right of", "right of", "to the right side of"),
}
SIDE_SYNONYMS: dict[str, tuple[str, ...]] = {"left": ("left",), "right": ("right",)}
CORNER_SYNONYMS: dict[str, tuple[str, ...]] = {
    c: tuple(s for s in LOCATION_SYNONYMS[c] if "corner" in s or s == c) for c in CORNERS
}

# Slot name -> (synonym table keyed by value) for slots that do not name blocks.
_VALUE_SLOTS: dict[str, dict[str, tuple[str, ...]]] = {
    "loc": LOCATION_SYNONYMS,
    "dir": DIRECTION_SYNONYMS,
    "rel": RELATION_SYNONYMS,
    "corner": CORNER_SYNONYMS,
    "side": SIDE_SYNONYMS,
    "other": SIDE_SYNONYMS,
    "color": {c: (c,) for c in BLOCK_COLORS},
    "slightly": {"slightly": SLIGHTLY_SYNONYMS},
}
_BLOCK_SLOTS = ("obj", "target")
_SLOT = re.compile(r"\{(\w+)\}")


def normalize(text: str) -> str:
    """Lower case, single spaces, no trailing punctuation, American 'color'."""
    text = re.sub(r"\s+", " ", text.strip().lower())
    text = re.sub(r"[\s.!?;,]+$", "", text)
    return re.sub(r"\bcolour", "color", text)


def _template_regex(template: str, phrases: dict[str, Sequence[str]]) -> re.Pattern:
    """Regex of a template whose slots match only their known phrases (longest first)."""
    template = normalize(template)
    parts, pos = [], 0
    for m in _SLOT.finditer(template):
        options = sorted(phrases[m[1]], key=len, reverse=True)
        parts.append(re.escape(template[pos : m.start()]))
        parts.append(f"(?P<{m[1]}>" + "|".join(re.escape(o) for o in options) + ")")
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    return re.compile("^" + "".join(parts) + "$")


def block_phrases(objects: Sequence[ObjectDesc]) -> dict[str, int]:
    """Every unambiguous phrase for a block (Language-Table synonyms, canonical names, 'obj j') -> index."""
    table: dict[str, set[int]] = {}
    canonical = object_names(objects)
    for i in range(len(objects)):
        for phrase in (*block_synonyms(i, objects), canonical[i], referral_name(i)):
            table.setdefault(phrase, set()).add(i)
    return {k: next(iter(v)) for k, v in table.items() if len(v) == 1}


def match_templates(
    templates: Sequence[str], text: str, objects: Sequence[ObjectDesc]
) -> dict[str, Any] | None:
    """Slot values of the first template the text matches (slots hold only known phrases), else None."""
    text = normalize(text)
    blocks = block_phrases(objects)
    values = {
        slot: {syn: value for value, syns in table.items() for syn in syns}
        for slot, table in _VALUE_SLOTS.items()
    }
    lookup = {**values, **dict.fromkeys(_BLOCK_SLOTS, blocks)}
    for template in templates:
        m = _template_regex(template, lookup).match(text)
        if m is not None:
            slots = {slot: lookup[slot][phrase] for slot, phrase in m.groupdict().items()}
            slots["_template"] = template
            return slots
    return None


def render_template(
    rng: np.random.Generator, template: str, slots: dict[str, Any], objects: Sequence[ObjectDesc]
) -> str:
    """Fill a template: every slot with a random synonym (block slots: Language-Table's block names)."""

    def fill(m: re.Match) -> str:
        slot, value = m[1], slots[m[1]]
        options = block_synonyms(value, objects) if slot in _BLOCK_SLOTS else _VALUE_SLOTS[slot][value]
        return str(options[int(rng.integers(len(options)))])

    return _SLOT.sub(fill, template)


# ---- scene sampling ----------------------------------------------------------------------------
def sample_layout(
    rng: np.random.Generator, n: int, tries: int = 2000
) -> list[tuple[float, float, float]] | None:
    """Language-Table reset: blocks uniform in the buffered board, random yaw, footprints >= 0.0175 m apart,
    away from the effector; None if the blocks do not fit."""
    lo = np.array([X_MIN + WORKSPACE_BUFFER, Y_MIN + WORKSPACE_BUFFER])
    hi = np.array([X_MAX - WORKSPACE_BUFFER, Y_MAX - WORKSPACE_BUFFER])
    placed: list[np.ndarray] = []
    for _ in range(tries):
        xy = rng.uniform(lo, hi)
        if np.linalg.norm(xy - EFFECTOR_START) < ARM_CLEARANCE:
            continue
        if all(np.linalg.norm(xy - q) >= MIN_CENTRE_DIST for q in placed):
            placed.append(xy)
            if len(placed) == n:
                yaws = rng.uniform(-np.pi, np.pi, size=n)
                return [(float(q[0]), float(q[1]), float(a)) for q, a in zip(placed, yaws)]
    return None


# ---- tasks -------------------------------------------------------------------------------------
class PushTask(Task):
    """Shared machinery of the pushing tasks: sampling loop, templates per split, parsing, binding."""

    world: ClassVar[str] = "push"
    block_set: str = "N_CHOOSE_K"  # set by PushEnv

    def sample(self, rng: np.random.Generator, split: str = "train") -> TaskInstance:
        for _ in range(200):
            objects = sample_blocks(rng, split, self.block_set)
            layout = sample_layout(rng, len(objects))
            if layout is None:
                continue
            xy = np.array([(x, y) for x, y, _ in layout])
            drawn = self.draw_goal(rng, objects, xy)
            if drawn is None:
                continue
            goal, slots = drawn
            text = render_template(rng, _choice(rng, self.templates_for(goal, split)), slots, objects)
            return TaskInstance(text, goal, objects, layout, {"block_set": self.block_set})
        raise RuntimeError(f"{self.name}: could not sample a valid scene from block set {self.block_set!r}")

    def templates_for(self, goal: Any, split: str) -> tuple[str, ...]:
        """Phrasings an instance of `split` may use for `goal` (held-out ones only in L4)."""
        return self.heldout_templates if split == "L4" and self.heldout_templates else self.templates

    @abstractmethod
    def draw_goal(
        self, rng: np.random.Generator, objects: list[ObjectDesc], xy: np.ndarray
    ) -> tuple[Any, dict[str, Any]] | None:
        """A goal for this scene and the template slots that say it, or None if the scene does not suit."""

    @abstractmethod
    def goal_from_slots(self, slots: dict[str, Any], objects: list[ObjectDesc]) -> Any | None:
        """The goal that parsed template slots mean, or None if they are inconsistent."""

    def parse_instruction(self, text: str, objects: list[ObjectDesc]) -> Any | None:
        slots = match_templates((*self.templates, *self.heldout_templates), text, objects)
        return None if slots is None else self.goal_from_slots(slots, objects)

    def bind(self, env: PushEnv, goal: Any) -> Any:
        """Fix the parts of a goal that refer to the scene as it is now (default: nothing to fix)."""
        return goal


def _pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(n) if i != j]


def _occupied(point: np.ndarray, xy: np.ndarray, ignore: Sequence[int]) -> bool:
    """Whether another block sits where a block should go (Language-Table rejects layouts its oracle cannot
    solve; a target covered by a third block is one)."""
    return any(np.linalg.norm(point - q) < MIN_CENTRE_DIST for k, q in enumerate(xy) if k not in ignore)


def _choice(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


# -- block2block ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockGoal:
    """Push block `obj` relative to block `target` (`relation` as in the plan language)."""

    obj: int
    target: int
    relation: str = "next to"
    anchor: tuple[float, float] | None = None  # reference block's position when the instruction was given


@register_task
class Block2Block(PushTask):
    name = "block2block"
    templates = tuple(f"{v} the {{obj}} {p} the {{target}}" for v in PUSH_VERBS for p in PREPOSITIONS)
    heldout_templates = (
        "nudge the {obj} over to the {target}",
        "shove the {obj} up against the {target}",
        "bring the {obj} beside the {target}",
    )
    success_doc = "the two blocks' centres are less than 0.05 m apart"

    def draw_goal(self, rng, objects, xy):
        pairs = [
            (i, j) for i, j in _pairs(len(objects)) if np.linalg.norm(xy[i] - xy[j]) > BLOCK2BLOCK_DIST + 0.01
        ]
        if not pairs:
            return None
        i, j = _choice(rng, pairs)
        return BlockGoal(i, j), {"obj": i, "target": j}

    def goal_from_slots(self, slots, objects):
        return BlockGoal(slots["obj"], slots["target"]) if slots["obj"] != slots["target"] else None

    def is_success(self, env, goal):
        return relation_ok(env.block_xy(goal.obj), env.block_xy(goal.target), "next to")

    def oracle_plan(self, env, goal):
        return (
            []
            if self.is_success(env, goal)
            else [SkillCall("push", obj=goal.obj, target=goal.target, relation="next to")]
        )


# -- block2absolutelocation -----------------------------------------------------------------------
@dataclass(frozen=True)
class LocationGoal:
    """Push block `obj` to a board location."""

    obj: int
    location: str


@register_task
class Block2AbsoluteLocation(PushTask):
    name = "block2absolutelocation"
    templates = (
        *(f"{v} the {{obj}} to the {{loc}}" for v in PUSH_VERBS),
        "push the {obj} towards the {loc}",
        "move the {obj} over to the {loc}",
    )
    heldout_templates = (
        "nudge the {obj} into the {loc}",
        "bring the {obj} to the {loc}",
        "the {obj} should go to the {loc}",
    )
    success_doc = (
        "the block's centre is within 0.115 m (0.1 m for the center) of the location point; "
        "location points are the board's corners, edge midpoints and centre, shifted 0.025 m in -x"
    )

    def draw_goal(self, rng, objects, xy):
        i = int(rng.integers(len(objects)))
        loc = _choice(rng, sorted(LOCATION_POINTS))
        if in_location(xy[i], loc):
            return None
        return LocationGoal(i, loc), {"obj": i, "loc": loc}

    def goal_from_slots(self, slots, objects):
        return LocationGoal(slots["obj"], slots["loc"])

    def is_success(self, env, goal):
        return in_location(env.block_xy(goal.obj), goal.location)

    def oracle_plan(self, env, goal):
        return [] if self.is_success(env, goal) else [SkillCall("push", obj=goal.obj, location=goal.location)]


# -- block2relativelocation -----------------------------------------------------------------------
@dataclass(frozen=True)
class OffsetGoal:
    """Push block `obj` by an offset from where it was when the instruction was given."""

    obj: int
    direction: str
    distance: str
    target_xy: tuple[float, float] | None = None  # fixed by bind()


def _is_near(template: str) -> bool:
    return "{slightly}" in template or template.startswith("slightly ") or "small push" in template


_NEAR_TEMPLATES = (
    "slightly {verb} the {{obj}} {{dir}}",
    "{verb} the {{obj}} {{slightly}} {{dir}}",
    "{verb} the {{obj}} {{dir}} {{slightly}}",
)


@register_task
class Block2RelativeLocation(PushTask):
    name = "block2relativelocation"
    templates = (
        *(t.format(verb=v) for t in _NEAR_TEMPLATES for v in ("move", "push", "slide")),
        *(f"{v} the {{obj}} {{dir}}" for v in ("move", "push", "slide")),
    )
    heldout_templates = (
        "nudge the {obj} {slightly} {dir}",
        "shift the {obj} {dir}",
        "give the {obj} a small push {dir}",
    )
    success_doc = (
        "the block's centre is within 0.1 m of the point 0.15 m ('slightly', 'a bit', ...) or "
        "0.25 m (no qualifier) from its start position in one of 8 directions"
    )

    def draw_goal(self, rng, objects, xy):
        i = int(rng.integers(len(objects)))
        direction, distance = _choice(rng, DIRECTIONS), _choice(rng, ("slightly", "far"))
        if not inside_bounds(offset_point(xy[i], direction, distance)):
            return None
        return OffsetGoal(i, direction, distance), {"obj": i, "dir": direction, "slightly": "slightly"}

    def templates_for(self, goal, split):
        # The distance is said by the template: near ones carry "slightly" or a synonym.
        return tuple(
            t for t in super().templates_for(goal, split) if _is_near(t) == (goal.distance == "slightly")
        )

    def goal_from_slots(self, slots, objects):
        return OffsetGoal(slots["obj"], slots["dir"], "slightly" if _is_near(slots["_template"]) else "far")

    def bind(self, env, goal):
        if goal.target_xy is not None:
            return goal
        t = offset_point(env.block_xy(goal.obj), goal.direction, goal.distance)
        return replace(goal, target_xy=(float(t[0]), float(t[1])))

    def is_success(self, env, goal):
        return (
            goal.target_xy is not None
            and float(np.linalg.norm(env.block_xy(goal.obj) - np.asarray(goal.target_xy))) < RELATIVE_DIST
        )

    def oracle_plan(self, env, goal):
        if goal.target_xy is None or self.is_success(env, goal):
            return []
        return [best_offset_call(env, goal.obj, np.asarray(goal.target_xy), RELATIVE_DIST)]


def best_offset_call(env: PushEnv, i: int, point: np.ndarray, radius: float) -> SkillCall:
    """The direction/distance push whose target lands closest to `point` from where block i is now
    (after a partial push the original call would overshoot)."""
    xy = env.block_xy(i)
    calls = [SkillCall("push", obj=i, direction=d, distance=s) for d in DIRECTIONS for s in MAGNITUDES]
    return min(calls, key=lambda c: float(np.linalg.norm(offset_point(xy, c.direction, c.distance) - point)))


# -- block2block_relative_location ----------------------------------------------------------------
@register_task
class Block2BlockRelativeLocation(PushTask):
    name = "block2block_relative_location"
    templates = tuple(
        f"{v} the {{obj}} {{rel}} the {{target}}" for v in ("move", "push", "put", "bring", "slide")
    )
    heldout_templates = (
        "nudge the {obj} {rel} the {target}",
        "place the {obj} {rel} the {target} by pushing it",
    )
    success_doc = (
        "the block is within 0.04 m of the line from 0.04 to 0.088 m (0.5x to 1.1x the 0.08 m offset) "
        "beside the reference block in the named direction, and the reference block has not been "
        "dragged more than 0.05 m"
    )

    def draw_goal(self, rng, objects, xy):
        i, j = _choice(rng, _pairs(len(objects)))
        rel = _choice(rng, sorted(RELATION_VECTORS))
        point = xy[j] + REL_OFFSET * RELATION_VECTORS[rel]
        if not inside_bounds(point) or relation_ok(xy[i], xy[j], rel) or _occupied(point, xy, (i, j)):
            return None
        return BlockGoal(i, j, rel), {"obj": i, "target": j, "rel": rel}

    def goal_from_slots(self, slots, objects):
        return (
            BlockGoal(slots["obj"], slots["target"], slots["rel"])
            if slots["obj"] != slots["target"]
            else None
        )

    def bind(self, env, goal):
        if goal.anchor is not None:
            return goal
        a = env.block_xy(goal.target)
        return replace(goal, anchor=(float(a[0]), float(a[1])))

    def is_success(self, env, goal):
        ref = env.block_xy(goal.target)
        dragged = goal.anchor is not None and np.linalg.norm(ref - np.asarray(goal.anchor)) > DRAG_DIST
        return relation_ok(env.block_xy(goal.obj), ref, goal.relation) and not dragged

    def oracle_plan(self, env, goal):
        if self.is_success(env, goal):
            return []
        return [SkillCall("push", obj=goal.obj, target=goal.target, relation=goal.relation)]


# -- separate -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeparateGoal:
    """Push block `obj` away from block `avoid`."""

    obj: int
    avoid: int


@register_task
class Separate(PushTask):
    name = "separate"
    templates = (
        "pull the {obj} apart from the {target}",
        "move the {obj} away from the {target}",
        "separate the {obj} from the {target}",
        "push the {obj} away from the {target}",
        "slide the {obj} away from the {target}",
    )
    heldout_templates = (
        "get the {obj} away from the {target}",
        "put some space between the {obj} and the {target}",
    )
    success_doc = (
        "the block is within 0.025 m of the point 0.1 m from the avoided block on the line from it "
        "through the block (i.e. 0.075-0.125 m from the avoided block); scenes have the block closer "
        "than 0.08 m to exactly one other block, the one to avoid"
    )

    def draw_goal(self, rng, objects, xy):
        n = len(objects)
        close = [
            (i, [j for j in range(n) if j != i and np.linalg.norm(xy[i] - xy[j]) < JOINED_DIST])
            for i in range(n)
        ]
        pairs = [(i, js[0]) for i, js in close if len(js) == 1]
        pairs = [
            (i, j)
            for i, j in pairs
            if inside_bounds(xy[j] + SEPARATE_OFFSET * _unit(xy[i] - xy[j])) and not separated(xy[i], xy[j])
        ]
        if not pairs:
            return None
        i, j = _choice(rng, pairs)
        return SeparateGoal(i, j), {"obj": i, "target": j}

    def goal_from_slots(self, slots, objects):
        return SeparateGoal(slots["obj"], slots["target"]) if slots["obj"] != slots["target"] else None

    def is_success(self, env, goal):
        return separated(env.block_xy(goal.obj), env.block_xy(goal.avoid))

    def oracle_plan(self, env, goal):
        if self.is_success(env, goal):
            return []
        # The plan language pushes beside a block along a board axis; the skill aims 0.095 m out, which is
        # inside both this task's ring (0.075-0.125 m) and Language-Table's relative-location region.
        xy, ref = env.block_xy(goal.obj), env.block_xy(goal.avoid)
        away = _unit(xy - ref)
        ok = [r for r in sorted(RELATION_VECTORS) if on_board_target(ref + 0.095 * RELATION_VECTORS[r])]
        rel = max(ok or sorted(RELATION_VECTORS), key=lambda r: float(RELATION_VECTORS[r] @ away))
        return [SkillCall("push", obj=goal.obj, target=goal.avoid, relation=rel)]


def on_board_target(xy: np.ndarray, margin: float = 0.03) -> bool:
    """Whether a block can be pushed to `xy` (inside the board by `margin`)."""
    return bool(X_MIN + margin <= xy[0] <= X_MAX - margin and Y_MIN + margin <= xy[1] <= Y_MAX - margin)


# ---- long-horizon tasks ------------------------------------------------------------------------
PLACED_MARGIN = 0.005  # a block counts as placed by the oracle only this far inside a success region


@dataclass(frozen=True)
class CornerColorGoal:
    """T1: the block closest to `corner` goes next to the other block of its colour."""

    corner: str
    obj: int | None = None  # fixed by bind()
    partner: int | None = None


def _closest_to(xy: np.ndarray, point: np.ndarray) -> int:
    return int(np.argmin(np.linalg.norm(xy - point, axis=1)))


def _partner(objects: Sequence[ObjectDesc], i: int) -> int | None:
    same = [j for j, o in enumerate(objects) if j != i and o.color == objects[i].color]
    return same[0] if len(same) == 1 else None


@register_task
class CornerToSameColor(PushTask):
    name = "corner_to_same_color"
    templates = (
        "there is a block that is closest to the {corner}. "
        "push that block to the other block of the same color",
        "push the block closest to the {corner} to the other block of the same color",
        "find the block nearest to the {corner} and push it to the other block of its color",
        "move the block that is closest to the {corner} next to the other block of the same color",
        "take the block closest to the {corner} and slide it to the other block with the same color",
    )
    heldout_templates = (
        "which block is nearest to the {corner}? bring it next to the block that shares its color",
        "the block closest to the {corner} belongs beside its same colored partner",
    )
    success_doc = (
        "the block that was closest to the corner point when the instruction was given is less than "
        "0.05 m from the other block of its colour (scenes have exactly one such block)"
    )

    def draw_goal(self, rng, objects, xy):
        corner = _choice(rng, CORNERS)
        i = _closest_to(xy, LOCATION_POINTS[corner])
        j = _partner(objects, i)
        if j is None or np.linalg.norm(xy[i] - xy[j]) < BLOCK2BLOCK_DIST + 0.01:
            return None
        # The closest block must be clearly closest, or "closest" would be ambiguous to a viewer.
        d = np.sort(np.linalg.norm(xy - LOCATION_POINTS[corner], axis=1))
        if len(d) > 1 and d[1] - d[0] < 0.02:
            return None
        return CornerColorGoal(corner), {"corner": corner}

    def goal_from_slots(self, slots, objects):
        return CornerColorGoal(slots["corner"])

    def bind(self, env, goal):
        if goal.obj is not None:
            return goal
        i = _closest_to(env.blocks_xy(), LOCATION_POINTS[goal.corner])
        return replace(goal, obj=i, partner=_partner(env.objects, i))

    def is_success(self, env, goal):
        return goal.partner is not None and relation_ok(
            env.block_xy(goal.obj), env.block_xy(goal.partner), "next to"
        )

    def oracle_plan(self, env, goal):
        if goal.partner is None or self.is_success(env, goal):
            return []
        return [SkillCall("push", obj=goal.obj, target=goal.partner, relation="next to")]


@dataclass(frozen=True)
class NoArgGoal:
    """A goal with no parameters (the task says everything)."""

    kind: str


def color_corner_assignment(env: PushEnv) -> dict[str, str]:
    """Colour -> corner for sort_corners: the assignment with the least total block-to-corner distance."""
    xy = env.blocks_xy()
    colours = sorted({o.color for o in env.objects})
    best, best_cost = {}, np.inf
    for corners in itertools.permutations(CORNERS, len(colours)):
        assign = dict(zip(colours, corners))
        cost = sum(
            float(np.linalg.norm(xy[k] - LOCATION_POINTS[assign[o.color]])) for k, o in enumerate(env.objects)
        )
        if cost < best_cost - 1e-9:
            best, best_cost = assign, cost
    return best


def _location_pushes(env: PushEnv, blocks: Sequence[int], location_of: dict[int, str]) -> list[SkillCall]:
    """Push each listed block that is not yet well inside its location; nearest first, so the first blocks
    fill the deep spots and later blocks do not have to pass placed ones."""
    xy = env.blocks_xy()
    todo = [k for k in blocks if not in_location(xy[k], location_of[k], PLACED_MARGIN)]
    todo.sort(key=lambda k: float(np.linalg.norm(xy[k] - LOCATION_POINTS[location_of[k]])))
    return [SkillCall("push", obj=k, location=location_of[k]) for k in todo]


@register_task
class SortCorners(PushTask):
    name = "sort_corners"
    templates = (
        "sort the blocks by colors into corners",
        "how to sort the blocks by colors into corners?",
        "sort the blocks into corners by color",
        "put the blocks of each color into their own corner",
        "push the blocks so that each color is in a different corner",
    )
    heldout_templates = (
        "group the blocks by color, one corner per color",
        "arrange the blocks so every color gets its own corner",
    )
    success_doc = (
        "every block is within 0.115 m of a corner point, blocks of one colour share a corner and "
        "different colours use different corners; scenes have at most 2 blocks per colour"
    )

    def draw_goal(self, rng, objects, xy):
        if max(color_counts(objects).values()) > 2:
            return None
        return NoArgGoal("sort"), {}

    def goal_from_slots(self, slots, objects):
        return NoArgGoal("sort")

    def is_success(self, env, goal):
        xy = env.blocks_xy()
        corner_of: dict[str, str] = {}
        for k, o in enumerate(env.objects):
            inside = [c for c in CORNERS if in_location(xy[k], c)]
            if not inside or corner_of.setdefault(o.color, inside[0]) != inside[0]:
                return False
        return len(set(corner_of.values())) == len(corner_of)

    def oracle_plan(self, env, goal):
        if self.is_success(env, goal):
            return []
        assign = color_corner_assignment(env)
        location_of = {k: assign[o.color] for k, o in enumerate(env.objects)}
        xy = env.blocks_xy()
        # Blocks sitting in a corner that belongs to another colour leave first, to free its spots.
        intruders = [
            k for k in location_of if any(in_location(xy[k], c) for c in CORNERS if c != location_of[k])
        ]
        rest = [k for k in location_of if k not in intruders]
        return _location_pushes(env, intruders, location_of) + _location_pushes(env, rest, location_of)


@dataclass(frozen=True)
class SideGoal:
    """T3: gather the blocks on one side (y < 0 is left) without bringing blocks over from the other."""

    side: str
    members: tuple[int, ...] | None = None  # fixed by bind()


def _on_side(xy: np.ndarray, side: str) -> bool:
    return bool(xy[1] < 0) if side == "left" else bool(xy[1] > 0)


def clusters(xy: np.ndarray, members: Sequence[int], link: float = JOINED_DIST) -> list[list[int]]:
    """Connected groups of `members` where blocks closer than `link` are connected."""
    groups: list[list[int]] = []
    left = list(members)
    while left:
        group = [left.pop(0)]
        grew = True
        while grew:
            grew = False
            for k in list(left):
                if any(np.linalg.norm(xy[k] - xy[g]) < link for g in group):
                    group.append(k)
                    left.remove(k)
                    grew = True
        groups.append(group)
    return groups


@register_task
class SideTogether(PushTask):
    name = "side_together"
    templates = (
        "push all the blocks that are on the {side} side together, without bringing over any of the blocks "
        "that are on the {other} side",
        "how to push all the blocks that are on the {side} side together, without bringing over any of the "
        "blocks that are on the {other} side?",
        "push the blocks on the {side} side together without bringing over blocks from the {other} side",
        "gather all the blocks on the {side} side into one group, "
        "leaving the blocks on the {other} side there",
        "bring together every block on the {side} side without moving any block over from the {other} side",
    )
    heldout_templates = (
        "cluster the blocks of the {side} half together, keeping the {other} half out of it",
        "collect every block on the {side} side into a group and leave the {other} side alone",
    )
    success_doc = (
        "the blocks that were on the side (y < 0 is left) when the instruction was given form one "
        "group (each within 0.08 m of another, Language-Table's 'together' distance) and every block "
        "is still on the side of the midline it started on"
    )

    def draw_goal(self, rng, objects, xy):
        if np.any(np.abs(xy[:, 1]) < SIDE_MARGIN):
            return None
        side = _choice(rng, ("left", "right"))
        members = [k for k in range(len(objects)) if _on_side(xy[k], side)]
        if len(members) < 2:
            return None
        return SideGoal(side), {"side": side, "other": "right" if side == "left" else "left"}

    def goal_from_slots(self, slots, objects):
        return SideGoal(slots["side"]) if slots["side"] != slots["other"] else None

    def bind(self, env, goal):
        if goal.members is not None:
            return goal
        xy = env.blocks_xy()
        return replace(goal, members=tuple(k for k in range(len(xy)) if _on_side(xy[k], goal.side)))

    def is_success(self, env, goal):
        if not goal.members:
            return False
        xy = env.blocks_xy()
        other = "right" if goal.side == "left" else "left"
        sides_kept = all(_on_side(xy[k], goal.side if k in goal.members else other) for k in range(len(xy)))
        return sides_kept and len(clusters(xy, goal.members)) == 1

    def oracle_plan(self, env, goal):
        if not goal.members or self.is_success(env, goal):
            return []
        xy = env.blocks_xy()
        link = JOINED_DIST - PLACED_MARGIN
        # Grow the biggest group (ties: the one farthest from the midline, so neighbours stay on this side).
        groups = clusters(xy, goal.members, link)
        core = max(groups, key=lambda g: (len(g), min(abs(xy[k][1]) for k in g)))
        plan: list[SkillCall] = []
        placed = list(core)
        for k in sorted(
            (k for k in goal.members if k not in core),
            key=lambda k: min(float(np.linalg.norm(xy[k] - xy[g])) for g in core),
        ):
            nearest = min(placed, key=lambda g: float(np.linalg.norm(xy[k] - xy[g])))
            plan.append(SkillCall("push", obj=k, target=nearest, relation="next to"))
            placed.append(k)
        return plan


@register_task
class AllToCenter(PushTask):
    name = "all_to_center"
    templates = (
        "push all the blocks to the center",
        "move all the blocks to the middle of the board",
        "put every block in the center of the board",
        "slide all the blocks to the center",
        "gather all the blocks in the middle",
    )
    heldout_templates = (
        "bring every block to the middle of the board",
        "clear the edges by pushing all the blocks into the center",
    )
    success_doc = (
        "every block is within 0.1 m of the board's center point (block2absolutelocation's center test)"
    )

    def draw_goal(self, rng, objects, xy):
        return NoArgGoal("center"), {}

    def goal_from_slots(self, slots, objects):
        return NoArgGoal("center")

    def is_success(self, env, goal):
        return all(in_location(q, "center") for q in env.blocks_xy())

    def oracle_plan(self, env, goal):
        if self.is_success(env, goal):
            return []
        n = len(env.object_ids)
        return _location_pushes(env, range(n), dict.fromkeys(range(n), "center"))


@dataclass(frozen=True)
class ColorLocationGoal:
    """Push every block of `color` to `location`."""

    color: str
    location: str


@register_task
class ColorToLocation(PushTask):
    name = "color_to_location"
    templates = (
        "put the {color} blocks in the {loc}",
        "push the {color} blocks to the {loc}",
        "move all the {color} blocks to the {loc}",
        "slide the {color} blocks to the {loc}",
        "gather the {color} blocks at the {loc}",
    )
    heldout_templates = ("bring every {color} block to the {loc}", "the {color} blocks belong at the {loc}")
    success_doc = (
        "every block of the colour is at the location (block2absolutelocation's test: within 0.115 m, "
        "0.1 m for the center); scenes have 2 or more blocks of the colour, and at most 2 for a corner"
    )

    def draw_goal(self, rng, objects, xy):
        counts = color_counts(objects)
        colours = sorted(c for c, n in counts.items() if n >= 2)
        if not colours:
            return None
        colour = _choice(rng, colours)
        locs = sorted(LOCATION_POINTS) if counts[colour] <= 2 else sorted(set(LOCATION_POINTS) - set(CORNERS))
        loc = _choice(rng, locs)
        return ColorLocationGoal(colour, loc), {"color": colour, "loc": loc}

    def goal_from_slots(self, slots, objects):
        return (
            ColorLocationGoal(slots["color"], slots["loc"])
            if slots["color"] in {o.color for o in objects}
            else None
        )

    def _blocks(self, env, goal) -> list[int]:
        return [k for k, o in enumerate(env.objects) if o.color == goal.color]

    def is_success(self, env, goal):
        xy = env.blocks_xy()
        return all(in_location(xy[k], goal.location) for k in self._blocks(env, goal))

    def oracle_plan(self, env, goal):
        if self.is_success(env, goal):
            return []
        ks = self._blocks(env, goal)
        return _location_pushes(env, ks, dict.fromkeys(ks, goal.location))


SINGLE_STEP_TASKS: tuple[str, ...] = (
    "block2block",
    "block2absolutelocation",
    "block2relativelocation",
    "block2block_relative_location",
    "separate",
)
LONG_HORIZON_TASKS: tuple[str, ...] = (
    "corner_to_same_color",
    "sort_corners",
    "side_together",
    "all_to_center",
    "color_to_location",
)
