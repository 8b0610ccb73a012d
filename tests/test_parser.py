"""PlanParser: every rendered step parses back to its SkillCall; any string gives a call or a PlanError; errors say why."""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.parser import (
    BOARD_SYNONYMS,
    PlanError,
    PlanParser,
    SceneContext,
    parse_step,
    valid_calls,
    valid_steps,
)
from envs.catalogue import COLOR_NAMES, SHAPE_NAMES, SIZE_NAMES, ObjectDesc
from envs.vocab import BOARD_LOCATIONS, DIRECTIONS, DISTANCES, PUSH_RELATIONS, SkillCall, render_step

PICK_SCENE = SceneContext(
    (ObjectDesc("red", "cube", "small"), ObjectDesc("red", "cube", "large"), ObjectDesc("blue", "cube", "small"),
     ObjectDesc("green", "cube", "large")),
    world="pickplace", zones=("green", "yellow"),
)
PUSH_SCENE = SceneContext(
    (ObjectDesc("red", "moon"), ObjectDesc("red", "pentagon"), ObjectDesc("blue", "cube"), ObjectDesc("green", "star")),
    world="push",
)


# ---- round trips -----------------------------------------------------------------------------
@st.composite
def scenes(draw) -> SceneContext:
    """Random scenes of 1-8 objects (duplicates allowed, so `obj j` names appear), for either world."""
    world = draw(st.sampled_from(["pickplace", "push"]))
    n = draw(st.integers(1, 8))
    shapes = ["cube"] if world == "pickplace" else list(SHAPE_NAMES)
    sizes = list(SIZE_NAMES) if world == "pickplace" else [None]
    objs = tuple(
        ObjectDesc(draw(st.sampled_from(COLOR_NAMES)), draw(st.sampled_from(shapes)), draw(st.sampled_from(sizes)))
        for _ in range(n)
    )
    zones = tuple(draw(st.lists(st.sampled_from(COLOR_NAMES), min_size=0, max_size=4, unique=True))) if world == "pickplace" else ()
    return SceneContext(objs, world=world, zones=zones)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenes(), st.data())
def test_every_valid_call_renders_and_parses_back(ctx, data):
    call = data.draw(st.sampled_from(valid_calls(ctx)))
    text = render_step(call, ctx.names)
    assert parse_step(text, ctx) == call, text


@settings(max_examples=60, deadline=None)
@given(scenes(), st.data())
def test_tolerant_forms_parse_to_the_same_call(ctx, data):
    call = data.draw(st.sampled_from(valid_calls(ctx)))
    text = render_step(call, ctx.names)
    k = data.draw(st.integers(1, 20))
    variants = [text.upper(), f"Step {k}. {text}.", f"  {text} !", f"{k}) {text}", f'"{text}"', text.replace(" ", "   ")]
    for v in variants:
        assert parse_step(v, ctx) == call, v


def test_call_form():
    p = PlanParser(PICK_SCENE)
    assert p.parse("pick(blue cube)") == SkillCall("pick", obj=2)
    assert p.parse("place(large red cube, green cube)") == SkillCall("place", obj=1, target=3)
    assert p.parse("place(blue cube, yellow zone)") == SkillCall("place", obj=2, zone="yellow")
    assert p.parse("Step 3. place(blue cube, table).") == SkillCall("place", obj=2, location="table")
    assert p.parse("done()") == SkillCall("done")
    q = PlanParser(PUSH_SCENE)
    assert q.parse("push(red moon, top left corner)") == SkillCall("push", obj=0, location="top left")
    assert q.parse("push(green star, blue cube)") == SkillCall("push", obj=3, target=2, relation="next to")
    assert q.parse("push(green star, left of blue cube)") == SkillCall("push", obj=3, target=2, relation="left of")
    assert q.parse("push(red moon, slightly, left)") == SkillCall("push", obj=0, direction="left", distance="slightly")


