"""A skill is declared once: its SkillSpec (slots, text, grammar, valid calls) and its executing Skill.

Every registered skill can be written by the shipped model under constrained decoding in a scene
where it is valid; a skill declared only in this file (`point at the X`) is parsed, enumerated,
rendered and executed in an episode through the Agent; registration refuses incomplete skills.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from agent.parser import PlanError, SceneContext, parse_step, valid_calls, valid_steps
from envs.catalogue import ObjectDesc
from envs.vocab import (
    OBJECT,
    Form,
    SkillCall,
    SkillSpec,
    register_skill_spec,
    render_step,
    skill_names,
    skill_spec,
    skill_specs,
    unregister_skill_spec,
    world_skills,
)
from policies.base import SKILL_REGISTRY, Skill, SkillResult, make_skill, register_skill

HAVE_WORLDS = bool(importlib.util.find_spec("envs.pickplace") and importlib.util.find_spec("envs.push"))
SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "palme-tiny"
SCENES = [
    SceneContext((ObjectDesc("red", "cube", "small"), ObjectDesc("red", "cube", "large"), ObjectDesc("blue", "cube")),
                 world="pickplace", zones=("green", "yellow")),
    SceneContext((ObjectDesc("red", "cube"), ObjectDesc("blue", "cube")), world="pickplace", zones=("green",),
                 held=1, track_held=True),
    SceneContext((ObjectDesc("red", "moon"), ObjectDesc("red", "star"), ObjectDesc("blue", "cube")), world="push"),
]


# ---- a skill declared in this file only: `point at the X` ---------------------------------------------------
class PointSpec(SkillSpec):
    """`point at the X`: hold the open hand above object X."""

    name = "point"
    worlds = ("pickplace",)
    verbs = ("point at", "point to", "point")
    forms = (Form("point at the {obj}", (OBJECT,)),)

    def parse(self, words, reader):
        obj = reader.resolve(words)
        return obj if isinstance(obj, PlanError) else SkillCall("point", obj=obj)

    def valid_calls(self, scene):
        return [c for i in range(len(scene.objects)) for c in self.calls_for(scene, i)]


class PointAt(Skill):
    """Moves the end effector to 10 cm above the object's centre, gripper open."""

    name = "point"
    max_steps = 150

    def reset(self, env, call):
        self.i = call.obj

    def _goal(self, env) -> np.ndarray:
        return env.object_pose(self.i)[0] + np.array([0.0, 0.0, 0.10])

    def act(self, env):
        from policies.pickplace import FAST, toward

        goal = self._goal(env)
        if np.linalg.norm(env.ee_pose()[0] - goal) < 0.01:
            return None
        return toward(env, goal, FAST, 1.0)

    def result(self, env):
        off = float(np.linalg.norm(env.ee_pose()[0] - self._goal(env)))
        ok = off < 0.01
        return SkillResult(ok, f"{'pointing' if ok else 'not pointing'} at the {env.names[self.i]} ({off:.3f} m off)", 0)


@pytest.fixture
def point_skill():
    """Registers the skill for one test (vocabulary, grammar and valid calls; its Skill), then removes it."""
    register_skill_spec(PointSpec)
    try:
        register_skill("pickplace")(PointAt)
        yield
    finally:
        unregister_skill_spec("point")
        SKILL_REGISTRY.get("pickplace", {}).pop("point", None)


def test_a_skill_declared_in_a_test_is_parsed_enumerated_and_rendered(point_skill):
    scene = SCENES[0]
    assert "point" in skill_names() and world_skills("pickplace")[-1] == "point"
    assert "point" not in world_skills("push")
    assert parse_step("point at the blue cube", scene) == SkillCall("point", obj=2)
    assert parse_step("Step 2. Point to obj 1.", scene) == SkillCall("point", obj=0)
    assert parse_step("point(large red cube)", scene) == SkillCall("point", obj=1)
    err = parse_step("point at the purple cube", scene)
    assert isinstance(err, PlanError) and err.kind == "unknown_object"
    err = parse_step("point", scene)
    assert isinstance(err, PlanError) and "point at the small red cube" in err.reason  # its example
    push_err = parse_step("point at the red moon", SCENES[2])
    assert isinstance(push_err, PlanError) and push_err.kind == "unknown_skill"
    steps = valid_steps(scene)
    assert [s for s in steps if s.startswith("point")] == [f"point at the {n}" for n in scene.names]
    assert render_step(SkillCall("point", obj=1), scene.names) == "point at the large red cube"
    with pytest.raises(ValueError, match="point takes"):
        SkillCall("point", obj=0, target=1)
    from agent.model.tokenizer import default_corpus

    assert "point at the red cube" in default_corpus()


