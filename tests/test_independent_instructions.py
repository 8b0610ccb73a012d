"""The independent instruction set (issue #19): its size, its rendering, and that training never says it.

`tests/data/independent_instructions.json` was written without seeing the project's templates;
`envs.tasks.independent_instructions` says sampled goals in it, and split L4 draws from it. Every task
is sampled the way the env samples it (`task.sample(rng, "L1")` on L1 seeds). "Training cannot
generate it" is checked two ways: the task's training language (its templates, goal templates and
frames, read by `TemplatePhrasing.read(..., heldout=False)`, which reads back everything training
says) finds no goal in any of the set's texts (`collisions`), and, independently of the parser, none
of many sampled training phrasings of the same goal in the same scene is one of the set's texts.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from envs import load_world
from envs.base import check_instruction
from envs.language import normalize
from envs.tasks.base import TASK_REGISTRY, make_task, seed_range
from envs.tasks.independent_instructions import (
    DEFAULT_PATH,
    IndependentInstructions,
    Template,
    collisions,
    training_goal,
    training_says,
)
from envs.tasks.pickplace.stack import StackGoal

for _world in ("pickplace", "push"):
    load_world(_world)
WORLD_TASKS = [(w, t) for w in ("pickplace", "push") for t in sorted(TASK_REGISTRY[w])]
SEEDS = 50
SAMPLES = 40  # training phrasings drawn per scene for the parser-free check


@pytest.fixture(scope="module")
def ii() -> IndependentInstructions:
    return IndependentInstructions.load()


def test_file_size():
    tasks = json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))["tasks"]
    for world, name in WORLD_TASKS:
        assert len(tasks[name]) >= (30 if world == "pickplace" else 10), name
    assert sum(map(len, tasks.values())) >= 200
    assert set(tasks) == {name for _, name in WORLD_TASKS}


def _instances(world, name):
    task = make_task(world, name)
    lo, _ = seed_range("L1")
    for k in range(SEEDS):
        yield task, k, task.sample(np.random.default_rng(lo + k), "L1")


@pytest.mark.parametrize(("world", "name"), WORLD_TASKS)
def test_training_never_says_an_instruction_of_the_set(ii, world, name):
    task = make_task(world, name)
    lo, _ = seed_range("L1")
    assert collisions(ii, task, range(lo, lo + SEEDS)) == {}
    for _, k, inst in _instances(world, name):
        text = ii.render(name, inst.goal, inst.objects, np.random.default_rng(k))
        assert text is not None, f"{name}: the set cannot say the goal of L1 seed {lo + k}"
        check_instruction(text)
        assert training_goal(task, text, inst.objects) is None, text
        theirs = {normalize(x) for x in ii.renderings(name, inst.goal, inst.objects)}
        rng = np.random.default_rng(k)
        for _ in range(SAMPLES):  # no parser involved: what training says is never one of the set's texts
            _, said = task.say(rng, inst.goal, inst.objects, "train")
            assert normalize(said) not in theirs, said
            assert training_goal(task, said, inst.objects) == inst.goal, said  # the reader reads training


def test_a_training_phrasing_in_the_set_is_found():
    """The checks can fail: a set holding a phrasing that training says is caught by both of them."""
    task = make_task("pickplace", "grasp")
    fake = IndependentInstructions({}, {"grasp": (Template("Pick up the {obj}, please."), Template("hoist the {obj}"))})
    lo, _ = seed_range("L1")
    assert list(collisions(fake, task, range(lo, lo + 3))) == ["Pick up the {obj}, please."]
    inst = next(i for _, _, i in _instances("pickplace", "grasp"))
    exclude = training_says(task, inst.objects)
    assert exclude(fake.fill(fake.tasks["grasp"][0], {"obj": inst.goal.obj}, inst.objects))
    for k in range(10):
        assert fake.render("grasp", inst.goal, inst.objects, np.random.default_rng(k), exclude).startswith("hoist the ")


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


def test_a_paraphrase_keeps_the_sampled_goal_only_when_asked(ii):
    from envs import make_env

    env = make_env("pickplace", "grasp", split="L1", obs_type="state")
    env.reset(seed=seed_range("L1")[0])
    u = env.unwrapped
    goal = u.goal
    text = ii.render("grasp", goal, u.instance.objects, np.random.default_rng(0))
    assert u.set_instruction(text, keep_goal=True) and u.goal == goal and u.task_description == text
    assert not u.set_instruction("juggle it") and u.goal is None  # parsed: nothing to measure
    env.close()


def test_traces_say_which_phrasing_an_episode_was_given():
    from agent.loop import Agent
    from agent.planners import OraclePlanner
    from envs import make_env

    env = make_env("pickplace", "unstack", split="L4", obs_type="state")
    lo, _ = seed_range("L4")
    kinds = {Agent(OraclePlanner()).episode(env, seed=lo + k).phrasing for k in range(12)}
    held = set(make_task("pickplace", "unstack").heldout_templates)
    assert kinds and all(p.startswith("independent: ") or p in held for p in kinds)
    assert any(p.startswith("independent: ") for p in kinds)
    trace = Agent(OraclePlanner()).episode(env, seed=lo, instruction="unstack the tower")
    assert trace.phrasing == "given" and trace.success
    env.close()


VALIDATION_FILES = sorted((DEFAULT_PATH.parents[2] / "benchmarks" / "data").glob("validation_instructions*.json"))


@pytest.mark.parametrize("path", VALIDATION_FILES, ids=lambda p: p.stem)
def test_the_validation_phrasings_recipes_are_chosen_on_are_outside_the_training_grammar_too(path):
    """benchmarks/validate_phrasing.py and phrasing_gap.py --phrasings measure new words with these files."""
    val = IndependentInstructions.load(path)
    assert set(val.tasks) == {"grasp", "stack", "put_in_zone", "sort_by_color", "unstack"}
    lo, _ = seed_range("L1")
    for name in val.tasks:
        assert collisions(val, make_task("pickplace", name), range(lo, lo + 20)) == {}, (path.name, name)
