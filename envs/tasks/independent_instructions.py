"""Instructions in the user's own words: an independent template set, rendered for the project's goals.

`tests/data/independent_instructions.json` holds instruction templates written by someone who never
saw the project's templates or grammar (issue #19): per task a list of templates with slots, plus
phrase tables for the slots that are not objects or colours. This module says a task's goal in
them, so that the planner and the parser can be measured on phrasings the training grammar does
not generate.

Slots: object slots ({obj} {block} {target} {avoid} {cube1} {cube2} {cube3}) get the object's
unique name without article (`envs.vocab.object_names`: "red cube", "small blue cube", "red
moon"); {color} and {zone} get a colour word; {location} {direction} {relation} {corner} {side}
get a phrase drawn from the file's table of that name for the goal's value (a key of
`BOARD_LOCATIONS`, `DIRECTIONS`, a `PUSH_RELATIONS` key other than "next to", a corner, "left" /
"right"). Template fields restrict which goals a template can say: `n` (stack: tower length;
put_in_zone: how many cubes are named), `variant` "color" (put_in_zone: "all the <colour> cubes",
only for a goal that is exactly every cube of one colour) and `distance` "near" / "far"
(block2relativelocation: "slightly" / far).
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envs.catalogue import ObjectDesc
from envs.language import TemplatePhrasing
from envs.vocab import object_names

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "tests" / "data" / "independent_instructions.json"
PHRASE_SLOTS: tuple[str, ...] = ("location", "direction", "relation", "corner", "side")
OBJECT_SLOTS: tuple[str, ...] = ("obj", "block", "target", "avoid", "cube1", "cube2", "cube3")
WORD_SLOTS: tuple[str, ...] = ("color", "zone")
_SLOT = re.compile(r"\{(\w+)\}")
_FIELDS = ("template", "n", "variant", "distance")


@dataclass(frozen=True)
class Template:
    """One template of the file: its text and the goal restrictions it carries (None: unrestricted)."""

    text: str
    n: int | None = None
    variant: str | None = None
    distance: str | None = None

    @property
    def slots(self) -> tuple[str, ...]:
        """The slot names the text uses, in order."""
        return tuple(_SLOT.findall(self.text))


# ---- goal -> slot values, per task -----------------------------------------------------------------
# Each function gets (template, goal, objects) and returns the slot values that say the goal in the
# template, or None when the template cannot say it. Object slots take scene indices, word slots
# colour words, phrase slots keys of the file's phrase tables.
Binder = Callable[[Template, Any, Sequence[ObjectDesc]], "dict[str, Any] | None"]


def _stack(t: Template, goal: Any, objects: Sequence[ObjectDesc]) -> dict[str, Any] | None:
    order = list(goal.order)  # bottom first; {cube1} is the bottom cube
    return {f"cube{k + 1}": i for k, i in enumerate(order)} if t.n == len(order) else None


def _put_in_zone(t: Template, goal: Any, objects: Sequence[ObjectDesc]) -> dict[str, Any] | None:
    blocks = [i for i, _ in goal.assign]
    zones = {z for _, z in goal.assign}
    if not blocks or len(zones) != 1:
        return None
    zone = zones.pop()
    if t.variant == "color":
        colors = {objects[i].color for i in blocks}
        every = [i for i, o in enumerate(objects) if o.color in colors]
        return {"color": colors.pop(), "zone": zone} if len(colors) == 1 and sorted(blocks) == every else None
    if t.n != len(blocks):
        return None
    return {"zone": zone, **{f"cube{k + 1}": i for k, i in enumerate(blocks)}}


def _relative(t: Template, goal: Any, objects: Sequence[ObjectDesc]) -> dict[str, Any] | None:
    near = goal.distance == "slightly"
    if t.distance not in ("near", "far") or (t.distance == "near") != near:
        return None
    return {"block": goal.obj, "direction": goal.direction}


BINDERS: dict[str, Binder] = {
    "grasp": lambda t, g, o: {"obj": g.obj},
    "stack": _stack,
    "put_in_zone": _put_in_zone,
    "sort_by_color": lambda t, g, o: {},
    "unstack": lambda t, g, o: {},
    "block2block": lambda t, g, o: {"block": g.obj, "target": g.target},
    "block2absolutelocation": lambda t, g, o: {"block": g.obj, "location": g.location},
    "block2relativelocation": _relative,
    "block2block_relative_location": lambda t, g, o: {"block": g.obj, "target": g.target, "relation": g.relation},
    "separate": lambda t, g, o: {"block": g.obj, "avoid": g.avoid},
    "corner_to_same_color": lambda t, g, o: {"corner": g.corner},
    "sort_corners": lambda t, g, o: {},
    "side_together": lambda t, g, o: {"side": g.side},
    "all_to_center": lambda t, g, o: {},
    "color_to_location": lambda t, g, o: {"color": g.color, "location": g.location},
}
"""Task name -> how its goal fills the file's slots."""


