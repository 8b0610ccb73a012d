"""Tasks of the pick-and-place world: stack, grasp, put_in_zone, sort_by_color, unstack.

All five share one scene sampler (objects, towers, zones per split), one template engine
(instruction text <-> goal, regex over the scene's object names) and one symbolic planner over
the support graph (which cube rests on which) that the oracles are written in.

Splits: `train`, `L1` (3-5 cubes, training templates, held-out colour/size pairs excluded),
`L2` (at least one cube of a held-out colour/size pair, named in the goal where the task names
cubes), `L3` (6-8 cubes, longer towers), `L4` (held-out phrasings).
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from envs.catalogue import COLOR_NAMES, MAX_OBJECTS, SIZE_NAMES, ObjectDesc
from envs.pickplace import WORKSPACE_HIGH, WORKSPACE_LOW, ZONE_SIDE, Layout, apart_for_hand
from envs.tasks.base import Task, TaskInstance, register_task
from envs.vocab import SkillCall, object_names, referral_name

if TYPE_CHECKING:
    from envs.pickplace import PickPlaceEnv

# (colour, size) pairs never seen in training scenes; every L2 scene holds at least one.
HELDOUT_COMBOS: frozenset[tuple[str, str]] = frozenset(
    {("red", "large"), ("blue", "small"), ("yellow", "large"), ("purple", "small")}
)
CUBE_SPACING = 0.09  # minimum distance between stacks in initial scenes (room for the open fingers)
MAX_YAW = 0.35  # initial cube yaw in [-MAX_YAW, MAX_YAW] rad; the closing fingers square a cube up
LIFT_HEIGHT = 0.02  # grasp success: the held cube's bottom is at least this far above the table


# ================================ scene sampling ===============================================
def n_objects(rng: np.random.Generator, split: str, fixed: int | None = None) -> int:
    """Number of cubes: 3-5, or 6-8 in L3 (`fixed` overrides, e.g. 8 for the hardest scenes)."""
    if fixed is not None:
        return fixed
    return int(rng.integers(6, 9)) if split == "L3" else int(rng.integers(3, 6))


def sample_objects(
    rng: np.random.Generator, split: str, n: int, colors: Sequence[str] | None = None
) -> list[ObjectDesc]:
    """n cubes with distinct (colour, size) pairs while they last; held-out pairs only (and always) in L2."""
    colors = list(colors) if colors is not None else list(COLOR_NAMES)
    pairs = [(c, s) for c in colors for s in SIZE_NAMES]
    train_pairs = [pr for pr in pairs if pr not in HELDOUT_COMBOS]
    heldout = [pr for pr in pairs if pr in HELDOUT_COMBOS]
    chosen: list[tuple[str, str]] = []
    if split == "L2":
        if not heldout:
            raise ValueError(f"L2 needs a colour with a held-out pair among {colors}")
        chosen.append(heldout[int(rng.integers(len(heldout)))])
    pool = pairs if split == "L2" else train_pairs
    while len(chosen) < n:
        # Least-used pairs first: pairs repeat only when all are used, and evenly, so no colour
        # gets more cubes than its zone's 4 slots hold.
        least = min(chosen.count(pr) for pr in pool)
        left = [pr for pr in pool if chosen.count(pr) == least]
        chosen.append(left[int(rng.integers(len(left)))])
    order = rng.permutation(n)
    return [ObjectDesc(chosen[k][0], "cube", chosen[k][1]) for k in order]


def focus_objects(rng: np.random.Generator, objects: Sequence[ObjectDesc], k: int) -> list[int]:
    """k distinct cube slots a goal names; a held-out (colour, size) cube, if any, comes first."""
    heldout = [i for i, o in enumerate(objects) if (o.color, o.size) in HELDOUT_COMBOS]
    rest = [i for i in rng.permutation(len(objects)).tolist() if i not in heldout[:1]]
    return (heldout[:1] + rest)[:k]


def zone_colors(rng: np.random.Generator, k: int, must: Sequence[str] = ()) -> list[str]:
    """k distinct zone colours including `must`."""
    others = [c for c in rng.permutation(COLOR_NAMES).tolist() if c not in must]
    return list(must) + others[: k - len(must)]


def sample_layout(
    rng: np.random.Generator, n: int, towers: Sequence[Sequence[int]], zones: Sequence[str]
) -> Layout:
    """Place zones, then stacks (the towers, every other cube alone), without overlaps."""
    in_tower = {i for t in towers for i in t}
    stacks_slots = [tuple(t) for t in towers] + [(i,) for i in range(n) if i not in in_tower]
    for _ in range(200):
        zone_xy = _scatter(
            rng, len(zones), lambda a, b: np.linalg.norm(a - b) >= ZONE_SIDE + 0.03, [], ZONE_SIDE / 2
        )
        if zone_xy is None:
            continue
        keep_out = [(z, ZONE_SIDE / 2 + 0.045) for z in zone_xy]  # cubes start outside the zones
        stack_xy = _scatter(rng, len(stacks_slots), stacks_apart, keep_out, 0.03)
        if stack_xy is None:
            continue
        stacks = tuple(
            (float(x), float(y), float(rng.uniform(-MAX_YAW, MAX_YAW)), s)
            for (x, y), s in zip(stack_xy, stacks_slots)
        )
        zs = tuple((c, float(x), float(y)) for c, (x, y) in zip(zones, zone_xy))
        return Layout(stacks=stacks, zones=zs)
    raise RuntimeError(f"could not place {n} cubes and {len(zones)} zones without overlap")


def stacks_apart(a: np.ndarray, b: np.ndarray) -> bool:
    """Two stacks leave room for the fingers and the hand, whatever their heights become."""
    return bool(np.linalg.norm(a - b) >= CUBE_SPACING and apart_for_hand(a, b))


def _scatter(
    rng: np.random.Generator,
    k: int,
    apart: Callable[[np.ndarray, np.ndarray], bool],
    keep_out: list[tuple[np.ndarray, float]],
    margin: float,
) -> list[np.ndarray] | None:
    """k points in the workspace (`margin` inside its edges), pairwise `apart`, outside keep-out squares."""
    pts: list[np.ndarray] = []
    for _ in range(k):
        for _ in range(100):
            q = rng.uniform(WORKSPACE_LOW + margin, WORKSPACE_HIGH - margin)
            if all(apart(q, o) for o in pts) and all(np.any(np.abs(q - c) > r) for c, r in keep_out):
                pts.append(q)
                break
        else:
            return None
    return pts


# ================================ templates <-> goals ==========================================
def normalize(text: str) -> str:
    """Lower case, British spelling folded, end punctuation and extra spaces removed."""
    t = text.lower().replace("colour", "color").strip()
    t = re.sub(r"\s+", " ", t)
    t = re.sub(r"\s*,\s*", ", ", t)
    return t.rstrip(" .!?")


@cache
def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{\w+\})", normalize(template))
    body = "".join(f"(?P<{s[1:-1]}>.+?)" if s.startswith("{") else re.escape(s) for s in parts)
    return re.compile(f"^{body}$")


def the(name: str) -> str:
    return f"the {name}"


def join_list(names: Sequence[str]) -> str:
    """'the a', 'the a and the b', 'the a, the b and the c'."""
    items = [the(n) for n in names]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def resolve(phrase: str, objects: Sequence[ObjectDesc]) -> int | None:
    """Slot index of the cube a phrase names ('the small red cube', 'obj 3'), or None."""
    phrase = phrase.strip()
    phrase = phrase.removeprefix("the ")
    names = object_names(objects)
    if phrase in names:
        return names.index(phrase)
    refs = [referral_name(i) for i in range(len(objects))]
    return refs.index(phrase) if phrase in refs else None


def resolve_list(
    phrase: str, objects: Sequence[ObjectDesc], sep: str = r",\s*(?:and\s+|then\s+)?|\s+and\s+|\s+then\s+"
) -> list[int] | None:
    """Slot indices of the cubes a list names ('the a, the b and the c'); None if any is unknown or repeated."""
    idx = [resolve(part, objects) for part in re.split(sep, phrase) if part.strip()]
    if not idx or any(i is None for i in idx) or len(set(idx)) != len(idx):
        return None
    return idx  # type: ignore[return-value]


def color_word(phrase: str) -> str | None:
    phrase = phrase.strip()
    return phrase if phrase in COLOR_NAMES else None


@dataclass(frozen=True)
class StackGoal:
    """A tower: `order[0]` at the bottom, each next cube resting on the previous one."""

    order: tuple[int, ...]


@dataclass(frozen=True)
class GraspGoal:
    """Hold cube `obj` in the gripper above the table."""

    obj: int


@dataclass(frozen=True)
class ZoneGoal:
    """Each (cube, zone colour) pair: the cube lies in that zone."""

    assign: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class UnstackGoal:
    """Every listed cube rests directly on the table."""

    blocks: tuple[int, ...]


# ================================ symbolic planning ============================================
class Blocks:
    """Symbolic support state for the oracles: parent[i] = -1 table, j cube j, None loose/tilted; `held`."""

    def __init__(self, env: PickPlaceEnv) -> None:
        self.held = env.held_object()
        self.parent: list[int | None] = env.support_graph()
        self.plan: list[SkillCall] = []

    @property
    def n(self) -> int:
        return len(self.parent)

    def above(self, i: int) -> list[int]:
        """Cubes on cube i, bottom-up."""
        out, cur = [], i
        while nxt := [j for j in range(self.n) if self.parent[j] == cur]:
            cur = nxt[0]
            out.append(cur)
        return out

    def below(self, i: int) -> list[int]:
        """Cubes under cube i, from the one it rests on down to the table."""
        out, cur = [], self.parent[i]
        while cur is not None and cur >= 0:
            out.append(cur)
            cur = self.parent[cur]
        return out

    def move(self, i: int, target: int | None = None, zone: str | None = None) -> None:
        """Plan pick (unless already held) and place of cube i on `target`, in `zone`, or on the table."""
        if self.held != i:
            self.plan.append(SkillCall("pick", obj=i))
        if target is not None:
            self.plan.append(SkillCall("place", obj=i, target=target))
        elif zone is not None:
            self.plan.append(SkillCall("place", obj=i, zone=zone))
        else:
            self.plan.append(SkillCall("place", obj=i, location="table"))
        self.held = None
        self.parent[i] = target if target is not None else -1

    def clear(self, i: int, dest: Callable[[int], dict[str, Any]] = lambda b: {}) -> None:
        """Plan moving every cube above i away, top first; `dest(b)` gives move kwargs (default: table)."""
        for b in reversed(self.above(i)):
            self.move(b, **dest(b))


# ================================ the shared task base =========================================
class PickPlaceTask(Task):
    """Shared parts: scene sampling per split, template rendering and parsing."""

    world: ClassVar[str] = "pickplace"

    def __init__(self, n_objects: int | None = None) -> None:
        if n_objects is not None and not 3 <= n_objects <= MAX_OBJECTS:
            raise ValueError(f"n_objects must be in [3, {MAX_OBJECTS}], got {n_objects}")
        self.n_objects = n_objects  # fixed cube count, or None for the split's range

    def sample(self, rng: np.random.Generator, split: str = "train") -> TaskInstance:
        objects, goal, towers, zones = self._sample_goal(rng, split)
        layout = sample_layout(rng, len(objects), towers, zones)
        templates = self.heldout_templates if split == "L4" else self.templates
        usable = [t for t in templates if self._fields(t, goal, objects) is not None]
        template = usable[int(rng.integers(len(usable)))]
        text = self.render(template, goal, objects)
        return TaskInstance(text, goal, objects, layout, extras={"zones": list(zones), "template": template})

    def render(self, template: str, goal: Any, objects: Sequence[ObjectDesc]) -> str:
        """The instruction text of `goal` in `template`."""
        fields = self._fields(template, goal, objects)
        if fields is None:
            raise ValueError(f"template {template!r} cannot express goal {goal!r}")
        return template.format(**fields)

    def parse_instruction(self, text: str, objects: list[ObjectDesc]) -> Any | None:
        t = normalize(text)
        for template in (*self.templates, *self.heldout_templates):
            m = _pattern(template).match(t)
            if m:
                goal = self._goal_from(template, m.groupdict(), objects)
                if goal is not None:
                    return goal
        return None

    @abstractmethod
    def _sample_goal(
        self, rng: np.random.Generator, split: str
    ) -> tuple[list[ObjectDesc], Any, list[list[int]], list[str]]:
        """(objects, goal, initial towers bottom-up, zone colours)."""

    def _fields(self, template: str, goal: Any, objects: Sequence[ObjectDesc]) -> dict[str, str] | None:
        """Placeholder values of `template` for `goal`, or None if the template cannot say it."""
        return {}

    @abstractmethod
    def _goal_from(self, template: str, fields: dict[str, str], objects: Sequence[ObjectDesc]) -> Any | None:
        """The goal a matched template's placeholder values mean for these objects, or None."""


