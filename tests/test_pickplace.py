"""The pick-and-place world: gymnasium contract, determinism, oracles that succeed, clear answers to bad input."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs.tasks.pickplace  # noqa: F401 -- registers the tasks
from envs import load_world, make_env
from envs.catalogue import COLOR_NAMES, MAX_ZONES, OBJ_DIM, OBJ_FIELDS, SHAPE_NAMES
from envs.pickplace import PickPlaceEnv
from envs.tasks.base import make_task, task_names
from envs.tasks.pickplace import HELDOUT_COMBOS
from envs.vocab import SkillCall, object_names
from policies.base import run_skill

TASKS = task_names("pickplace")  # every registered task gets the contract tests below


def run_oracle(env: PickPlaceEnv, max_calls: int = 40) -> list[str]:
    """Oracle planner loop: replan from the current state, execute the first step; returns the step reasons."""
    reasons = []
    for _ in range(max_calls):
        plan = env.task.oracle_plan(env, env.goal)
        if not plan or env.failure:
            break
        reasons.append(run_skill(env, plan[0]).reason)
    return reasons


@pytest.fixture(scope="module")
def env():
    e = PickPlaceEnv("stack", obs_type="state")
    yield e
    e.close()


def test_the_five_tasks_are_registered():
    assert {"grasp", "put_in_zone", "sort_by_color", "stack", "unstack"} <= set(TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_check_env_passes(task):
    e = make_env("pickplace", task)
    check_env(e.unwrapped)
    obs, info = e.reset(seed=0)
    assert obs["rgb"].shape == (128, 128, 3) and obs["rgb"].dtype == np.uint8
    assert "is_success" in info and e.unwrapped.task_description == obs["instruction"]
    e.close()


@pytest.mark.parametrize("task", TASKS)
def test_oracle_succeeds(task):
    e = PickPlaceEnv(task, obs_type="state")
    for seed in (1, 2):
        e.reset(seed=seed)
        assert not e.is_success
        reasons = run_oracle(e)
        assert e.is_success, f"{task} seed {seed}: {e.task_description!r} -> {reasons} ({e.failure})"
        assert e.task.oracle_plan(e, e.goal) == []
    e.close()


def test_grasp_of_a_covered_cube_clears_it_first(env):
    e = PickPlaceEnv("grasp", obs_type="state")
    for seed in range(20):  # find a scene where the goal cube starts under another
        e.reset(seed=seed)
        if e.blocks_above(e.goal.obj):
            break
    covered = e.blocks_above(e.goal.obj)
    plan = e.task.oracle_plan(e, e.goal)
    assert plan[0] == SkillCall("pick", obj=covered[-1]) and plan[-1] == SkillCall("pick", obj=e.goal.obj)
    res = run_skill(e, SkillCall("pick", obj=e.goal.obj))
    assert not res.success and f"the {e.names[e.goal.obj]} is under the {e.names[covered[0]]}" == res.reason
    e.close()


def test_bad_input_gets_clear_answers(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"known tasks: \['grasp', 'put_in_zone'"):
        PickPlaceEnv("juggle")
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        env.control(np.zeros(3))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        env.step(np.array([0.0, np.nan, 0.0, 0.0]))
    missing = run_skill(env, SkillCall("pick", obj=7))
    assert not missing.success and "no object 8" in missing.reason
    nothing = run_skill(env, SkillCall("place", obj=0, location="table"))
    assert not nothing.success and "holds nothing" in nothing.reason
    zone = run_skill(env, SkillCall("pick", obj=0))
    assert zone.success
    bad_zone = next(c for c in ("red", "green", "blue", "yellow", "purple") if c not in env.zones)
    res = run_skill(env, SkillCall("place", obj=0, zone=bad_zone))
    assert not res.success and f"no {bad_zone} zone" in res.reason


@pytest.mark.parametrize("task", TASKS)
def test_every_template_parses_back_to_its_goal(task):
    t = make_task("pickplace", task)
    rng = np.random.default_rng(0)
    covered = set()
    for _ in range(40):
        inst = t.sample(rng, "train")
        for template in (*t.training_templates(), *t.heldout_templates):
            if t.slots_for(template, inst.goal, inst.objects) is None:
                continue
            for draw in (None, rng):  # the canonical phrasing and a drawn one
                text = t.render(template, inst.goal, inst.objects, draw)
                assert t.parse_instruction(text, inst.objects) == inst.goal, text
                assert t.parse_instruction(text.upper() + " .", inst.objects) == inst.goal
            covered.add(template)
        # what training says (frames, synonyms, referring words, surface) reads back, and never as a held-out template
        assert t.read(inst.instruction, inst.objects, heldout=False) == inst.goal, inst.instruction
        assert not list(t.grammar.parse(t.heldout_templates, inst.instruction, inst.objects)), inst.instruction
    assert covered == {*t.training_templates(), *t.heldout_templates}
    assert t.parse_instruction("juggle the red cube", inst.objects) is None
    assert len(t.templates) >= 5 and len(t.heldout_templates) >= 2 and t.success_doc


def test_goal_places_say_where_each_cube_of_the_goal_goes():
    """The words the `goal` training source answers with follow each task's goal (and a push task has none)."""
    rng = np.random.default_rng(3)
    for task in TASKS:
        t = make_task("pickplace", task)
        inst = t.sample(rng, "train")
        names = object_names(inst.objects)
        places = t.goal_places(inst.goal, names)
        if task == "stack":
            order = inst.goal.order
            assert places == {order[0]: "at the bottom of the tower",
                              **{up: f"on the {names[down]}" for down, up in itertools.pairwise(order)}}
        elif task == "grasp":
            assert places == {inst.goal.obj: "in the gripper"}
        elif task == "unstack":
            assert places == dict.fromkeys(range(len(names)), "on the table")
        else:
            assert places == {i: f"in the {z} zone" for i, z in inst.goal.assign}
    load_world("push")
    push = make_task("push", "block2block")
    assert push.goal_places(push.sample(rng, "train").goal, ["red moon"]) == {}


