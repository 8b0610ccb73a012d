"""Example sources: a registry whose random streams are seeded by name, so adding a source changes no other
source's examples or draws; the one mixture sampler; held-out metrics derived from the registry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from test_train import TINY  # the small model of the training tests

from agent.prompts import PromptBuilder
from envs.catalogue import MAX_OBJECTS, OBJ_DIM, ROBOT_DIM, ObjectDesc, object_row
from training.config import DataConfig, TrainEvalConfig
from training.data import load_data
from training.dataset import DatasetWriter, EpisodeData, Frame, PlanStep, encode_episode, make_features
from training.evaluation import heldout_metrics
from training.examples import ExampleBuilder, mixture_weights
from training.sources import SOURCES, Draft, ExampleSource, Moment, register_source, source_rng
from training.train import compose_config, run
from training.vqa import q_color

FEATURES = make_features((32, 32), ["dx", "dy", "dz", "grip"])
COLORS = ("red", "green", "blue")
BASE = {"plan": 1.0, "plan_full": 1.0, "vqa_color": 1.0, "vqa_relation": 1.0, "success": 1.0, "goal": 1.0}


def _rows(rng: np.random.Generator, stacked: bool) -> np.ndarray:
    """Three cubes on the table; with `stacked`, the red one on the blue one."""
    rows = np.zeros((MAX_OBJECTS, OBJ_DIM), np.float32)
    for i, color in enumerate(COLORS):
        rows[i] = object_row((0.4 + 0.1 * i, rng.uniform(-0.2, 0.2), 0.025), (0, 0, 0, 1), 0.05,
                             ObjectDesc(color, "cube"))
    if stacked:
        rows[0, :3] = rows[2, :3] + np.array([0.0, 0.0, 0.05], np.float32)
    return rows


def _episode(seed: int) -> EpisodeData:
    """A stack episode of four frames: pick, place (red on blue), done; the task holds in the last frame."""
    rng = np.random.default_rng(seed)
    frames = [Frame(t=3 * i, rgb=rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
                    robot=rng.normal(size=ROBOT_DIM).astype(np.float32), objects=_rows(rng, stacked=i == 3),
                    action=rng.normal(size=4).astype(np.float32), success=i == 3) for i in range(4)]
    steps = [PlanStep("pick up the red cube", 0, 3, True, "ok"),
             PlanStep("place the red cube on the blue cube", 3, 6, True, "ok"), PlanStep("done", 9, 9, True, "done")]
    return EpisodeData(world="pickplace", task="stack", seed=seed, split="train",
                       instruction="stack the red cube on the blue cube", control_hz=20, frames=frames, steps=steps,
                       plans=[(0, [s.text for s in steps])], success=True,
                       objects=[{"color": c, "shape": "cube", "size": None} for c in COLORS],
                       names=[f"{c} cube" for c in COLORS])


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("sources") / "stack"
    with DatasetWriter(root, FEATURES, fps=5, robot_type="panda", palme={"world": "pickplace", "control_hz": 20}) as w:
        for seed in range(10):
            w.add(encode_episode(_episode(seed), FEATURES))
    return str(root)


# A new source, declared only here: one build function and its registration.
def build_higher(frame: Moment, rng: np.random.Generator) -> Draft | None:
    """Is the <a> higher than the <b>? for two cubes drawn at random (not asked when level)."""
    objects = frame.scene.objects
    a, b = (int(k) for k in rng.choice(len(objects), 2, replace=False))
    za, zb = objects[a].pos[2], objects[b].pos[2]
    if abs(za - zb) < 0.01:
        return None
    return Draft(frame.question(f"Is the {objects[a].name} higher than the {objects[b].name}?"), "yes" if za > zb else "no")


HIGHER = ExampleSource("vqa_higher", "vqa", build_higher, vqa=True)


@contextmanager
def registered(source: ExampleSource) -> Iterator[ExampleSource]:
    """The source registered for the duration (the registry is left as found)."""
    register_source(source)
    try:
        yield source
    finally:
        SOURCES.pop(source.name)


def _data(root: str, weights: dict[str, float]):
    cfg = DataConfig(dirs=[root], weights=weights, val_fraction=0.3, validate_images=False)
    return load_data(cfg, PromptBuilder(), seed=0, log=lambda _: None)


def test_a_new_source_changes_no_other_sources_examples_or_draws_and_trains(logs, tmp_path):
    without = _data(logs, BASE)
    with registered(HIGHER):
        _trains_with_the_new_source(logs, without, tmp_path)


def _trains_with_the_new_source(logs, without, tmp_path) -> None:
    with_it = _data(logs, {**BASE, "vqa_higher": 4.0})
    assert with_it.train["vqa_higher"] and with_it.heldout["vqa_higher"]
    for source in BASE:
        assert without.train[source] and with_it.train[source] == without.train[source], source
        assert with_it.heldout[source] == without.heldout[source], source
    # The training stream: each other source's examples come in the same order, only interleaved with the new one.
    a, b = without.stream(0).next(600), with_it.stream(0).next(600)
    for source in BASE:
        mine_a, mine_b = [i for s, i in a if s == source], [i for s, i in b if s == source]
        n = min(len(mine_a), len(mine_b))
        assert n > 20 and mine_a[:n] == mine_b[:n], source
    assert "vqa_higher" in {s for s, _ in with_it.stream(0).next(4)}  # the step below draws it
    weights = "{" + ", ".join(f"{k}: {v}" for k, v in {**BASE, "vqa_higher": 4.0}.items()) + "}"
    result = run(compose_config([*TINY, f"data.dirs=[{logs}]", f"output_dir={tmp_path}/run", "train.steps=1",
                                 "train.batch_size=4", "train.warmup_steps=0", "save_every=1", "eval.every=0",
                                 "eval.final=false", "progress=false", "num_threads=1", "data.val_fraction=0.3",
                                 f"+data.weights={weights}"]))
    assert result["steps"] == 1 and np.isfinite(result["final_loss"])


def test_a_source_draws_from_its_own_stream_seeded_by_its_name(logs):
    builder = ExampleBuilder(_data(logs, BASE).builders[0].ds, PromptBuilder(), seed=5)
    specs = builder.specs("vqa_color")
    assert len(specs) == 10 * 3  # every question frame: the three step starts (the last frame is one)
    for spec in specs:
        ep = builder.ds.episodes[spec.episode]
        question, answer = q_color(builder.scene(spec.episode, spec.frame), source_rng(5, "vqa_color", ep.index, spec.frame))
        assert (spec.prompt, spec.answer) == (builder.prompts.question(question, *builder.scene_counts(spec.episode, spec.frame)), answer)
    # crc32 of the name, never Python's salted hash: the same draws in every process
    assert source_rng(0, "vqa_color", 0, 0).integers(1 << 30) == 164805833
    assert source_rng(0, "vqa_color", 0, 0).integers(1 << 30) != source_rng(0, "vqa_count", 0, 0).integers(1 << 30)
    goals = builder.specs("goal")
    assert {g.answer for g in goals} <= {"on the blue cube", "at the bottom of the tower", "anywhere"} and len(goals) == 30


class _Answers:
    """A stand-in generator: right on plan (with a second step after it), plan_full and goal, wrong elsewhere;
    notes the token budget each source was given."""

    def __init__(self) -> None:
        self.budget: dict[str, int] = {}

    def generate(self, examples, max_new_tokens: int) -> list[str]:
        out = []
        for e in examples:
            source = e.meta["source"]
            self.budget[source] = max_new_tokens
            out.append({"plan": f"{e.answer}\nStep 2. done.", "plan_full": e.answer, "goal": e.answer}.get(source, "?"))
        return out


def test_heldout_metrics_come_from_the_registry_and_count_goal_as_vqa(logs):
    data = _data(logs, BASE)
    cfg = TrainEvalConfig(examples=5, max_new_tokens=7, max_long_tokens=40)
    model = _Answers()
    metrics, table = heldout_metrics(model, data, cfg)
    assert set(metrics) == {f"{s}_acc" for s in BASE} | {"plan_exact", "vqa_acc"}
    assert metrics["plan_acc"] == metrics["plan_exact"] == 1.0  # scored on the first step
    assert metrics["goal_acc"] == metrics["plan_full_acc"] == 1.0 and metrics["vqa_color_acc"] == 0.0
    n = {s: min(5, len(data.heldout[s])) for s in ("vqa_color", "vqa_relation", "success", "goal")}
    assert metrics["vqa_acc"] == pytest.approx(n["goal"] / sum(n.values()))  # goal is a question like the others
    assert model.budget == {"plan_full": 40} | {s: 7 for s in BASE if s != "plan_full"}
    assert table.count("\n| goal |") == min(cfg.samples, n["goal"])
    empty = _data(logs, {"plan": 1.0})
    empty.heldout = {}
    assert heldout_metrics(model, empty, cfg) == ({}, "")


def test_registry_refuses_unknown_and_taken_names_and_lists_the_known_ones():
    with registered(HIGHER):
        _refusals()
    assert "vqa_higher" not in SOURCES


def _refusals() -> None:
    with pytest.raises(ValueError, match="'vqa_higher' is already registered"):
        register_source(ExampleSource("vqa_higher", "vqa", build_higher))
    with pytest.raises(ValueError, match=r"unknown kind 'quiz'; expected one of \['plan', 'vqa'"):
        register_source(ExampleSource("quiz", "quiz", build_higher))
    with pytest.raises(ValueError, match=r"unknown metric 'bleu'; expected one of \['exact', 'first_step'\]"):
        register_source(ExampleSource("quiz", "vqa", build_higher, metric="bleu"))
    with pytest.raises(ValueError, match=r"unknown mixture sources \['webqa'\]; expected some of .*'vqa_higher'"):
        mixture_weights(weights={"webqa": 1.0, "vqa_higher": 1.0})
    assert "quiz" not in SOURCES and mixture_weights(weights={"vqa_higher": 1.0}) == {"vqa_higher": 1.0}


def test_refer_asks_which_object_words_of_the_grammar_mean_and_answers_its_scene_name(logs):
    """`refer`: "Which object is the <words>?" with words the task's grammar may say the object in (not its scene
    name), answered with "the <scene name>"; the words read back to that object in the grammar."""
    from envs.tasks.pickplace.language import CUBE

    data = load_data(DataConfig(dirs=[logs], weights={"refer": 1.0}), PromptBuilder(), 0, log=lambda *_: None)
    builder = data.builders[0]
    specs = builder.specs("refer")
    assert len(specs) >= 10
    for spec in specs:
        ep = builder.ds.episodes[spec.episode]
        objects = [ObjectDesc(**o) for o in ep.objects]
        words = spec.prompt.split("Which object is the ")[1].split("?")[0]
        k = ep.names.index(spec.answer.removeprefix("the "))
        assert words != ep.names[k] and words in CUBE.names(k, objects)
        assert CUBE.readings(objects)[words] == k  # the words single out that object


def test_examples_carry_the_goal_supports_an_object_feature_learns_from(logs):
    """A model whose object features learn from target `support_goal` (`instruction_support`) gets, with each
    example, the object each cube goes on by the episode's goal (red on blue: object 0 -> 2; -1 for none; -100 past
    the scene's objects); a model without such features gets none, and an unknown target is one clear error."""
    ds = _data(logs, BASE).builders[0].ds
    want = np.full(MAX_OBJECTS, -100)
    want[:3] = [2, -1, -1]
    for source in ("plan", "goal", "vqa_color"):
        builder = ExampleBuilder(ds, PromptBuilder(targets=("support_goal",)), seed=0)
        ex = builder.materialize(builder.specs(source)[0])
        np.testing.assert_array_equal(ex.array("support_goal"), want)
    plain = ExampleBuilder(ds, PromptBuilder(), seed=0)
    assert plain.materialize(plain.specs("plan")[0]).array("support_goal") is None
    odd = ExampleBuilder(ds, PromptBuilder(targets=("where_it_goes",)), seed=0)
    with pytest.raises(ValueError, match="no training target 'where_it_goes'"):
        odd.materialize(odd.specs("plan")[0])