def random_towers(
    rng: np.random.Generator, n: int, count: int, lengths: tuple[int, int], avoid: Sequence[int] = ()
) -> list[list[int]]:
    """Up to `count` random towers (slot lists, bottom-up) of length in [lo, hi] from cubes not in `avoid`."""
    free = [i for i in rng.permutation(n).tolist() if i not in avoid]
    towers = []
    for _ in range(count):
        k = int(rng.integers(lengths[0], lengths[1] + 1))
        if len(free) < k:
            break
        towers.append(free[:k])
        free = free[k:]
    return towers


def decor_zones(rng: np.random.Generator) -> list[str]:
    """Zones for tasks that do not use them (the world always shows 2-4)."""
    return zone_colors(rng, int(rng.integers(2, 4)))


# ---------------------------------------------------------------------------------------------
@register_task
class StackTask(PickPlaceTask):
    name = "stack"
    templates = (
        "stack {chain_on}",
        "put {chain_on}",
        "place {chain_onto}",
        "build a tower with {bottom} at the bottom, {rest_then}",
        "make a stack of {bu_list}, from bottom to top",
        "how to stack {chain_ontop}?",
    )
    heldout_templates = (
        "pile up {bu_list} in that order, starting at the bottom",
        "i want a tower where {chain_resting}",
    )
    success_doc = (
        "each cube of the order rests on the previous one: flat, its bottom within 1 cm of the top of the "
        "one below and their centres closer than 0.85 x the mean edge; not held. The bottom cube may rest anywhere."
    )
    _chains: ClassVar[dict[str, str]] = {
        "chain_on": " on ",
        "chain_onto": " onto ",
        "chain_ontop": " on top of ",
        "chain_resting": " rests on ",
    }

    def _sample_goal(self, rng, split):
        n = n_objects(rng, split, self.n_objects)
        objects = sample_objects(rng, split, n)
        k = int(rng.integers(3, 5)) if split == "L3" else int(rng.integers(2, 4))
        order = focus_objects(rng, objects, k)
        order = [order[j] for j in rng.permutation(k)]
        towers = random_towers(rng, n, 1, (2, 3)) if rng.random() < 0.4 else []
        return objects, StackGoal(tuple(order)), towers, decor_zones(rng)

    def _fields(self, template, goal, objects):
        names = [object_names(objects)[i] for i in goal.order]
        top_down = list(reversed(names))
        f = {key: sep.join(the(x) for x in top_down) for key, sep in self._chains.items()}
        f.update(
            bottom=the(names[0]),
            rest_then=", ".join(f"then {the(x)}" for x in names[1:]),
            bu_list=join_list(names),
        )
        return f

    def _goal_from(self, template, fields, objects):
        chain = [k for k in fields if k in self._chains]
        if chain:
            idx = resolve_list(fields[chain[0]], objects, sep=re.escape(self._chains[chain[0]]))
            idx = list(reversed(idx)) if idx else None
        elif "bu_list" in fields:
            idx = resolve_list(fields["bu_list"], objects)
        else:
            idx = resolve_list(f"{fields['bottom']}, {fields['rest_then']}", objects)
        return StackGoal(tuple(idx)) if idx and len(idx) >= 2 else None

    def is_success(self, env, goal):
        graph = env.support_graph()
        return all(graph[up] == down for down, up in zip(goal.order, goal.order[1:]))

    def goal_places(self, goal, names):
        places = {goal.order[0]: "at the bottom of the tower"}
        places.update({up: f"on the {names[down]}" for down, up in zip(goal.order, goal.order[1:])})
        return places

    def oracle_plan(self, env, goal):
        b = Blocks(env)
        order = goal.order
        # The bottom cube may stand anywhere, except on a cube that has to go above it in the tower.
        base_ok = not set(b.below(order[0])) & set(order)
        done = int(base_ok)  # length of the correct prefix of the tower
        while 0 < done < len(order) and b.parent[order[done]] == order[done - 1] and b.held != order[done]:
            done += 1
        if b.held is not None:
            nxt_ok = 0 < done < len(order) and b.held == order[done] and not b.above(order[done - 1])
            b.move(b.held, target=order[done - 1] if nxt_ok else None)
            done += int(nxt_ok)
        if done == 0:
            b.clear(order[0])
            b.move(order[0])
            done = 1
        for m in range(done, len(order)):
            below, cube = order[m - 1], order[m]
            b.clear(below)
            b.clear(cube)
            b.move(cube, target=below)
        return b.plan