def test_splits_control_objects_and_phrasing():
    rng = np.random.default_rng(3)
    for name in TASKS:
        t = make_task("pickplace", name)
        for _ in range(10):
            pairs = lambda inst: {(o.color, o.size) for o in inst.objects}
            train, l2, l3, l4 = (t.sample(rng, s) for s in ("train", "L2", "L3", "L4"))
            assert 3 <= len(train.objects) <= 5 and not pairs(train) & HELDOUT_COMBOS
            assert pairs(l2) & HELDOUT_COMBOS
            assert 6 <= len(l3.objects) <= 8
            # L4: a held-out template or one of the independent set (never a training phrasing)
            assert l4.extras["template"] in t.heldout_templates or l4.extras["template"].startswith("independent: ")
            assert t.read(l4.instruction, l4.objects, heldout=False) is None, l4.instruction
            assert 2 <= len(train.layout.zones) <= 4
            if name == "sort_by_color":  # every colour's cubes fit its zone's 4 slots
                assert max(Counter(o.color for o in l3.objects).values()) <= 4


def test_support_graph_matches_the_spawned_towers(env):
    for seed in range(6):
        env.reset(seed=seed)
        graph = env.support_graph()
        for _, _, _, slots in env.instance.layout.stacks:
            assert graph[slots[0]] == -1
            for below, above in itertools.pairwise(slots):
                assert graph[above] == below
        assert env.held_object() is None


def test_free_spot_leaves_room_for_the_hand(env):
    env.reset(seed=4)
    for i in range(len(env.object_ids)):
        spot = env.free_spot(env.object_sizes[i], near=env.object_pose(i)[0], exclude=(i,))
        assert spot is not None and env.hand_clear(spot, env.object_sizes[i] / 2, 0.07, exclude=(i,))
        assert all(np.any(np.abs(spot - c) > 0.075) for c in env.zones.values())


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_oracle_succeeds_with_eight_cubes(task):
    e = PickPlaceEnv(task, obs_type="state", split="L3")
    e.task = make_task("pickplace", task, n_objects=8)
    wins = 0
    for seed in range(1_000_000, 1_000_010):
        e.reset(seed=seed)
        run_oracle(e, max_calls=60)
        wins += e.is_success
    assert wins >= 9


def test_stack_oracle_frees_a_bottom_cube_that_stands_on_a_later_one():
    e = PickPlaceEnv("stack", obs_type="state", split="L1")
    e.reset(seed=1_000_018)  # the goal's bottom cube starts on the cube that must end on top
    order = e.goal.order
    assert e.support_graph()[order[0]] == order[-1]
    reasons = run_oracle(e, max_calls=12)
    assert e.is_success, reasons
    e.close()


def test_zone_rows_state_where_each_zone_is_and_its_colour():
    e = PickPlaceEnv("sort_by_color", obs_type="state")
    obs, _ = e.reset(seed=4)
    rows = obs["zones"]
    assert rows.shape == (MAX_ZONES, OBJ_DIM) and int(rows[:, -1].sum()) == len(e.zones) >= 2
    for row, (color, centre) in zip(rows, e.zones.items()):
        assert COLOR_NAMES[int(row[OBJ_FIELDS.index("color_id")])] == color
        assert np.allclose(row[:2], centre) and row[OBJ_FIELDS.index("shape_id")] == len(SHAPE_NAMES)
    assert not rows[len(e.zones):].any()
    run_oracle(e)  # zones never move: the rows stay the same while cubes are sorted into them
    assert e.is_success and np.array_equal(e.observe()["zones"], rows)
    e.close()
