"""The plan vocabulary: names are unique and minimal; every SkillCall form renders; bad calls are refused."""

import pytest

from envs.catalogue import ObjectDesc
from envs.vocab import SkillCall, object_names, render_step


def test_names_add_size_only_when_needed():
    objs = [ObjectDesc("red", "cube", "small"), ObjectDesc("red", "cube", "large"), ObjectDesc("blue", "cube", "small")]
    assert object_names(objs) == ["small red cube", "large red cube", "blue cube"]


def test_indistinguishable_objects_fall_back_to_referral():
    objs = [ObjectDesc("red", "cube", "small"), ObjectDesc("red", "cube", "small")]
    assert object_names(objs) == ["obj 1", "obj 2"]


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
        dict(skill="fly", obj=0),
        dict(skill="pick"),
        dict(skill="place", obj=0),
        dict(skill="place", obj=0, target=1, zone="red"),
        dict(skill="place", obj=0, target=0),
        dict(skill="push", obj=0, location="nowhere"),
        dict(skill="done", obj=1),
    ],
)
def test_malformed_calls_are_refused(kwargs):
    with pytest.raises(ValueError, match="invalid SkillCall"):
        SkillCall(**kwargs)
