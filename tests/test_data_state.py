"""`data.state=observed`: a model learns from the rows the planner saw (logged as observation.environment_state.observed
by palme-collect with state=estimated|noisy), while every answer and plan label stays the logged truth."""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_sources import BASE, COLORS, _episode  # the stack episodes of the source tests
from test_train import TINY  # the small model of the training tests

from agent.prompts import PromptBuilder, count_objects
from envs.catalogue import COLOR_NAMES
from training.config import DataConfig
from training.data import load_data
from training.dataset import DatasetWriter, encode_episode, make_features
from training.dataset.schema import OBSERVED_STATE_KEY
from training.train import compose_config, run

FEATURES = make_features((32, 32), ["dx", "dy", "dz", "grip"], observed=True)
ORDER = (2, 1, 0)  # observed row r is the cube of slot ORDER[r]: the estimate lists cubes in its own order
MISREAD = "yellow"  # the green cube's colour as the estimate reads it
WEIGHTS = {**BASE, "vqa_count": 1.0, "vqa_feasibility": 1.0, "caption": 1.0}


def _seen(rows: np.ndarray, hidden: bool) -> np.ndarray:
    """An estimate of `rows`: another order, centres 4 mm off, the green cube read as yellow, and with `hidden` the
    red cube (slot 0, on top of the tower in the last frame) missing."""
    seen = np.zeros_like(rows)
    for r, slot in enumerate(ORDER):
        seen[r] = rows[slot]
    seen[:3, 0] += 0.004
    seen[ORDER.index(1), 8] = COLOR_NAMES.index(MISREAD)
    if hidden:
        seen[ORDER.index(0)] = 0.0
    return seen


@pytest.fixture(scope="module")
def observed(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("observed") / "stack"
    palme = {"world": "pickplace", "control_hz": 20, "observed_state": [{"source": "estimated"}]}
    with DatasetWriter(root, FEATURES, fps=5, robot_type="panda", palme=palme) as w:
        for seed in range(10):
            ep = _episode(seed)
            for k, f in enumerate(ep.frames):
                f.observed_objects = _seen(f.objects, hidden=k == len(ep.frames) - 1)
            w.add(encode_episode(ep, FEATURES))
    return str(root)


def _data(root: str, state: str, weights: dict[str, float] = WEIGHTS):
    cfg = DataConfig(dirs=[root], weights=weights, val_fraction=0.3, validate_images=False, state=state)
    return load_data(cfg, PromptBuilder(), seed=0, log=lambda _: None)


def _answers(data, source: str) -> list[tuple[int, int, str]]:
    return [(spec.episode, spec.frame, spec.answer) for _, spec in data.train[source]]


def test_observed_examples_carry_the_observed_rows_and_keep_the_answers(observed):
    truth, seen = _data(observed, "privileged"), _data(observed, "observed")
    ds = seen.builders[0].ds
    for source, refs in seen.train.items():
        if source != "vqa_color":  # answers from the simulator's rows, as logged
            assert _answers(seen, source) == _answers(truth, source) and refs, source
        for ref in refs:
            ex = seen.example(ref)
            ep = ds.episodes[ref[1].episode]
            frame = ref[1].frame
            np.testing.assert_array_equal(ex.objects, ep.observed[frame])
            assert not np.array_equal(ex.objects, ep.env_state[frame])
            n = count_objects(ep.observed[frame])  # the prompt introduces the objects the model reads
            assert re.findall(r"<obj_\d>", ex.prompt) == [f"<obj_{j}>" for j in range(1, n + 1)]
            np.testing.assert_array_equal(truth.example(ref).objects, ep.env_state[frame])  # the default: as before
    last = {(s.episode, s.frame): s.answer for _, s in seen.train["vqa_count"] if s.frame == 3}
    assert last and set(last.values()) <= {"3", "1"}  # the hidden cube is counted: answers are the truth
    # A colour question names the row the model reads for that cube (found by position), answered with the true
    # colour (green, which the estimate misreads); the hidden cube is never asked about.
    asked = set()
    for _, spec in seen.train["vqa_color"]:
        j = int(re.search(r"What colour is obj (\d)\?", spec.prompt).group(1))
        asked.add(ORDER[j - 1])
        assert spec.answer == COLORS[ORDER[j - 1]] != MISREAD, spec.prompt
        assert spec.frame != 3 or ORDER[j - 1] != 0
    assert asked == {0, 1, 2}
    assert [(s.episode, s.frame) for _, s in seen.train["vqa_color"]] == [(s.episode, s.frame) for _, s in
                                                                         truth.train["vqa_color"]]
    rows = seen.state_examples()  # the state normalisation is fitted on the rows the model reads
    assert len(rows) == len(truth.state_examples()) and all(count_objects(r.objects) in (2, 3) for r in rows)
    assert any(np.array_equal(r.objects, ds.episodes[0].observed[0]) for r in rows[:8])


def test_observed_state_trains(observed, tmp_path):
    result = run(compose_config([*TINY, f"data.dirs=[{observed}]", f"output_dir={tmp_path}/run", "data.state=observed",
                                 "train.steps=1", "train.batch_size=4", "train.warmup_steps=0", "save_every=1",
                                 "eval.every=0", "eval.final=false", "progress=false", "num_threads=1",
                                 "data.validate_images=false"]))
    assert result["steps"] == 1 and np.isfinite(result["final_loss"])


def test_a_folder_without_observed_rows_is_refused_in_one_line(tmp_path):
    plain = tmp_path / "plain"
    features = make_features((32, 32), ["dx", "dy", "dz", "grip"])
    with DatasetWriter(plain, features, fps=5, robot_type="panda", palme={"world": "pickplace", "control_hz": 20}) as w:
        w.add(encode_episode(_episode(0), features))
    with pytest.raises(ValueError) as err:
        run(compose_config([*TINY, f"data.dirs=[{plain}]", f"output_dir={tmp_path}/run", "data.state=observed",
                            "train.steps=1", "progress=false"]))
    message = str(err.value)
    assert "\n" not in message and OBSERVED_STATE_KEY in message and str(plain) in message
    assert "palme-collect state=estimated" in message
    assert _data(str(plain), "privileged", BASE).train["plan"]  # the default reads it as before
    with pytest.raises(ValueError, match=r"data.state must be one of \['privileged', 'observed'\], got 'estimated'"):
        DataConfig(state="estimated")