@pytest.mark.skipif(not HAVE_WORLDS, reason="the worlds are not in this checkout")
def test_a_skill_declared_in_a_test_runs_an_episode_through_the_agent(point_skill):
    from agent.loop import Agent
    from agent.planners import Planner
    from envs import make_env

    class Pointer(Planner):
        name = "pointer"

        def next_step(self, ctx):
            return f"point at the {ctx.scene.names[-1]}" if not ctx.history else "done"

    env = make_env("pickplace", "grasp", obs_type="state")
    try:
        trace = Agent(Pointer()).episode(env, seed=3)
        u = env.unwrapped
        first = trace.steps[0]
        k = len(u.objects) - 1
        assert first.call == asdict(SkillCall("point", obj=k)) and first.step == f"point at the {u.names[k]}"
        assert first.success is True and first.feedback == "ok" and "pointing at" in first.reason, first.reason
        assert first.end_t > first.start_t  # the arm moved
        assert trace.steps[-1].step == "done" and trace.ended_by == "done"
        hand, obj = u.ee_pose()[0], u.object_pose(k)[0]
        assert np.linalg.norm(hand[:2] - obj[:2]) < 0.015 and hand[2] > obj[2] + 0.08
    finally:
        env.close()


# ---- registration fails loudly -------------------------------------------------------------------------------
def test_a_skill_without_valid_calls_or_grammar_is_refused():
    class NoCalls(SkillSpec):
        name = "nudge"
        verbs = ("nudge",)
        forms = (Form("nudge the {obj}", (OBJECT,)),)

        def parse(self, words, reader):
            return SkillCall("nudge", obj=reader.resolve(words))

    with pytest.raises(ValueError, match=r"NoCalls \('nudge'\) does not define \['valid_calls'\].*constrained"):
        register_skill_spec(NoCalls)

    class NoGrammar(SkillSpec):
        name = "nudge"
        verbs = ("nudge",)
        forms = (Form("nudge the {obj}", (OBJECT,)),)

        def valid_calls(self, scene):
            return []

    with pytest.raises(ValueError, match=r"does not define \['parse'\]"):
        register_skill_spec(NoGrammar)
    assert "nudge" not in skill_names()
    with pytest.raises(ValueError, match="'pick' is already registered; registered skills: .*'place'"):
        register_skill_spec(type("Pick2", (PointSpec,), {"name": "pick"}))
    with pytest.raises(ValueError, match="text names"):
        Form("nudge the {obj} to {target}", (OBJECT,))


def test_an_executing_skill_needs_its_plan_language():
    class Wave(PointAt):
        name = "wave"

    with pytest.raises(ValueError, match=r"'wave' has no plan language.*registered skills: \['pick'"):
        register_skill("pickplace")(Wave)
    with pytest.raises(ValueError, match=r"'push' is a skill of the worlds \['push'\], not of 'pickplace'"):
        register_skill("pickplace")(type("Push2", (PointAt,), {"name": "push"}))
    assert "wave" not in SKILL_REGISTRY.get("pickplace", {})


# ---- every registered skill --------------------------------------------------------------------------------------
def test_every_registered_skill_renders_parses_back_and_has_an_executor():
    for spec in skill_specs():
        scenes = [s for s in SCENES if spec.name in s.skills and spec.valid_calls(s)]
        assert scenes, f"{spec.name}: no test scene where it is valid"
        for scene in scenes:
            calls = spec.valid_calls(scene)
            assert all(c in valid_calls(scene) for c in calls)
            for call in calls:
                assert parse_step(render_step(call, scene.names), scene) == call
        for world in () if spec.ends_plan or not HAVE_WORLDS else spec.worlds:
            assert make_skill(world, spec.name).name == spec.name


