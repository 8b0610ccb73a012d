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
        for template in (*task.training_templates(), *task.heldout_templates):
            missing = set(task.grammar.slot_names(template)) - set(task.grammar.slots)
            assert not missing, (name, template, missing)


def test_alternatives_and_synonym_sets_are_drawn_and_read_back():
    template = "<place> the {obj}(| down) <on> the {zone} zone"
    said = {GRAMMAR.render(template, {"obj": 1, "zone": "blue"}, SCENE, np.random.default_rng(k)) for k in range(200)}
    assert GRAMMAR.render(template, {"obj": 1, "zone": "blue"}, SCENE) == "put the blue cube on the blue zone"
    assert {"place the blue cube down onto the navy zone", "set the blue cube on top of the blue zone"} <= said
    assert all("  " not in s for s in said)
    for text in said:
        assert [v for _, v in GRAMMAR.parse([template], text, SCENE)] == [{"obj": 1, "zone": "blue"}], text
    assert not list(GRAMMAR.parse([template], "put the blue cube down down on the blue zone", SCENE))
    with pytest.raises(ValueError, match="no synonym set <fly>"):
        GRAMMAR.render("<fly> the {obj}", {"obj": 0}, SCENE)


def test_frames_and_surface_wrap_a_clause_and_fold_away_again():
    load_world("pickplace")
    task = make_task("pickplace", "grasp")
    rng = np.random.default_rng(0)
    texts = {task.sample(rng, "train").instruction for _ in range(300)}
    assert any(t.endswith("?") for t in texts) and any(t[0].isupper() for t in texts)
    assert any(t.lower().startswith(("please ", "could you", "can you")) for t in texts)
    assert any(t.lower().startswith(("i want", "i'd like", "the ")) for t in texts)  # goal-first statements
    inst = task.sample(np.random.default_rng(5), "train")
    name = object_names(inst.objects)[inst.goal.obj]
    for text in (f"Could you please grab the {name}?", f"go ahead and lift the {name} up!", f"GRAB THE {name}, PLEASE",
                 f"I'd like the {name} in the gripper.", f"how do i pick up the {name}"):
        assert task.parse_instruction(text, inst.objects) == inst.goal, text
    assert task.parse_instruction(f"could you please juggle the {name}?", inst.objects) is None


def test_a_cube_is_referred_to_by_any_words_that_single_it_out():
    from envs.tasks.pickplace.language import cube_phrases, cube_readings

    phrases = [cube_phrases(i, SCENE) for i in range(3)]
    assert phrases[1][0] == "blue cube" and {"blue block", "blue one", "large blue one"} <= set(phrases[1]) and "big cube" not in phrases[1]
    assert phrases[0][0] == "small red cube" and "small cube" in phrases[0] and "red cube" not in phrases[0]
    readings = cube_readings(SCENE)
    assert "red cube" not in readings and readings["little red block"] == 0 and readings["obj 3"] == 2
    assert "large cube" not in readings  # two large cubes: the words single out none
