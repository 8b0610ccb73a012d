"""`data.task_weights`: a task's share of each source's draws is chosen by a weight, not implied by its episode count.

Stop 33 (#21): 3,000 side_together scenes in the generalist's logs also made side_together a large share of every
planning batch, and pick-and-place (stack) lost the share it needs. With task weights the share of a task within a
source is weight x its example count, normalised; weight 1 everywhere keeps each example's chance, 0 drops the task.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest
from test_sources import FEATURES, _episode

from agent.model.config import PromptConfig
from agent.prompts import PromptBuilder
from training.batches import MixtureStream
from training.config import DataConfig
from training.data import load_data, ref_task
from training.dataset import DatasetWriter, encode_episode

LABELS = ["a"] * 30 + ["b"] * 10  # 40 examples of one source: 30 of task a, 10 of task b


def test_group_weights_set_each_groups_share_of_a_sources_draws():
    s = MixtureStream({"plan": 40}, {"plan": 1.0}, seed=0, groups={"plan": LABELS}, group_weights={"b": 3.0})
    draws = [i for _, i in s.next(6000)]
    share_b = sum(LABELS[i] == "b" for i in draws) / len(draws)
    assert share_b == pytest.approx(0.5, abs=0.03)  # 3 x 10 against 1 x 30
    b_draws = [i for i in draws if LABELS[i] == "b"]
    assert sorted(b_draws[:10]) == list(range(30, 40))  # each group is seen whole before repeating


def test_weight_one_keeps_each_examples_chance_and_no_weights_keeps_the_one_pool_stream():
    even = MixtureStream({"plan": 40}, {"plan": 1.0}, seed=1, groups={"plan": LABELS}, group_weights={})
    counts = Counter(LABELS[i] for _, i in even.next(8000))
    assert counts["b"] / 8000 == pytest.approx(0.25, abs=0.02)
    plain = MixtureStream({"plan": 40, "vqa": 5}, {"plan": 1.0, "vqa": 1.0}, seed=2)
    same = MixtureStream({"plan": 40, "vqa": 5}, {"plan": 1.0, "vqa": 1.0}, seed=2, groups={"plan": LABELS})
    assert plain.next(50) == same.next(50)  # labels without weights: exactly the stream of one pool


def test_a_grouped_stream_resumes_exactly_and_refuses_other_groups():
    def make() -> MixtureStream:
        return MixtureStream({"plan": 40, "vqa": 7}, {"plan": 1.0, "vqa": 0.5}, seed=3, groups={"plan": LABELS},
                             group_weights={"a": 0.5})

    a = make()
    a.next(33)
    state = json.loads(json.dumps(a.state_dict()))
    rest = a.next(40)
    b = make()
    b.load_state_dict(state)
    assert b.next(40) == rest
    one_pool = MixtureStream({"plan": 40, "vqa": 7}, {"plan": 1.0, "vqa": 0.5}, seed=3)
    with pytest.raises(ValueError, match="data.task_weights"):
        one_pool.load_state_dict(state)


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> list[str]:
    """Two folders: 6 stack episodes and 6 of a second task ("unstack": same frames, another task name)."""
    roots = []
    for task in ("stack", "unstack"):
        root = tmp_path_factory.mktemp("task_weights") / task
        with DatasetWriter(root, FEATURES, fps=5, robot_type="panda",
                           palme={"world": "pickplace", "control_hz": 20}) as w:
            for seed in range(6):
                w.add(encode_episode(dataclasses.replace(_episode(seed), task=task), FEATURES))
        roots.append(str(root))
    return roots


def _data(logs: list[str], **task_weights: float):
    prompts = PromptBuilder(PromptConfig())
    lines: list[str] = []
    data = load_data(DataConfig(dirs=logs, weights={"plan": 1.0}, val_fraction=0.0, validate_images=False,
                                task_weights=task_weights), prompts, seed=0, log=lines.append)
    return data, lines


def test_training_draws_follow_the_task_weights_and_say_the_shares(logs):
    data, lines = _data(logs, unstack=0.25)
    assert any("plan draws per task stack 80.0%, unstack 20.0%" in ln for ln in lines)
    stream = data.stream(seed=0)
    tasks = Counter(ref_task(data.builders, data.train[s][i]) for s, i in stream.next(3000))
    assert tasks["unstack"] / 3000 == pytest.approx(0.2, abs=0.03)


def test_weight_zero_drops_a_task_and_an_unknown_task_is_refused_by_name(logs):
    data, _ = _data(logs, unstack=0.0)
    assert {ref_task(data.builders, r) for r in data.train["plan"]} == {"stack"}
    with pytest.raises(ValueError) as err:
        _data(logs, stak=2.0)
    assert "\n" not in str(err.value) and "['stak']" in str(err.value) and "['stack', 'unstack']" in str(err.value)
    with pytest.raises(ValueError, match="data.task_weights must be >= 0"):
        DataConfig(task_weights={"stack": -1.0})