def test_language_table_short_names_and_synonyms():
    q = PlanParser(PUSH_SCENE)
    assert q.parse("push the blue block to the center") == SkillCall("push", obj=2, location="center")
    assert q.parse("push the star to the middle of the board") == SkillCall("push", obj=3, location="center")
    assert q.parse("slide the moon to the upper right corner") == SkillCall("push", obj=0, location="top right")
    assert q.parse("move the moon slightly left") == SkillCall("push", obj=0, direction="left", distance="slightly")
    assert q.parse("push the red pentagon above the blue cube") == SkillCall("push", obj=1, target=2, relation="top of")
    assert q.parse("push the blue cube to the red moon") == SkillCall("push", obj=2, target=0, relation="next to")
    amb = q.parse("push the red block to the center")
    assert isinstance(amb, PlanError) and amb.kind == "ambiguous_reference"
    assert "red moon" in amb.reason and "red pentagon" in amb.reason
    assert all(v in BOARD_LOCATIONS for v in BOARD_SYNONYMS.values())
    for key in BOARD_LOCATIONS:  # every canonical location phrase is a synonym of itself
        assert q.parse(f"push the star to {BOARD_LOCATIONS[key]}") == SkillCall("push", obj=3, location=key)


def test_referral_and_sizes():
    p = PlanParser(PICK_SCENE)
    assert p.parse("pick up obj 2") == SkillCall("pick", obj=1)
    assert p.parse("pick up <obj_4>") == SkillCall("pick", obj=3)
    assert p.parse("pick up the big red cube") == SkillCall("pick", obj=1)
    assert p.parse("pick up the green block") == SkillCall("pick", obj=3)
    twins = SceneContext((ObjectDesc("red", "cube", "small"), ObjectDesc("red", "cube", "small")), world="pickplace")
    assert twins.names == ("obj 1", "obj 2")
    assert parse_step("pick up obj 2", twins) == SkillCall("pick", obj=1)
    assert parse_step("pick up the small red cube", twins).kind == "ambiguous_reference"


# ---- errors say what was wrong ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ctx", "text", "kind", "says"),
    [
        (PICK_SCENE, "fly to the moon", "unknown_skill", "fly"),
        (PICK_SCENE, "push the blue cube to the center", "unknown_skill", "pickplace"),
        (PUSH_SCENE, "pick up the red moon", "unknown_skill", "push"),
        (PICK_SCENE, "pick up the pink cube", "unknown_object", "pink"),
        (PICK_SCENE, "pick up the yellow cube", "unknown_object", "yellow cube"),
        (PICK_SCENE, "pick up obj 9", "unknown_object", "obj 9"),
        (PICK_SCENE, "pick up the red cube", "ambiguous_reference", "small red cube"),
        (PICK_SCENE, "place the blue cube in the purple zone", "unknown_object", "purple zone"),
        (PICK_SCENE, "place the blue cube", "parse_error", "destination"),
        (PICK_SCENE, "place the blue cube on the blue cube", "precondition", "itself"),
        (PICK_SCENE, "done with it", "parse_error", "done"),
        (PICK_SCENE, "", "parse_error", "empty"),
        (PICK_SCENE, "pick up " + "very " * 100 + "red cube", "parse_error", "characters"),
        (PUSH_SCENE, "push the red moon", "parse_error", "destination"),
        (PUSH_SCENE, "push the red moon sideways", "parse_error", "destination"),
        (PUSH_SCENE, "push the star slightly to the sky", "parse_error", "direction"),
    ],
)
def test_errors_name_the_problem(ctx, text, kind, says):
    err = parse_step(text, ctx)
    assert isinstance(err, PlanError), err
    assert err.kind == kind and says in err.reason, err


def test_preconditions_from_the_held_object():
    holding_blue = SceneContext(PICK_SCENE.objects, world="pickplace", zones=("green",), held=2, track_held=True)
    empty_hand = SceneContext(PICK_SCENE.objects, world="pickplace", zones=("green",), held=None, track_held=True)
    err = parse_step("pick up the green cube", holding_blue)
    assert err.kind == "precondition" and "blue cube" in err.reason
    err = parse_step("place the green cube on the table", holding_blue)
    assert err.kind == "precondition" and "holds the blue cube" in err.reason
    err = parse_step("place the blue cube on the green cube", empty_hand)
    assert err.kind == "precondition" and "holds nothing" in err.reason
    assert parse_step("place the blue cube on the green cube", holding_blue) == SkillCall("place", obj=2, target=3)
    # valid steps follow the state: only placing the held cube, or picking with an empty hand
    assert all(s.startswith("place the blue cube") or s == "done" for s in valid_steps(holding_blue))
    assert all(s.startswith("pick up") or s == "done" for s in valid_steps(empty_hand))


