"""The `human` planner: typed steps, checked by the parser, drive a real grasp episode to success."""

from __future__ import annotations

import importlib.util
import io
import re

import pytest

from agent.loop import Agent
from agent.parser import SceneContext, valid_steps
from agent.planners import HumanPlanner, PlannerOptions, planner_from_options, planner_names
from envs.vocab import render_step

pytestmark = pytest.mark.skipif(
    not (importlib.util.find_spec("envs.pickplace") and importlib.util.find_spec("policies.pickplace")),
    reason="the pick-and-place world is not in this checkout",
)
SEED = 5  # grasp seed 5: a cube is on the target, the oracle's plan has three steps


@pytest.fixture(scope="module")
def grasp_env():
    from envs import make_env

    env = make_env("pickplace", "grasp", obs_type="state")
    yield env
    env.close()


def _start(env):
    """Reset to SEED; the scene's valid steps and the oracle's plan (the steps that solve it)."""
    env.reset(seed=SEED)
    u = env.unwrapped
    steps = valid_steps(SceneContext.from_env(u))
    plan = [render_step(c, u.names) for c in u.task.oracle_plan(u, u.goal)]
    return steps, plan


def test_registered_and_built_from_options():
    assert "human" in planner_names()
    assert isinstance(planner_from_options("human", PlannerOptions()), HumanPlanner)


def test_scripted_session_solves_grasp(grasp_env):
    steps, plan = _start(grasp_env)
    assert len(plan) == 3
    k = steps.index(plan[0]) + 1
    # an invalid step (holding a control character), help, a number, typed valid steps, end of input (= done)
    script = f"pick up the \x1b[31mzebra\n?\n{k}\n  {plan[1].upper()}  \n{plan[2]}\n"
    out = io.StringIO()
    trace = Agent(HumanPlanner(stdin=io.StringIO(script), stdout=out)).run(grasp_env, seed=SEED)
    assert trace.success is True and trace.ended_by == "done", trace.reason
    assert [s.step for s in trace.steps] == [*plan, "done"]
    text = out.getvalue()
    assert text.count("instruction: ") == 1 and "objects: " in text
    assert "\x1b" not in text and "\\x1b" in text  # control characters come back escaped
    assert text.count("not a valid step: ") == 1
    listed = [m.group(2) for m in re.finditer(r" {2}(\d+)\. (.*)$", text, re.MULTILINE)]
    assert listed == steps


def test_out_of_range_number_and_empty_line(grasp_env):
    steps, _plan = _start(grasp_env)
    out = io.StringIO()
    trace = Agent(HumanPlanner(stdin=io.StringIO(f"{len(steps) + 1}\n\n"), stdout=out)).run(grasp_env, seed=SEED)
    assert f"no step number {len(steps) + 1}: pick 1..{len(steps)}" in out.getvalue()
    assert [s.step for s in trace.steps] == ["done"] and trace.success is False


def test_a_typed_step_comes_back_in_its_canonical_words(grasp_env):
    """What the person types may be any form the parser reads; the step the episode (and a recording) keeps is canonical."""
    _, plan = _start(grasp_env)
    assert plan[0].startswith("pick up the ")
    typed = f"Step 1: pick({plan[0].removeprefix('pick up the ')})"
    out = io.StringIO()
    planner = HumanPlanner(stdin=io.StringIO(typed + "\n"), stdout=out)
    trace = Agent(planner, max_steps=1).run(grasp_env, seed=SEED)
    assert trace.steps[0].step == plan[0]