class IndependentInstructions:
    """The independent template set: which templates can say a goal, and the instruction text.

    `phrases`: slot name (one of PHRASE_SLOTS) -> goal value -> phrases; `tasks`: task name -> templates.
    """

    def __init__(self, phrases: Mapping[str, Mapping[str, Sequence[str]]], tasks: Mapping[str, Sequence[Template]]):
        self.phrases = {slot: {k: tuple(v) for k, v in table.items()} for slot, table in phrases.items()}
        self.tasks = {name: tuple(ts) for name, ts in tasks.items()}

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PATH) -> IndependentInstructions:
        """Read the JSON file (keys `phrases` and `tasks`; see the module doc).

        Raises ValueError (naming the file and what is wrong) for a missing key, an unknown task or
        template field, a slot no table or goal fills, or an empty phrase list; OSError if unreadable.
        """
        path = Path(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        for key in ("phrases", "tasks"):
            if not isinstance(data.get(key), dict):
                raise ValueError(f"{path}: expected an object under {key!r}")  # noqa: TRY004 - a user error
        unknown = sorted(set(data["tasks"]) - set(BINDERS))
        if unknown:
            raise ValueError(f"{path}: unknown tasks {unknown}; known tasks: {sorted(BINDERS)}")
        known_slots = {*OBJECT_SLOTS, *WORD_SLOTS, *data["phrases"]}
        tasks: dict[str, list[Template]] = {}
        for name, entries in data["tasks"].items():
            for entry in entries:
                extra = sorted(set(entry) - set(_FIELDS))
                if extra or not isinstance(entry.get("template"), str):
                    raise ValueError(f"{path}: task {name!r}: template entry {entry!r} needs a 'template' string "
                                     f"and only the fields {list(_FIELDS)}")
                t = Template(entry["template"], entry.get("n"), entry.get("variant"), entry.get("distance"))
                bad = sorted(set(t.slots) - known_slots)
                if bad:
                    raise ValueError(f"{path}: task {name!r}: template {t.text!r} has slots {bad} that nothing fills; "
                                     f"known slots: {sorted(known_slots)}")
                tasks.setdefault(name, []).append(t)
        for slot, table in data["phrases"].items():
            empty = [k for k, v in table.items() if not v]
            if empty:
                raise ValueError(f"{path}: phrases.{slot}: no phrases for {empty}")
        return cls(data["phrases"], tasks)

    def usable(self, task: str, goal: Any, objects: Sequence[ObjectDesc]) -> list[tuple[Template, dict[str, Any]]]:
        """(template, slot values) for each template of `task` that can say `goal`, in file order.

        Empty when none can (e.g. a stack goal longer than any template's `n`). ValueError for a task
        the file has no templates for (listing those it has).
        """
        if task not in self.tasks:
            raise ValueError(f"no independent templates for task {task!r}; tasks with templates: {sorted(self.tasks)}")
        out = []
        for t in self.tasks[task]:
            values = BINDERS[task](t, goal, objects)
            if values is not None and all(self._fillable(s, values) for s in t.slots):
                out.append((t, values))
        return out

    def _fillable(self, slot: str, values: Mapping[str, Any]) -> bool:
        if slot not in values:
            return False
        return slot not in self.phrases or values[slot] in self.phrases[slot]

    def fill(
        self, template: Template, values: Mapping[str, Any], objects: Sequence[ObjectDesc],
        rng: np.random.Generator | None = None,
    ) -> str:
        """The template's text with every slot said: objects by name, colours as words, phrase slots by a
        phrase of their table drawn with `rng` (one `integers` draw per phrase slot, left to right; the
        first phrase when `rng` is None). KeyError if `values` lacks a slot of the template."""
        return self._say(template, values, objects,
                         lambda slot, options: options[0] if rng is None else options[int(rng.integers(len(options)))])

    def _say(
        self, template: Template, values: Mapping[str, Any], objects: Sequence[ObjectDesc],
        choose: Callable[[str, tuple[str, ...]], str],
    ) -> str:
        names = object_names(objects)

        def say(m: re.Match[str]) -> str:
            slot, value = m[1], values[m[1]]
            if slot in self.phrases:
                return choose(slot, self.phrases[slot][value])
            return names[value] if slot in OBJECT_SLOTS else str(value)

        return _SLOT.sub(say, template.text)

    def render(
        self, task: str, goal: Any, objects: Sequence[ObjectDesc], rng: np.random.Generator,
        exclude: Callable[[str], bool] | None = None,
    ) -> str | None:
        """An instruction for `goal` in one of the file's templates for `task`, or None when none can say it.

        Without `exclude`: the template is drawn with one `rng.integers` call among `usable(...)`, then
        its phrase slots (see `fill`). With `exclude` (text -> whether to leave it out, e.g.
        `training_says(task_obj, objects)`): among the templates with a text not excluded, one draw for
        the template and one for the text among its kept renderings; None when every text is excluded.
        The same generator state gives the same text. ValueError as `usable`.
        """
        usable = self.usable(task, goal, objects)
        if exclude is None:
            if not usable:
                return None
            template, values = usable[int(rng.integers(len(usable)))]
            return self.fill(template, values, objects, rng)
        kept = [texts for t, v in usable if (texts := [x for x in self._texts(t, v, objects) if not exclude(x)])]
        if not kept:
            return None
        texts = kept[int(rng.integers(len(kept)))]
        return texts[int(rng.integers(len(texts)))]

    def renderings(self, task: str, goal: Any, objects: Sequence[ObjectDesc]) -> list[str]:
        """Every text the file can say `goal` in: each usable template with each choice of phrases."""
        return [x for t, v in self.usable(task, goal, objects) for x in self._texts(t, v, objects)]

    def _texts(self, template: Template, values: Mapping[str, Any], objects: Sequence[ObjectDesc]) -> list[str]:
        """The template said with each choice of phrases, in table order (the last slot varying fastest)."""
        phrase_slots = [s for s in template.slots if s in self.phrases]
        out = []
        for combo in itertools.product(*(self.phrases[s][values[s]] for s in phrase_slots)):
            picked = dict(zip(phrase_slots, combo))
            out.append(self._say(template, values, objects, lambda slot, _, p=picked: p[slot]))
        return out


@functools.cache
def independent_set() -> IndependentInstructions:
    """The committed set (`DEFAULT_PATH`), loaded once per process: what split L4 says besides the held-out templates."""
    return IndependentInstructions.load()


def training_goal(task: TemplatePhrasing, text: str, objects: Sequence[ObjectDesc]) -> Any | None:
    """The goal `text` means in the task's TRAINING language (its templates, goal templates and frames), or None.

    None means the training grammar cannot generate `text` for any goal in this scene: every text it
    renders parses back to its goal (`TemplatePhrasing.read` with `heldout=False`).
    """
    return task.read(text, objects, heldout=False)


def training_says(task: TemplatePhrasing, objects: Sequence[ObjectDesc]) -> Callable[[str], bool]:
    """A `render(exclude=...)` predicate: whether the task's training grammar can generate the text here."""
    return lambda text: training_goal(task, text, objects) is not None


def collisions(ii: IndependentInstructions, task: TemplatePhrasing, seeds: Sequence[int]) -> dict[str, str]:
    """Template text -> one of its renderings that `task`'s training language reads (`training_goal`), over the
    L1 instances of `seeds`; empty when training can say none of the set's texts for these scenes."""
    found: dict[str, str] = {}
    for seed in seeds:
        inst = task.sample(np.random.default_rng(seed), "L1")  # type: ignore[attr-defined]
        for template, values in ii.usable(task.name, inst.goal, inst.objects):  # type: ignore[attr-defined]
            if template.text in found:
                continue
            for text in ii._texts(template, values, inst.objects):
                if training_goal(task, text, inst.objects) is not None:
                    found[template.text] = text
                    break
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m envs.tasks.independent_instructions [FILE] [--seeds N]`: list the file's templates that the
    training grammar can say (on N L1 scenes per task); exit 1 if there are any."""
    import argparse

    from envs import load_world
    from envs.tasks.base import TASK_REGISTRY, make_task, seed_range

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("file", nargs="?", default=str(DEFAULT_PATH))
    ap.add_argument("--seeds", type=int, default=50)
    args = ap.parse_args(argv)
    ii = IndependentInstructions.load(args.file)
    lo, _ = seed_range("L1")
    total = 0
    for world in ("pickplace", "push"):
        load_world(world)
        for name in sorted(set(TASK_REGISTRY[world]) & set(ii.tasks)):
            found = collisions(ii, make_task(world, name), range(lo, lo + args.seeds))
            total += len(found)
            for template, text in found.items():
                print(f"{name}: {template!r} -- training can say {text!r}")
    print(f"{total} templates the training grammar can say")
    return 1 if total else 0


if __name__ == "__main__":
    raise SystemExit(main())