def test_valid_steps_cover_every_form_and_all_parse():
    steps = valid_steps(PUSH_SCENE)
    n = len(PUSH_SCENE.objects)
    assert len(steps) == n * (len(BOARD_LOCATIONS) + (n - 1) * len(PUSH_RELATIONS) + len(DIRECTIONS) * len(DISTANCES)) + 1
    assert len(set(steps)) == len(steps)
    for ctx in (PICK_SCENE, PUSH_SCENE):
        assert all(isinstance(parse_step(s, ctx), SkillCall) for s in valid_steps(ctx))


# ---- nothing raises ---------------------------------------------------------------------------------
ADVERSARIAL = [
    "__import__('os').system('rm -rf /')", "eval(pick(red cube))", "pick(" * 200, ")" * 50, "pick up the \x00 cube",
    "place the red cube on the", "place on the blue cube", "push to the top left corner", "obj -1", "pick up obj 0",
    "pick up obj 99999999999999", "step 1. step 2. step 3.", "done\npick up the blue cube", "\n\n\n", "pick(,,,)",
    "place(,)", "push(red moon,)", "place the blue cube in the zone", "pick up the the the", "😀 pick up 😀",
    "pick up the blue cube" * 20, "PLACE(BLUE CUBE, BLUE CUBE)", "push the green star next to", "put the", "move",
    "<obj_1>", "pick up <obj_>", "Result: ok.", "place the blue cube on top of", "a" * 10_000, "pick up\tthe\tblue cube",
]


@pytest.mark.parametrize("ctx", [PICK_SCENE, PUSH_SCENE], ids=["pickplace", "push"])
def test_adversarial_strings_never_raise(ctx):
    for text in ADVERSARIAL:
        out = parse_step(text, ctx)
        assert isinstance(out, (SkillCall, PlanError)), text
    for bad in (None, 3, b"pick up the red cube", ["done"]):
        out = parse_step(bad, ctx)
        assert isinstance(out, PlanError) and out.kind == "parse_error"


_WORDS = st.sampled_from(
    ["pick", "up", "place", "push", "the", "on", "in", "to", "of", "zone", "table", "left", "top", "slightly", "far",
     "red", "blue", "green", "cube", "moon", "star", "obj", "3", "(", ")", ",", ".", "step", "done", "next", "corner",
     "small", "large", "block", "center", "right", "bottom", "above", "put", "move"]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_WORDS, max_size=12).map(" ".join)), st.sampled_from([PICK_SCENE, PUSH_SCENE]))
def test_random_strings_never_raise(text, ctx):
    out = parse_step(text, ctx)
    assert isinstance(out, (SkillCall, PlanError))
    if isinstance(out, SkillCall):  # whatever parses is a well-formed call on objects that exist
        assert out.obj is None or 0 <= out.obj < len(ctx.objects)
        assert out.target is None or 0 <= out.target < len(ctx.objects)
        assert out.skill in ctx.skills


# ---- the real worlds: oracle plans round-trip ---------------------------------------------------------
WORLDS = [w for w, mod in (("pickplace", "envs.pickplace"), ("push", "envs.push")) if importlib.util.find_spec(mod)]


def _world_tasks() -> list[tuple[str, str]]:
    from envs import load_world
    from envs.tasks.base import task_names

    out = []
    for w in WORLDS:
        try:
            load_world(w)
        except ImportError:
            continue
        out += [(w, t) for t in task_names(w)]
    return out


@pytest.mark.parametrize(("world", "task"), _world_tasks())
def test_oracle_plans_round_trip_on_real_scenes(world, task):
    from envs import make_env

    env = make_env(world, task, obs_type="state")
    try:
        u = env.unwrapped
        for seed in range(4):
            env.reset(seed=seed)
            plan = u.task.oracle_plan(u, u.goal)
            assert plan, f"{task} seed {seed}: the oracle has nothing to do at the start"
            live = SceneContext.from_env(u)  # the first step is checked against the held object too
            assert parse_step(render_step(plan[0], u.names), live) == plan[0]
            stateless = SceneContext(tuple(u.objects), tuple(u.names), world=u.world, zones=live.zones)
            for call in plan:
                assert parse_step(render_step(call, u.names), stateless) == call
    finally:
        env.close()
