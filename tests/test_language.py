"""The instruction grammar engine shared by both worlds: typed slots said and read back, one normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from envs import load_world
from envs.catalogue import ObjectDesc
from envs.language import Grammar, ObjectList, ObjectRef, Words, normalize
from envs.tasks.base import make_task, task_names
from envs.vocab import object_names

SCENE = [
    ObjectDesc("red", "cube", "small"),
    ObjectDesc("blue", "cube", "large"),
    ObjectDesc("red", "cube", "large"),
]
CUBE = ObjectRef(
    names=lambda i, objs: [object_names(objs)[i]],
    readings=lambda objs: {n: i for i, n in enumerate(object_names(objs))},
)
GRAMMAR = Grammar(
    {
        "obj": CUBE,
        "zone": Words({"green": ("green",), "blue": ("blue", "navy")}),
        "cubes": ObjectList(CUBE.with_article("the ")),
        "tower": ObjectList(CUBE.with_article("the "), sep=" on "),
    }
)


def test_normalize_folds_case_spacing_commas_spelling_and_end_punctuation():
    assert normalize("  Put the Red  cube ,the blue cube\tin the Colour zone ;!. ") == (
        "put the red cube, the blue cube in the color zone"
    )
    assert normalize("how to stack the a on the b?") == "how to stack the a on the b"


def test_slots_are_said_and_read_back():
    t_zone, t_list, t_tower = (
        "put the {obj} in the {zone} zone",
        "gather {cubes} in the {zone} zone",
        "stack {tower}",
    )
    said = GRAMMAR.render(t_zone, {"obj": 2, "zone": "blue"}, SCENE)
    assert said == "put the large red cube in the blue zone"  # canonical phrases without a generator
    drawn = {
        GRAMMAR.render(t_zone, {"obj": 2, "zone": "blue"}, SCENE, np.random.default_rng(s)) for s in range(20)
    }
    assert drawn == {said, "put the large red cube in the navy zone"}
    assert list(GRAMMAR.parse([t_zone], "Put the large red cube in the NAVY zone.", SCENE)) == [
        (t_zone, {"obj": 2, "zone": "blue"})
    ]
    three = GRAMMAR.render(t_list, {"cubes": [0, 1, 2], "zone": "green"}, SCENE)
    assert three == "gather the small red cube, the blue cube and the large red cube in the green zone"
    assert next(GRAMMAR.parse([t_list], three, SCENE))[1]["cubes"] == [0, 1, 2]
    assert next(
        GRAMMAR.parse([t_list], "gather the blue cube then the small red cube in the green zone", SCENE)
    )[1]["cubes"] == [1, 0]
    tower = GRAMMAR.render(t_tower, {"tower": [1, 0]}, SCENE)
    assert tower == "stack the blue cube on the small red cube"
    assert next(GRAMMAR.parse([t_tower], tower, SCENE))[1] == {"tower": [1, 0]}


@pytest.mark.parametrize(
    "text",
    [
        "put the red cube in the blue zone",  # two red cubes: "red cube" names neither
        "put the large red cube in the purple zone",  # not a zone word of the grammar
        "stack the blue cube on the blue cube",  # a list naming a cube twice
        "put the large red cube in the blue zone please",
    ],
)
def test_text_outside_the_grammar_reads_as_nothing(text):
    templates = ["put the {obj} in the {zone} zone", "stack {tower}"]
    assert list(GRAMMAR.parse(templates, text, SCENE)) == []


def test_extending_a_grammar_leaves_the_original_and_unknown_slots_are_named():
    wider = GRAMMAR.extend(target=CUBE)
    assert "target" in wider.slots and "target" not in GRAMMAR.slots
    with pytest.raises(ValueError, match=r"\{target\}"):
        list(
            GRAMMAR.parse(["put the {obj} on the {target}"], "put the blue cube on the small red cube", SCENE)
        )
    with pytest.raises(ValueError, match=r"\{target\}"):
        GRAMMAR.render("put the {obj} on the {target}", {"obj": 0, "target": 1}, SCENE)


@pytest.mark.parametrize("world", ["pickplace", "push"])
def test_every_template_of_every_task_uses_only_slots_its_grammar_types(world):
    load_world(world)
    for name in task_names(world):
        task = make_task(world, name)
        for template in (*task.templates, *task.heldout_templates):
            missing = set(task.grammar.slot_names(template)) - set(task.grammar.slots)
            assert not missing, (name, template, missing)
