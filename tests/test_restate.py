"""`prompt.restate`: the planner first restates the instruction in its task's canonical words, then plans from them.

The canonical wording is the task's plainest template (`TemplatePhrasing.canonical`), which the task's parser
reads back as the same goal; the `restate` source teaches the restatement from every logged phrasing; with
`prompt.restate` the planning, success and goal examples hold the restatement; the planner writes it once per
episode and keeps the given words when the task cannot read a goal in what it wrote.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_sources import FEATURES, _episode

from agent.api import make_env
from agent.loop import Agent
from agent.model import make_model
from agent.model.config import PromptConfig
from agent.planners import PalmEPlanner
from agent.prompts import PromptBuilder
from envs.tasks.base import make_task
from training.config import DataConfig
from training.data import load_data
from training.dataset import DatasetWriter, encode_episode

TINY = {"llm": {"hidden": 32, "layers": 1, "heads": 2, "kv_heads": 2, "intermediate": 64, "vocab_size": 400},
        "state": {"hidden": 32}}
PP_TASKS = ("grasp", "put_in_zone", "sort_by_color", "stack", "unstack")
GIVEN = "Could you place the red cube onto the blue cube?"


@pytest.mark.parametrize("name", PP_TASKS)
def test_the_canonical_wording_reads_back_as_the_same_goal(name):
    task = make_task("pickplace", name)
    for seed in range(25):
        inst = task.sample(np.random.default_rng(seed))
        text = task.canonical(inst.goal, inst.objects)
        assert text and text == task.canonical(inst.goal, inst.objects)  # no randomness
        assert task.parse_instruction(text, inst.objects) == inst.goal, (seed, text, inst.instruction)


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("restate") / "stack"
    with DatasetWriter(root, FEATURES, fps=5, robot_type="panda", palme={"world": "pickplace", "control_hz": 20}) as w:
        for seed in range(6):
            ep = _episode(seed)
            ep.instruction = GIVEN
            w.add(encode_episode(ep, FEATURES))
    return str(root)


def _examples(logs: str, restate: bool) -> dict[str, list[str]]:
    prompts = PromptBuilder(PromptConfig(tokens=["image", "object", "robot"], restate=restate))
    data = load_data(DataConfig(dirs=[logs], weights={"plan": 1.0, "success": 1.0, "restate": 1.0}, val_fraction=0.0,
                                validate_images=False), prompts, seed=0, log=lambda _: None)
    out = {}
    for source, refs in data.train.items():
        out[source] = [data.example(r) for r in refs]
    return out


def test_the_restate_source_and_the_prompts_that_plan_from_the_restatement(logs):
    canonical = make_task("pickplace", "stack").canonical(
        make_task("pickplace", "stack").parse_instruction(GIVEN, _objects()), _objects())
    assert canonical and canonical != GIVEN
    plain, restating = _examples(logs, restate=False), _examples(logs, restate=True)
    for examples in (plain, restating):
        assert len(examples["restate"]) == 6  # one per episode, on its first frame
        ex = examples["restate"][0]
        assert "Restate the task. Task: Could you place the red cube onto the blue cube?" in str(ex.prompt)
        assert ex.answer == canonical
    assert all(GIVEN in str(e.prompt) for e in plain["plan"] + plain["success"])
    assert all(canonical in str(e.prompt) and GIVEN not in str(e.prompt) for e in restating["plan"] + restating["success"])
    assert [e.answer for e in plain["plan"]] == [e.answer for e in restating["plan"]]


def _objects():
    from envs.catalogue import ObjectDesc

    return [ObjectDesc(c, "cube") for c in ("red", "green", "blue")]


class Spy:
    """Records every prompt the model is asked to continue; answers the restate question with `restatement`
    (None: the model's own answer) and everything else with the model's own answer."""

    def __init__(self, model, restatement: str | None) -> None:
        self.model, self.restatement, self.prompts = model, restatement, []
        self.generate = model.generate

    def __call__(self, examples, **kwargs):
        self.prompts += [str(e.prompt) for e in examples]
        out = self.generate(examples, **kwargs)
        return [self.restatement if "Restate the task." in str(e.prompt) and self.restatement is not None else o
                for e, o in zip(examples, out, strict=True)]


@pytest.mark.parametrize("restatement", [None, "canonical"])
def test_the_planner_restates_once_per_episode_and_keeps_the_given_words_when_the_task_cannot_read_it(
        restatement, monkeypatch):
    model = make_model("palme-small", **{**TINY, "prompt": {"tokens": ["object", "robot"], "restate": True}})
    env = make_env("pickplace", "stack", obs_type="state")
    env.reset(seed=4)
    u = env.unwrapped
    u.set_instruction(f"please, {u.task.canonical(u.goal, u.objects)}", keep_goal=True)
    canonical = u.task.canonical(u.goal, u.objects)
    spy = Spy(model, canonical if restatement else None)
    monkeypatch.setattr(model, "generate", spy)
    trace = Agent(PalmEPlanner(model=model), max_steps=3).run(env, seed=4)
    asked = [p for p in spy.prompts if "Restate the task." in p]
    assert len(asked) == 1 and f"Task: {trace.instruction.rstrip('.')}." in asked[0]
    plans = [p for p in spy.prompts if "Restate the task." not in p]
    assert plans and len(trace.steps) >= 1
    if restatement:
        assert trace.restated == canonical and all(f"Task: {canonical}" in p for p in plans)
    else:  # a tiny untrained model writes nothing the task reads: the given words stay
        assert trace.restated == "" and all(f"Task: {trace.instruction}" in p for p in plans)
    env.close()