# ---------------------------------------------------------------------------------------------
@register_task
class GraspTask(PickPlaceTask):
    name = "grasp"
    templates = (
        "pick up the {obj}",
        "grasp the {obj}",
        "how to grasp the {obj}?",
        "lift the {obj} off the table",
        "get the {obj} into the gripper",
        "hold the {obj} in the gripper",
    )
    heldout_templates = ("take hold of the {obj} and keep it up", "i need you to grab the {obj}")
    success_doc = f"both finger pads touch the cube and its bottom is at least {LIFT_HEIGHT * 100:.0f} cm above the table top."

    def _sample_goal(self, rng, split):
        n = n_objects(rng, split, self.n_objects)
        objects = sample_objects(rng, split, n)
        target = focus_objects(rng, objects, 1)[0]
        towers: list[list[int]] = []
        if rng.random() < 0.7:  # PaLM-E's p1: the cube is often under others
            depth = int(rng.integers(1, 4 if split == "L3" else 3))
            others = [i for i in rng.permutation(n).tolist() if i != target][:depth]
            towers = [[target, *others]]
        return objects, GraspGoal(target), towers, decor_zones(rng)

    def _fields(self, template, goal, objects):
        return {"obj": object_names(objects)[goal.obj]}

    def _goal_from(self, template, fields, objects):
        i = resolve(fields["obj"], objects)
        return None if i is None else GraspGoal(i)

    def is_success(self, env, goal):
        if not all(env.touches_finger(goal.obj)):
            return False
        pos, _ = env.object_pose(goal.obj)
        return bool(pos[2] - env.object_sizes[goal.obj] / 2 >= LIFT_HEIGHT)

    def goal_places(self, goal, names):
        return {goal.obj: "in the gripper"}

    def oracle_plan(self, env, goal):
        if self.is_success(env, goal):
            return []
        b = Blocks(env)
        if b.held is not None and b.held != goal.obj:
            b.move(b.held)
        b.clear(goal.obj)
        b.plan.append(SkillCall("pick", obj=goal.obj))
        return b.plan


