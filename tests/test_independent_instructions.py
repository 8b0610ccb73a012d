"""The independent instruction set (issue #19): its size, its rendering, and that training never says it.

`tests/data/independent_instructions.json` was written without seeing the project's templates;
`envs.tasks.independent_instructions` says sampled goals in it. Every task is sampled the way the
env samples it (`task.sample(rng, "L1")` on L1 seeds). "Training cannot generate it" is checked
two ways: the task's grammar parsing with the TRAINING templates only finds no goal at all
(`training_goal`; the parser reads a superset of what the templates render: optional articles,
`obj j`, every synonym), and, independently of the parser, the normalised text is none of the
texts the training templates render for the same goal with every phrase the grammar can say.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from envs import load_world
from envs.base import check_instruction
from envs.language import SLOT, ObjectList, ObjectRef, Words, normalize
from envs.tasks.base import TASK_REGISTRY, make_task, seed_range
from envs.tasks.independent_instructions import (
    DEFAULT_PATH,
    IndependentInstructions,
    training_goal,
    training_says,
)
from envs.tasks.pickplace.stack import StackGoal

for _world in ("pickplace", "push"):
    load_world(_world)
WORLD_TASKS = [(w, t) for w in ("pickplace", "push") for t in sorted(TASK_REGISTRY[w])]
SEEDS = 50
MIN_COVERAGE = 0.9  # of L1 goals the set says, leaving out what training can say


@pytest.fixture(scope="module")
def ii() -> IndependentInstructions:
    return IndependentInstructions.load()


def test_file_size():
    tasks = json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))["tasks"]
    for world, name in WORLD_TASKS:
        assert len(tasks[name]) >= (30 if world == "pickplace" else 10), name
    assert sum(map(len, tasks.values())) >= 200
    assert set(tasks) == {name for _, name in WORLD_TASKS}


def _said(slot, value, objects) -> list[str]:
    """Every phrase a grammar slot type can say `value` with (what `Slot.say` draws from)."""
    if isinstance(slot, Words):
        return list(slot.table[value])
    if isinstance(slot, ObjectRef):
        return [slot.article + n for n in slot.names(value, objects)]
    assert isinstance(slot, ObjectList), type(slot)
    out = []
    for items in itertools.product(*([slot.lead + x for x in _said(slot.item, i, objects)] for i in value)):
        if slot.sep is not None:
            out.append(slot.sep.join(items))
        else:
            out.append(items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1])
    return out


def training_texts(task, goal, objects) -> set[str]:
    """Normalised texts of every training template for `goal`, with every phrase choice."""
    out = set()
    for template in task.templates:
        slots = task.slots_for(template, goal, objects)
        if slots is None:
            continue
        names = task.grammar.slot_names(template)
        options = [_said(task.grammar.slots[n], slots[n], objects) for n in names]
        for combo in itertools.product(*options):
            it = iter(combo)
            out.add(normalize(SLOT.sub(lambda _, it=it: next(it), template)))
    return out


def _instances(world, name):
    task = make_task(world, name)
    lo, _ = seed_range("L1")
    for k in range(SEEDS):
        yield task, k, task.sample(np.random.default_rng(lo + k), "L1")


@pytest.mark.parametrize(("world", "name"), WORLD_TASKS)
def test_rendered_instructions_are_valid_and_new(ii, world, name):
    raw = novel = 0
    for task, k, inst in _instances(world, name):
        text = ii.render(name, inst.goal, inst.objects, np.random.default_rng(k))
        raw += text is not None
        if text is not None:
            check_instruction(text)
        said = training_texts(task, inst.goal, inst.objects)
        assert normalize(inst.instruction) in said  # the enumeration holds what the task itself says
        for x in ii.renderings(name, inst.goal, inst.objects):
            if normalize(x) in said:  # the two checks agree where the enumeration finds a text
                assert training_goal(task, x, inst.objects) == inst.goal, x
        text = ii.render(name, inst.goal, inst.objects, np.random.default_rng(k), training_says(task, inst.objects))
        if text is None:
            continue
        novel += 1
        check_instruction(text)
        # stronger than training_goal(...) is None: no training template matches the text at all
        assert not list(task.grammar.parse(task.templates, text, inst.objects)), text
        assert normalize(text) not in said, text
    assert raw == SEEDS, f"{name}: the set said {raw}/{SEEDS} L1 goals"
    assert novel >= MIN_COVERAGE * SEEDS, f"{name}: the set said {novel}/{SEEDS} L1 goals outside training"


def test_training_overlap_is_found(ii):
    """The file repeats some training phrasings verbatim; the checks see them (so they can fail)."""
    task = make_task("pickplace", "grasp")
    inst = next(i for _, _, i in _instances("pickplace", "grasp"))
    texts = ii.renderings("grasp", inst.goal, inst.objects)
    overlap = [x for x in texts if normalize(x) in training_texts(task, inst.goal, inst.objects)]
    assert overlap and all(training_goal(task, x, inst.objects) == inst.goal for x in overlap)
    assert len(overlap) < len(texts)
    exclude = training_says(task, inst.objects)
    for k in range(20):
        assert not exclude(ii.render("grasp", inst.goal, inst.objects, np.random.default_rng(k), exclude))


def test_render_is_deterministic_and_respects_template_fields(ii):
    task = make_task("pickplace", "stack")
    inst = next(i for _, _, i in _instances("pickplace", "stack"))
    a = [ii.render("stack", inst.goal, inst.objects, np.random.default_rng(s)) for s in range(10)]
    b = [ii.render("stack", inst.goal, inst.objects, np.random.default_rng(s)) for s in range(10)]
    assert a == b and len(set(a)) > 1
    n = len(inst.goal.order)
    assert all(t.n == n for t, _ in ii.usable("stack", inst.goal, inst.objects))
    names = [ii.fill(t, v, inst.objects) for t, v in ii.usable("stack", inst.goal, inst.objects)]
    assert all(task.parse_instruction(x, inst.objects) in (None, inst.goal) for x in names)
    longest = max(t.n for t in ii.tasks["stack"])
    tall = StackGoal(tuple(range(longest + 1)))
    objects = inst.objects + inst.objects[: max(0, longest + 1 - len(inst.objects))]
    assert ii.render("stack", tall, objects, np.random.default_rng(0)) is None


def test_load_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"phrases": {}, "tasks": {"grasp": [{"template": "lift the {thing}"}]}}))
    with pytest.raises(ValueError, match=r"slots \['thing'\]"):
        IndependentInstructions.load(bad)
    bad.write_text(json.dumps({"phrases": {}, "tasks": {"fly": []}}))
    with pytest.raises(ValueError, match="unknown tasks"):
        IndependentInstructions.load(bad)
    with pytest.raises(ValueError, match="no independent templates"):
        IndependentInstructions({}, {}).usable("grasp", None, [])
