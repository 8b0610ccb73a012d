"""The agent loop on the real pick-and-place world: the oracle through text succeeds; faults end episodes cleanly."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.loop import FAILURE_KINDS, Agent, EpisodeTrace, FlakySkills
from agent.parser import valid_steps
from agent.planners import PlanContext, Planner, make_planner, planner_names
from envs.vocab import SkillCall, render_step

pytestmark = pytest.mark.skipif(
    not (importlib.util.find_spec("envs.pickplace") and importlib.util.find_spec("policies.pickplace")),
    reason="the pick-and-place world is not in this checkout",
)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def grasp_env():
    from envs import make_env

    env = make_env("pickplace", "grasp", obs_type="state")
    yield env
    env.close()


class ScriptedText(Planner):
    """A planner that writes whatever a function of the context returns (garbage, missing objects, ...)."""

    name = "scripted"

    def __init__(self, write) -> None:
        self.write = write
        self.seen: list[PlanContext] = []

    def next_step(self, ctx: PlanContext) -> str:
        self.seen.append(ctx)
        return self.write(ctx)


def _assert_clean_failure(trace: EpisodeTrace) -> None:
    assert trace.success is False and trace.failure in FAILURE_KINDS and trace.reason
    json.loads(trace.to_json())  # always serialisable


# ---- the oracle through text ------------------------------------------------------------------------
@pytest.mark.parametrize(("task", "seed"), [("grasp", 2), ("stack", 1), ("put_in_zone", 2), ("unstack", 1)])
def test_oracle_through_text_succeeds_and_records_each_step(task, seed):
    from envs import make_env

    env = make_env("pickplace", task, obs_type="state")
    try:
        trace = Agent(make_planner("oracle")).episode(env, seed=seed)
        u = env.unwrapped
        assert trace.success is True and trace.ended_by == "done" and trace.failure is None, trace.reason
        assert trace.steps[-1].step == "done" and all(s.feedback == "ok" for s in trace.steps)
        assert trace.step_budget == 2 * trace.oracle_plan_length + 2
        for s in trace.steps:  # the canonical text of each call is what entered the history
            assert render_step(SkillCall(**s.call), u.names) == s.step
        assert [s.start_t for s in trace.steps[1:]] == [s.end_t for s in trace.steps[:-1]]
        assert trace.control_steps == sum(s.end_t - s.start_t for s in trace.steps) > 0
    finally:
        env.close()


def test_hooks_see_each_step_and_every_control_step(grasp_env):
    starts, ends, actions = [], [], []
    n_hooks = len(grasp_env.unwrapped.step_hooks)
    agent = Agent(
        make_planner("oracle"), render=True, on_step_start=starts.append, on_step_end=ends.append,
        on_control=lambda env: actions.append(env.last_action.copy()),
    )
    trace = agent.episode(grasp_env, seed=0)
    assert trace.success
    assert [s.index for s in starts] == [r.index for r in ends] == list(range(len(trace.steps)))
    assert all(s.obs["rgb"].ndim == 3 and s.obs["objects"].shape[0] == 8 for s in starts)  # frame + state per step
    assert starts[0].call == SkillCall(**trace.steps[0].call)
    assert len(actions) == trace.control_steps and all(np.all(np.isfinite(a)) for a in actions)
    assert len(grasp_env.unwrapped.step_hooks) == n_hooks  # the control hook is removed after the episode


# ---- fault injection ------------------------------------------------------------------------------------
def test_garbage_planner_ends_cleanly_and_sees_the_parser_feedback(grasp_env):
    rng = np.random.default_rng(0)
    junk = ["", "asdf qwer", "pick up the", "place(,)", "import os", "\x00\x01", "step 3.", "??"]
    planner = ScriptedText(lambda ctx: junk[int(rng.integers(len(junk)))] + " " * int(rng.integers(3)))
    trace = Agent(planner).episode(grasp_env, seed=0)
    _assert_clean_failure(trace)
    assert trace.ended_by == "consecutive_failures" and len(trace.steps) == 3 and trace.control_steps == 0
    assert trace.failure == "parse_error" and trace.n_replans == 2
    first = trace.steps[0]
    assert planner.seen[1].history == [(first.step, first.feedback)] and first.feedback.startswith("failed: ")


def test_planner_naming_missing_objects_gets_invalid_reference(grasp_env):
    names = iter(["pick up the pink cube", "pick up obj 9", "place(obj 42, table)"])
    trace = Agent(ScriptedText(lambda ctx: next(names))).episode(grasp_env, seed=0)
    _assert_clean_failure(trace)
    assert trace.failure == "invalid_reference"
    assert "pink" in trace.steps[0].reason and "obj 9" in trace.steps[1].reason
    assert all(s.error["kind"] == "unknown_object" for s in trace.steps)


def test_precondition_and_step_budget(grasp_env):
    grasp_env.reset(seed=0)
    name = grasp_env.unwrapped.names[0]
    trace = Agent(ScriptedText(lambda ctx: f"place the {name} on the table"), max_steps=4,
                  max_consecutive_failures=10).run(grasp_env)
    _assert_clean_failure(trace)
    assert trace.failure == "step_budget" and len(trace.steps) == 4
    assert all(s.failure == "precondition" and "holds nothing" in s.reason for s in trace.steps)


def test_premature_done_and_exceptions_are_failures_with_reasons(grasp_env):
    trace = Agent(ScriptedText(lambda ctx: "done")).episode(grasp_env, seed=0)
    _assert_clean_failure(trace)
    assert trace.failure == "premature_done"

    def boom(ctx):
        raise RuntimeError("the model fell over")

    trace = Agent(ScriptedText(boom)).episode(grasp_env, seed=0)
    _assert_clean_failure(trace)
    assert trace.failure == "exception" and "the model fell over" in trace.traceback

    def broken_skill(env, call):
        raise KeyError("gripper")

    trace = Agent(make_planner("oracle"), executor=broken_skill).episode(grasp_env, seed=0)
    _assert_clean_failure(trace)
    assert trace.failure == "exception" and "KeyError" in trace.reason
    assert Agent(make_planner("oracle")).episode(grasp_env, seed=0).success  # the env is still usable


@pytest.mark.parametrize("mode", ["skip", "interrupt"])
def test_random_skill_failures_end_every_episode_cleanly(grasp_env, mode):
    flaky = FlakySkills(0.3, np.random.default_rng(1), mode=mode)
    agent = Agent(make_planner("oracle"), executor=flaky)
    outcomes = []
    for seed in (0, 1, 3, 0):
        trace = agent.episode(grasp_env, seed=seed)
        assert trace.success is True or (trace.failure in FAILURE_KINDS and trace.reason)
        injected = [s for s in trace.steps if "injected fault" in s.reason]
        assert all(s.failure == "skill_failure" for s in injected)
        outcomes.append(trace.success)
    assert flaky.injected > 0 and sum(outcomes) >= 3  # the oracle replans around the injected faults


def test_random_valid_planner_only_writes_valid_steps(grasp_env):
    planner = make_planner("random", rng=np.random.default_rng(0))
    written = []
    trace = Agent(planner, max_steps=3, on_step_start=written.append).episode(grasp_env, seed=1)
    assert all(s.error is None for s in written)
    assert trace.success in (True, False) and (trace.success or trace.failure in FAILURE_KINDS)
    assert "oracle" in planner_names() and "palme" in planner_names()
    with pytest.raises(ValueError, match="known planners"):
        make_planner("clairvoyant")


def test_instruction_the_task_cannot_parse_has_unknown_success(grasp_env):
    grasp_env.reset(seed=0, options={"instruction": "do a little dance"})
    trace = Agent(make_planner("oracle")).run(grasp_env, seed=0)
    assert trace.success is None and not trace.success_known and trace.outcome == "success unknown"
    assert trace.ended_by == "done" and "success unknown" in trace.reason
    d = trace.to_dict()
    assert d["success"] is False and d["success_known"] is False


def test_valid_steps_of_a_real_scene_follow_the_gripper(grasp_env):
    from agent.parser import SceneContext

    grasp_env.reset(seed=0)
    ctx = SceneContext.from_env(grasp_env)
    assert ctx.track_held and ctx.held is None and ctx.zones == tuple(grasp_env.unwrapped.zones)
    assert {s.split(" the ")[0] for s in valid_steps(ctx)} == {"pick up", "done"}


# ---- palme-run end to end ---------------------------------------------------------------------------------
def test_palme_run_writes_trace_and_video(tmp_path):
    import imageio.v2 as imageio

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "agent.cli.run", "task=grasp", "seed=1", "planner=oracle", "image_size=[64,64]", "fps=2",
           f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "step 1: pick up the" in proc.stdout and str(out) in proc.stdout
    assert "build time" not in proc.stdout + proc.stderr  # #22: no PyBullet banner from any CLI
    trace = json.loads((out / "trace.json").read_text())
    assert trace["success"] is True and trace["success_known"] is True and trace["task"] == "grasp"
    assert trace["instruction"] and trace["steps"][-1]["step"] == "done"
    reader = imageio.get_reader(str(out / "episode.mp4"))
    frames = [f for f in reader]
    reader.close()
    assert len(frames) > len(trace["steps"]) and frames[0].shape[:2] == (128, 128)  # video_scale=2


@pytest.mark.parametrize(
    ("override", "says"),
    [({"task": "juggle"}, "known tasks"), ({"env": "mars"}, "known envs"), ({"planner": "psychic"}, "known planners"),
     ({"split": "L9"}, "known splits")],
)
def test_palme_run_rejects_bad_names_listing_known_ones(override, says):
    from agent.cli.run import check_names
    from agent.config import RunConfig

    with pytest.raises(ValueError, match=says):
        check_names(RunConfig(**override))


def test_palme_run_rejects_unknown_keys_at_start(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "agent.cli.run", "colour=red", f"hydra.run.dir={tmp_path}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0 and "colour" in proc.stderr + proc.stdout
    assert not (tmp_path / "trace.json").exists()


def test_interactive_session_runs_instructions_on_the_same_scene(tmp_path):
    import io

    from agent.cli.run import run
    from agent.config import RunConfig
    from envs import make_env

    env = make_env("pickplace", "grasp", obs_type="state")
    env.reset(seed=1)
    sampled = env.unwrapped.task_description
    env.close()
    out = io.StringIO()
    result = run(RunConfig(task="grasp", seed=1, planner="oracle", interactive=True, video=False), tmp_path,
                 stdin=[sampled + "\n", "do a little dance\n", "\n", "never read\n"], out=out)
    eps = result["episodes"]
    assert [e["instruction"] for e in eps] == [sampled, "do a little dance"]
    assert eps[0]["success"] is True and eps[1]["success_known"] is False and eps[1]["outcome"] == "success unknown"
    assert result["success_known"] is False
    assert json.loads((tmp_path / "trace.json").read_text()) == result
    assert "UNKNOWN: success unknown:" in out.getvalue() and "SUCCESS UNKNOWN" not in out.getvalue()


# ---- the model planners (an untrained tiny PalmE: its text is untrusted input) ------------------------------
TINY = {"llm": {"hidden": 64, "layers": 1, "heads": 2, "kv_heads": 2, "intermediate": 128},
        "vision": {"hidden": 32, "layers": 1, "heads": 2, "intermediate": 64}, "state": {"hidden": 64}}


def _tiny_model(grasp_env, **overrides):
    model_mod = pytest.importorskip("agent.model")
    from agent.parser import SceneContext

    texts = []
    for seed in range(3):
        grasp_env.reset(seed=seed)
        texts += valid_steps(SceneContext.from_env(grasp_env)) + [grasp_env.unwrapped.task_description]
    return model_mod.make_model("palme-small", tokenizer_texts=texts, **(TINY | overrides))


@pytest.fixture(scope="module")
def tiny_palme(grasp_env):
    return _tiny_model(grasp_env)


def test_constrained_palme_planner_writes_only_steps_that_parse(grasp_env, tiny_palme):
    from agent.planners import PalmEPlanner

    planner = PalmEPlanner(model=tiny_palme, constrained=True, max_new_tokens=24)
    starts = []
    trace = Agent(planner, max_steps=2, on_step_start=starts.append).episode(grasp_env, seed=0)
    assert planner.needs_image and all("rgb" in s.obs for s in starts)
    assert all(s.error is None for s in trace.steps), [s.text for s in trace.steps]
    assert all(s.prompt.startswith("Given <img>.") for s in trace.steps)
    assert trace.success is True or (trace.failure in FAILURE_KINDS and trace.reason)


def test_free_text_and_open_loop_palme_planners_end_cleanly(grasp_env, tiny_palme):
    from agent.planners import PalmEPlanner

    for planner in (PalmEPlanner(model=tiny_palme, constrained=False, max_new_tokens=12),
                    PalmEPlanner(model=tiny_palme, mode="open", max_plan_tokens=40)):
        trace = Agent(planner, max_steps=3).episode(grasp_env, seed=1)
        assert trace.success is True or (trace.failure in FAILURE_KINDS and trace.reason)
        assert 1 <= len(trace.steps) <= 3
        json.loads(trace.to_json())


class _ScriptedModel:
    """Stands in for a PalmE in planner-logic tests: a fixed success verdict; planning answers "done" unless constrained."""

    def __init__(self, verdict: str) -> None:
        from agent.prompts import PromptBuilder

        self.prompt_builder = PromptBuilder()
        self.verdict = verdict
        self.calls: list[tuple[str, list[str] | None]] = []

    def generate(self, examples, max_new_tokens=48, allowed=None):
        if "Was the task completed?" in examples[0].prompt:
            self.calls.append(("success", None))
            return [self.verdict]
        self.calls.append(("plan", list(allowed[0]) if allowed else None))
        return [allowed[0][0]] if allowed else ["done"]


def test_check_done_stops_on_the_models_success_detection_and_overrules_an_early_done(grasp_env):
    from agent.planners import PalmEPlanner

    no = _ScriptedModel("no")
    trace = Agent(PalmEPlanner(model=no, constrained=False, check_done=True), max_steps=2).episode(grasp_env, seed=0)
    assert all(s.text != "done" for s in trace.steps)  # "done" was overruled by the detector's "no"
    assert ("success", None) in no.calls  # asked before the second step, never before the first
    assert no.calls[0] == ("plan", None) and no.calls[1][0] == "plan" and "done" not in no.calls[1][1]
    assert trace.failure == "step_budget"

    yes = _ScriptedModel("yes")
    trace = Agent(PalmEPlanner(model=yes, constrained=False, check_done=True), max_steps=4).episode(grasp_env, seed=0)
    assert [s.text for s in trace.steps][-1] == "done" and len(trace.steps) == 2
    assert yes.calls[-1] == ("success", None)  # the detector's "yes" ended it without another planning call

    off = _ScriptedModel("yes")
    trace = Agent(PalmEPlanner(model=off, constrained=False), max_steps=2).episode(grasp_env, seed=0)
    assert trace.steps[0].text == "done" and all(c[0] == "plan" for c in off.calls)  # check_done off: never asked


def test_text_only_planner_prompts_carry_no_image_or_state(grasp_env):
    from agent.planners import TextOnlyPlanner

    model = _tiny_model(grasp_env, prompt={"tokens": []})
    starts = []
    planner = TextOnlyPlanner(model=model, constrained=True, max_new_tokens=24)
    trace = Agent(planner, max_steps=1, on_step_start=starts.append).episode(grasp_env, seed=0)
    assert not planner.needs_image and "rgb" not in starts[0].obs
    assert trace.steps[0].prompt.startswith("Task: ") and "<obj_" not in trace.steps[0].prompt


def test_palme_run_loads_a_checkpoint(tmp_path, grasp_env, tiny_palme):
    import io

    from agent.cli.run import run
    from agent.config import RunConfig

    tiny_palme.save_pretrained(tmp_path / "ckpt")
    cfg = RunConfig(task="grasp", seed=0, planner="palme", checkpoint=str(tmp_path / "ckpt"), constrained=True,
                    max_steps=1, video=False)
    result = run(cfg, tmp_path / "out", out=io.StringIO())
    assert result["planner"] == "palme" and len(result["steps"]) == 1 and result["steps"][0]["error"] is None
    with pytest.raises(ValueError, match="does not exist"):
        run(RunConfig(task="grasp", planner="palme", checkpoint=str(tmp_path / "nowhere"), video=False), tmp_path)


def test_default_palme_run_plans_with_the_shipped_model(tmp_path):
    """The README's main job: no planner or checkpoint given -> checkpoints/palme-tiny plans every step."""
    import io

    from agent.cli.run import run
    from agent.config import RunConfig

    cfg = RunConfig(task="grasp", seed=1, max_steps=2, video=False)
    assert cfg.planner == "palme" and cfg.checkpoint is None
    result = run(cfg, tmp_path / "out", out=io.StringIO())
    assert result["planner"] == "palme" and "palme-tiny" in str(result["checkpoint"])
    assert 1 <= len(result["steps"]) <= 2 and result["steps"][0]["step"]  # the model wrote a step
    assert isinstance(result["success"], bool) and result["reason"]


def test_small_camera_frames_give_videos_whose_caption_is_a_strip():
    """#22: a 64 px episode's video is upscaled, so the caption band covers a strip, not half the frame."""
    from envs import make_env
    from envs.video import VideoRecorder

    env = make_env("pickplace", task="grasp", image_size=(64, 64))
    try:
        env.reset(seed=1)
        rec = VideoRecorder(env.unwrapped)
        rec.text = "place the small cyan cube on the large yellow cube"
        rec.capture()
        frame, plain = rec.frames[0], rec.frame()
        assert frame.shape[:2] == plain.shape[:2] == (256, 256)
        changed = np.flatnonzero((frame != plain).any(axis=(1, 2)))  # rows the caption band covers
        assert changed.size and changed.min() >= 256 * 3 // 4 and changed.max() == 255
    finally:
        env.close()
