"""`data.rephrase`: instruction augmentation. Each planning / success / goal prompt of an episode may hold its goal
in other training phrasings drawn from the task's grammar, beside the logged words; answers never change."""

from __future__ import annotations

import re

import pytest
from test_sources import FEATURES, _episode

from agent.model.config import PromptConfig
from agent.prompts import PromptBuilder
from envs.catalogue import ObjectDesc
from envs.tasks.base import make_task
from training.config import DataConfig
from training.data import load_data
from training.dataset import DatasetWriter, encode_episode

LOGGED = "stack the red cube on the blue cube"
TASK = re.compile(r"Task: (.*?)\.? *\n")


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("rephrase") / "stack"
    with DatasetWriter(root, FEATURES, fps=5, robot_type="panda", palme={"world": "pickplace", "control_hz": 20}) as w:
        for seed in range(8):
            w.add(encode_episode(_episode(seed), FEATURES))
    return str(root)


def _examples(logs: str, rephrase: int, seed: int = 0) -> dict[str, list]:
    prompts = PromptBuilder(PromptConfig(tokens=["image", "object", "instruction", "robot"]))
    data = load_data(DataConfig(dirs=[logs], weights={"plan": 1.0, "success": 1.0, "goal": 1.0}, val_fraction=0.0,
                                validate_images=False, rephrase=rephrase), prompts, seed=seed, log=lambda _: None)
    return {source: [data.example(r) for r in refs] for source, refs in data.train.items()}


def _said(examples: dict[str, list]) -> list[str]:
    return [TASK.search(str(e.prompt) + "\n")[1] for source in ("plan", "success") for e in examples[source]]


def test_without_rephrase_every_prompt_holds_the_logged_words(logs):
    assert set(_said(_examples(logs, 0))) == {LOGGED}


def test_rephrased_prompts_say_the_same_goal_in_other_training_words_with_the_same_answers(logs):
    plain, rephrased = _examples(logs, 0), _examples(logs, 4)
    said = _said(rephrased)
    task = make_task("pickplace", "stack")
    objects = [ObjectDesc(**o) for o in _episode(0).objects]
    goal = task.parse_instruction(LOGGED, objects)
    assert len(set(said)) > 4 and LOGGED in said  # other words, the logged ones among them
    for text in set(said):
        assert task.read(text, objects, heldout=False) == goal, text  # the same goal, in training templates only
    for source in plain:
        assert [e.answer for e in plain[source]] == [e.answer for e in rephrased[source]]
    assert _said(_examples(logs, 4)) == said  # the same phrasings on every run with the same seed


def test_instr_tokens_read_the_words_the_prompt_holds(logs):
    """`<instr>` (the frozen encoder's input) gets the same words as the prompt's text, as the agent gives them."""
    examples = _examples(logs, 4)
    for e in examples["plan"] + examples["success"]:
        assert str(e.array("instruction")).rstrip(".") == TASK.search(str(e.prompt) + "\n")[1]
    assert len({str(e.array("instruction")) for e in examples["plan"]}) > 4


def test_a_negative_rephrase_is_refused():
    with pytest.raises(ValueError, match="data.rephrase must be >= 0"):
        DataConfig(rephrase=-1)