# ---------------------------------------------------------------------------------------------
class ZoneGoalMixin:
    """Shared oracle and success predicate of the tasks whose goal puts cubes in zones (a mixin, not a task)."""

    def is_success(self, env, goal):
        graph = env.support_graph()
        return all(env.in_zone(i, z, graph) for i, z in goal.assign)

    def goal_places(self, goal, names):
        return {i: f"in the {z} zone" for i, z in goal.assign}

    def oracle_plan(self, env, goal):
        want = dict(goal.assign)
        b = Blocks(env)
        graph = env.support_graph()
        placed = {i for i in want if env.in_zone(i, want[i], graph)}

        def dest(c: int) -> dict[str, Any]:
            # A blocker that belongs in a zone goes straight there: one move instead of two.
            if c in want and c not in placed:
                placed.add(c)
                return {"zone": want[c]}
            return {}

        if b.held is not None:
            b.move(b.held, **dest(b.held))
        for i, _ in goal.assign:
            if i in placed:
                continue
            b.clear(i, dest)
            b.move(i, **dest(i))
        return b.plan


@register_task
class PutInZoneTask(ZoneGoalMixin, PickPlaceTask):
    name = "put_in_zone"
    templates = (
        "put all the {color} blocks in the {zone} zone",
        "move every {color} cube into the {zone} zone",
        "put {blocks} in the {zone} zone",
        "move {blocks} into the {zone} zone",
        "place {blocks} inside the {zone} area",
        "how to put the {color} cubes in the {zone} zone?",
    )
    heldout_templates = (
        "gather all {color} cubes in the {zone} square",
        "the {zone} zone should end up holding {blocks}",
    )
    success_doc = (
        "every goal cube lies in the zone: its centre within the zone's 15 cm square, flat and resting "
        "(on the table or on a cube), not held."
    )

    def _sample_goal(self, rng, split):
        n = n_objects(rng, split, self.n_objects)
        zones = zone_colors(rng, int(rng.integers(2, 5)))
        objects = sample_objects(rng, split, n)
        zone = zones[int(rng.integers(len(zones)))]
        if rng.random() < 0.5:  # by colour: all cubes of the colour of one (focus) cube
            color = objects[focus_objects(rng, objects, 1)[0]].color
            blocks = [i for i, o in enumerate(objects) if o.color == color]
        else:
            blocks = sorted(focus_objects(rng, objects, int(rng.integers(1, 4))))
        towers = random_towers(rng, n, 1, (2, 3)) if rng.random() < 0.4 else []
        return objects, ZoneGoal(tuple((i, zone) for i in blocks)), towers, zones

    def _fields(self, template, goal, objects):
        blocks = [i for i, _ in goal.assign]
        zone = goal.assign[0][1]
        colors = {objects[i].color for i in blocks}
        by_color = len(colors) == 1 and blocks == [i for i, o in enumerate(objects) if o.color in colors]
        if "{color}" in template:
            return {"color": colors.pop(), "zone": zone} if by_color else None
        names = object_names(objects)
        return {"blocks": join_list([names[i] for i in blocks]), "zone": zone}

    def _goal_from(self, template, fields, objects):
        zone = color_word(fields["zone"])
        if zone is None:
            return None
        if "color" in fields:
            color = color_word(fields["color"])
            blocks = [i for i, o in enumerate(objects) if o.color == color]
        else:
            blocks = sorted(resolve_list(fields["blocks"], objects) or [])
        return ZoneGoal(tuple((i, zone) for i in blocks)) if blocks else None


