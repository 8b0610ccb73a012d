"""The training stream: weighted sources, every example once per epoch, and an exact resume from its JSON state."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from training.batches import MixtureStream
from training.config import config_differences


def test_stream_resumes_exactly_from_its_json_state():
    a = MixtureStream({"plan": 7, "vqa": 5}, {"plan": 1.0, "vqa": 1.0}, seed=3)
    first = [a.next(4) for _ in range(3)]
    state = json.loads(json.dumps(a.state_dict()))
    rest = [a.next(4) for _ in range(5)]
    b = MixtureStream({"plan": 7, "vqa": 5}, {"plan": 1.0, "vqa": 1.0}, seed=3)
    b.load_state_dict(state)
    assert [b.next(4) for _ in range(5)] == rest
    c = MixtureStream({"plan": 7, "vqa": 5}, {"plan": 1.0, "vqa": 1.0}, seed=3)
    assert [c.next(4) for _ in range(3)] == first


def test_each_source_is_seen_whole_before_repeating_and_weights_hold():
    s = MixtureStream({"plan": 10, "vqa": 10, "off": 4}, {"plan": 3.0, "vqa": 1.0, "off": 0.0}, seed=0)
    draws = s.next(4000)
    counts = Counter(src for src, _ in draws)
    assert "off" not in counts and counts["plan"] / len(draws) == pytest.approx(0.75, abs=0.03)
    plan = [i for src, i in draws if src == "plan"]
    assert sorted(plan[:10]) == list(range(10)) and sorted(plan[10:20]) == list(range(10))


def test_resume_on_different_data_is_refused():
    a = MixtureStream({"plan": 7}, {"plan": 1.0}, seed=0)
    b = MixtureStream({"plan": 8}, {"plan": 1.0}, seed=0)
    with pytest.raises(ValueError, match="the data changed since the checkpoint"):
        b.load_state_dict(a.state_dict())


def test_heldout_picks_are_spread_over_each_mixture_source_and_leave_the_stream_alone():
    s = MixtureStream({"plan": 10, "vqa": 3, "off": 5}, {"plan": 1.0, "vqa": 1.0, "off": 0.0}, seed=0)
    assert s.spread(4) == {"plan": [0, 2, 5, 7], "vqa": [0, 1, 2]}  # "off" has no weight: not in the mixture
    fresh = MixtureStream({"plan": 10, "vqa": 3, "off": 5}, {"plan": 1.0, "vqa": 1.0, "off": 0.0}, seed=0)
    assert s.next(8) == fresh.next(8)


def test_config_differences_ignore_bookkeeping_keys():
    saved = {"train": {"lr": 1e-3, "steps": 10}, "eval": {"every": 5}, "resume": False, "seed": 0}
    now = {"train": {"lr": 1e-3, "steps": 20}, "eval": {"every": 7}, "resume": True, "seed": 1}
    assert config_differences(saved, now) == ["seed: saved 0, now 1"]


def test_a_run_saved_before_a_key_existed_resumes_with_its_default_and_not_with_another_value():
    now = {"data": {"rephrase": 0, "state": "privileged"}, "train": {"lr": 1e-3}}
    saved = {"train": {"lr": 1e-3}}  # written by a code version without data.rephrase / data.state
    assert config_differences(saved, now) == []
    changed = {"data": {"rephrase": 8, "state": "privileged"}, "train": {"lr": 1e-3}}
    assert config_differences(saved, changed) == ["data.rephrase: saved 0, now 8"]