def test_the_tokenizer_corpus_is_the_registered_skills_lines():
    from agent.model.tokenizer import default_corpus

    steps = [s for s in default_corpus() if not s.startswith("Given")]
    assert steps[0] == "done" and steps[1:3] == ["pick up the red cube", "place the red cube on the table"]
    # The corpus before the registry (#17), line for line: it trains the from-scratch tokenizers.
    assert len(steps) == 5721
    assert hashlib.sha256("\n".join(steps).encode()).hexdigest()[:16] == CORPUS_SHA
    assert skill_spec("place").corpus("blue cube", ["red cube"])[:2] == [
        "place the blue cube on the table", "place the blue cube in the red zone"]


CORPUS_SHA = "0fa2f929b19b1b3d"  # sha256 of the #17 corpus steps, joined by newlines


# ---- constrained decoding with the shipped model --------------------------------------------------------------
def _scenes_with_prompts():
    """(observation, scene) at decision points of the real worlds: empty hand, holding a cube (after a real pick),
    and the pushing world."""
    from envs import make_env
    from policies.base import run_skill

    out = []
    pp = make_env("pickplace", "stack")
    push = make_env("push", "block2block")
    try:
        u = pp.unwrapped
        pp.reset(seed=0)
        out.append((u.task_description, u.observe(render=True), SceneContext.from_env(u)))
        first = u.task.oracle_plan(u, u.goal)[0]
        assert first.skill == "pick" and run_skill(u, first).success
        out.append((u.task_description, u.observe(render=True), SceneContext.from_env(u)))
        push.reset(seed=0)
        v = push.unwrapped
        out.append((v.task_description, v.observe(render=True), SceneContext.from_env(v)))
    finally:
        pp.close()
        push.close()
    return out


@pytest.fixture(scope="module")
def shipped_planner():
    if not (SHIPPED / "model.safetensors").exists():
        pytest.skip("the shipped checkpoint is not in this checkout")
    from agent.planners import PalmEPlanner

    return PalmEPlanner(checkpoint=str(SHIPPED), constrained=True)


def _reachable(planner, monkeypatch, points) -> dict[str, str]:
    """Skill -> a step of it that constrained decoding produced when forced, over the decision points."""
    from agent.planners import PlanContext

    model = planner.model
    real_generate = model.generate
    given: list = []

    def recording_generate(examples, **kwargs):  # the real generation; records the allowed sets it was given
        given.append(kwargs.get("allowed"))
        return real_generate(examples, **kwargs)

    monkeypatch.setattr(model, "generate", recording_generate)
    produced: dict[str, str] = {}
    for instruction, obs, scene in points:
        example = planner.prompts.for_obs("plan", obs, instruction=instruction, history=[])
        ctx = PlanContext(None, obs, instruction, [], scene, example, 0)
        step = planner.next_step(ctx)
        allowed = given[-1][0]
        assert allowed == valid_steps(scene) and step in allowed  # the planner's path gives the real valid steps
        by_skill: dict[str, str] = {}
        for s in allowed:
            call = parse_step(s, scene)
            assert isinstance(call, SkillCall), (s, call)
            by_skill.setdefault(call.skill, s)
        assert set(by_skill) == {c.skill for c in valid_calls(scene)}
        for skill, s in by_skill.items():
            if skill not in produced:  # forcing the prefix trie with that one step yields it
                out = real_generate([example], allowed=[[s]])[0]
                assert out == s, (skill, s, out)
                produced[skill] = out
    return produced


@pytest.mark.skipif(not HAVE_WORLDS, reason="the worlds are not in this checkout")
def test_constrained_decoding_can_write_a_step_of_every_registered_skill(shipped_planner, monkeypatch, point_skill):
    produced = _reachable(shipped_planner, monkeypatch, _scenes_with_prompts())
    assert set(produced) == set(skill_names()), sorted(set(skill_names()) - set(produced))
    assert produced["point"].startswith("point at the ")  # the skill declared in this file, too