@register_task
class SortByColorTask(ZoneGoalMixin, PickPlaceTask):
    name = "sort_by_color"
    templates = (
        "sort the blocks by color",
        "put every block in the zone of its color",
        "sort the cubes into the zones matching their colors",
        "place each cube in the zone with the same color",
        "how to sort the blocks by color into the zones?",
    )
    heldout_templates = (
        "match every cube to the zone painted like it",
        "group the blocks into their color zones",
    )
    success_doc = "every cube lies in the zone of its own colour (centre within the 15 cm square, flat, resting, not held)."

    def _sample_goal(self, rng, split):
        n = n_objects(rng, split, self.n_objects)
        k = max(int(rng.integers(2, 5)), (n + 1) // 2)  # at most 2-3 cubes per zone
        must = []
        if split == "L2":
            must = [sorted(HELDOUT_COMBOS)[int(rng.integers(len(HELDOUT_COMBOS)))][0]]
        zones = zone_colors(rng, min(k, 4), must)
        objects = sample_objects(rng, split, n, colors=zones)
        towers = random_towers(rng, n, 1, (2, 3)) if rng.random() < 0.4 else []
        goal = ZoneGoal(tuple((i, o.color) for i, o in enumerate(objects)))
        return objects, goal, towers, zones

    def _goal_from(self, template, fields, objects):
        return ZoneGoal(tuple((i, o.color) for i, o in enumerate(objects)))


# ---------------------------------------------------------------------------------------------
@register_task
class UnstackTask(PickPlaceTask):
    name = "unstack"
    templates = (
        "unstack the tower",
        "take the tower apart",
        "put every block on the table",
        "unstack all the blocks",
        "make sure no block is on top of another block",
        "how to unstack the blocks?",
    )
    heldout_templates = ("dismantle the stack", "spread the cubes out so that each one rests on the table")
    success_doc = (
        "every cube rests directly on the table: flat, bottom within 1 cm of the table top, not held."
    )

    def _sample_goal(self, rng, split):
        n = n_objects(rng, split, self.n_objects)
        objects = sample_objects(rng, split, n)
        first = focus_objects(rng, objects, 1)
        lengths = (3, 4) if split == "L3" else (2, 3)
        count = 2 if split == "L3" else 1
        towers = random_towers(rng, n, count, lengths)
        if split == "L2" and not any(first[0] in t for t in towers):
            towers[0][-1] = first[0]  # the held-out cube takes part in the tower
        return objects, UnstackGoal(tuple(range(n))), towers, decor_zones(rng)

    def _goal_from(self, template, fields, objects):
        return UnstackGoal(tuple(range(len(objects))))

    def is_success(self, env, goal):
        graph = env.support_graph()
        return all(graph[i] == -1 for i in goal.blocks)

    def goal_places(self, goal, names):
        return dict.fromkeys(goal.blocks, "on the table")

    def oracle_plan(self, env, goal):
        b = Blocks(env)
        if b.held is not None:
            b.move(b.held)
        for i in goal.blocks:
            if b.parent[i] == -1:
                b.clear(i)
            elif b.parent[i] is None:  # loose or tilted on the table: set it down flat
                b.clear(i)
                b.move(i)
        return b.plan
