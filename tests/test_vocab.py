"""The plan vocabulary: names are unique and minimal; every SkillCall form renders; bad calls are refused."""

import numpy as np
import pytest

from envs import make_env
from envs.catalogue import MAX_OBJECTS, OBJ_DIM, ObjectDesc, object_row, zone_row
from envs.vocab import SkillCall, object_names, render_step, row_names


def test_names_add_size_only_when_needed():
    objs = [ObjectDesc("red", "cube", "small"), ObjectDesc("red", "cube", "large"), ObjectDesc("blue", "cube", "small")]
    assert object_names(objs) == ["small red cube", "large red cube", "blue cube"]


def test_indistinguishable_objects_fall_back_to_referral():
    objs = [ObjectDesc("red", "cube", "small"), ObjectDesc("red", "cube", "small")]
    assert object_names(objs) == ["obj 1", "obj 2"]


@pytest.mark.parametrize(("world", "task"), [("pickplace", "sort_by_color"), ("push", "block2block")])
def test_names_read_from_the_state_rows_are_the_scenes_names(world, task):
    """What a model prompt names a cube (from its observation rows) is what the scene's plan steps call it."""
    env = make_env(world, task, image_size=(16, 16))
    sized = 0
    try:
        for seed in range(12):
            obs, _ = env.reset(seed=seed)
            names = object_names(env.unwrapped.objects)
            assert row_names(obs["objects"]) == names
            sized += any(n.split()[0] in ("small", "large") for n in names)
    finally:
        env.close()
    assert sized > 0 or world == "push"  # pick-and-place scenes with two cubes of a colour were among them


def test_names_from_rows_refuse_zone_rows_and_bad_shapes():
    rows = np.zeros((MAX_OBJECTS, OBJ_DIM), np.float32)
    rows[0] = object_row([0.5, 0, 0.02], [0, 0, 0, 1], 0.05, ObjectDesc("red", "cube", "large"))
    rows[1] = object_row([0.5, 0.1, 0.02], [0, 0, 0, 1], 0.04, ObjectDesc("red", "cube", "small"))
    assert row_names(rows) == ["large red cube", "small red cube"]
    rows[1] = zone_row("red", (0.4, 0.1, 0.0), 0.15)
    with pytest.raises(ValueError, match="a zone row is not an object"):
        row_names(rows)
    with pytest.raises(ValueError, match=r"must be \(n, 11\)"):
        row_names(rows[:, :5])


def test_render_every_form():
    names = ["red cube", "blue cube"]
    assert render_step(SkillCall("pick", obj=0), names) == "pick up the red cube"
    assert render_step(SkillCall("place", obj=0, target=1), names) == "place the red cube on the blue cube"
    assert render_step(SkillCall("place", obj=0, zone="green"), names) == "place the red cube in the green zone"
    assert render_step(SkillCall("place", obj=0, location="table"), names) == "place the red cube on the table"
    assert render_step(SkillCall("push", obj=0, location="top left"), names) == "push the red cube to the top left corner"
    assert render_step(SkillCall("push", obj=0, target=1, relation="left of"), names) == (
        "push the red cube to the left of the blue cube"
    )
    assert render_step(SkillCall("push", obj=0, direction="left", distance="far"), names) == (
        "push the red cube far to the left"
    )
    assert render_step(SkillCall("done"), names) == "done"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"skill": "fly", "obj": 0},
        {"skill": "pick"},
        {"skill": "place", "obj": 0},
        {"skill": "place", "obj": 0, "target": 1, "zone": "red"},
        {"skill": "place", "obj": 0, "target": 0},
        {"skill": "push", "obj": 0, "location": "nowhere"},
        {"skill": "place", "obj": 0, "zone": "nowhere"},
        {"skill": "push", "obj": 0, "direction": "left"},
        {"skill": "done", "obj": 1},
    ],
)
def test_malformed_calls_are_refused(kwargs):
    with pytest.raises(ValueError, match="invalid SkillCall"):
        SkillCall(**kwargs)
