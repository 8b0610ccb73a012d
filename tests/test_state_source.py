"""Issue #20: the state source switch (state=privileged|estimated|noisy), skills on estimated state
(skills_use=estimated) and the blanked camera (blank_frames=true: for the model planner and for perception)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pybullet as p
import pytest

from agent.loop import Agent
from agent.parser import SceneContext, valid_steps
from agent.planners import (
    PalmEPlanner,
    PlanContext,
    Planner,
    PlannerOptions,
    make_planner,
    planner_from_options,
)
from agent.state_options import StateOptions
from envs import make_env
from envs.catalogue import COLOR_NAMES, descs_from_rows
from envs.state_sources import make_state_source, perceive, state_source_names
from envs.vocab import SkillCall, object_names
from policies.base import skill_executor
from policies.estimated import VIEW_POSE, find_named, run_skill_estimated

ROOT = Path(__file__).resolve().parents[1]
SEED = 1_000_003  # an L1 scene: three cubes (a small and a large orange one, a green one), two zones


def _env(task: str = "stack", **kw):
    return make_env("pickplace", task, split="L1", obs_type="state", **kw)


# ---- state=estimated | noisy ----------------------------------------------------------------------------
def test_estimated_rows_are_the_privileged_ones_within_a_centimetre_and_a_half():
    env = _env(state="estimated")
    try:
        obs, _ = env.reset(seed=SEED)
        u = env.unwrapped
        assert env.observation_space.contains(obs)  # same keys, shapes and dtypes as privileged observations
        true, est = u.object_rows(), obs["objects"]
        n = len(u.object_ids)
        assert int(est[:, -1].sum()) == n and not est[n:].any()
        used = set()
        for row in true[:n]:  # each true cube: the estimated cube of its colour and size, 1.5 cm from it at most
            same = [j for j in range(n) if round(est[j, 8]) == round(row[8]) and abs(est[j, 7] - row[7]) < 1e-6]
            j = min(same, key=lambda j: np.linalg.norm(est[j, :3] - row[:3]))
            assert j not in used and np.linalg.norm(est[j, :3] - row[:3]) < 0.015
            used.add(j)
        tz = {round(r[8]): r for r in u.zone_rows() if r[-1] > 0.5}
        ez = {round(r[8]): r for r in obs["zones"] if r[-1] > 0.5}
        assert set(ez) == set(tz) and all(np.linalg.norm(ez[c][:2] - tz[c][:2]) < 0.015 for c in tz)
        assert perceive(env).objects is not obs["objects"]  # the observation holds a copy of the cached estimate
        np.testing.assert_array_equal(perceive(env).objects, est)  # one estimate per scene and control step
    finally:
        env.close()


def _noisy_rows(seed: int, noise: float = 0.01) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    env = _env(state="noisy", state_noise_m=noise)
    try:
        first = env.reset(seed=seed)[0]["objects"]
        second = env.unwrapped.observe()["objects"]
        return first, second, env.unwrapped.object_rows()
    finally:
        env.close()


def test_noisy_rows_repeat_per_seed_differ_between_seeds_and_leave_the_scene_alone():
    a1, a2, true_a = _noisy_rows(SEED)
    b1, b2, _ = _noisy_rows(SEED)
    c1, _, _ = _noisy_rows(SEED + 1)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)  # the same sequence of draws
    assert not np.array_equal(a1, a2)  # each observation draws anew
    n = int(true_a[:, -1].sum())
    assert not np.allclose(a1[:n, :3], c1[:n, :3])
    noise = a1[:n, :3] - true_a[:n, :3]
    assert 0 < np.abs(noise).max() < 0.06 and np.array_equal(a1[:, 3:], true_a[:, 3:])  # positions only
    assert not a1[n:].any()  # absent rows stay zero
    plain = _env()  # the scene drawn from the seed is the privileged env's: the noise has a stream of its own
    try:
        plain.reset(seed=SEED)
        np.testing.assert_array_equal(plain.unwrapped.object_rows(), true_a)
    finally:
        plain.close()
    zero, _, true0 = _noisy_rows(SEED, noise=0.0)
    np.testing.assert_array_equal(zero, true0)


@pytest.mark.parametrize("state", ["noisy", "estimated"])
def test_gymnasiums_checker_passes_with_every_source(state):
    from gymnasium.utils.env_checker import check_env

    env = make_env("pickplace", "grasp", split="L1", state=state, image_size=(32, 32))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the Box bounds warnings every world gets
            check_env(env.unwrapped, skip_render_check=True)  # seeded resets repeat, observations fit the space
    finally:
        env.close()


def test_a_new_state_source_is_one_class():
    from envs.state_sources import STATE_SOURCES, StateSource, register_state_source

    @register_state_source
    class Blind(StateSource):
        name = "blind_test"

        def rows(self, env):
            return np.zeros_like(env.object_rows()), np.zeros_like(env.zone_rows())

    try:
        env = _env(state="blind_test")
        try:
            obs, _ = env.reset(seed=SEED)
            assert not obs["objects"].any() and env.unwrapped.object_rows().any()
        finally:
            env.close()
    finally:
        del STATE_SOURCES["blind_test"]


@pytest.mark.parametrize("kwargs", [{"state": "psychic"}, {"state": "noisy", "state_noise_m": -0.1},
                                    {"state": "noisy", "state_noise_m": float("nan")}])
def test_bad_sources_are_refused_in_one_line(kwargs):
    with pytest.raises(ValueError, match=r"state must be one of \['privileged', 'estimated', 'noisy'\]|state_noise_m"):
        make_state_source(kwargs["state"], kwargs.get("state_noise_m", 0.01))
    with pytest.raises(ValueError, match="state"):
        StateOptions(**kwargs)
    with pytest.raises(ValueError, match="skills_use must be one of"):
        StateOptions(skills_use="telepathic")
    assert state_source_names()[:3] == ["privileged", "estimated", "noisy"]


def _oracle_steps(**kw) -> tuple[list[str], bool]:
    env = _env("put_in_zone", **kw)
    try:
        trace = Agent(make_planner("oracle")).episode(env, seed=SEED)
        return [s.step for s in trace.steps], bool(trace.success)
    finally:
        env.close()


def test_the_oracle_ignores_the_switch():
    steps, ok = _oracle_steps()
    assert ok and steps[-1] == "done"
    assert _oracle_steps(state="noisy", state_noise_m=0.05) == (steps, ok)
    assert _oracle_steps(state="estimated") == (steps, ok)


# ---- CLIs: one line, exit 2 ------------------------------------------------------------------------------
CLI_CASES = {
    "palme-eval": ("agent.evaluate", ["planner=oracle", "tasks=[grasp]", "episodes=1", "state=psychic"],
                   "state must be one of ['privileged', 'estimated', 'noisy'], got 'psychic'"),
    "palme-run": ("agent.cli.run", ["planner=oracle", "task=grasp", "skills_use=telepathic"],
                  "skills_use must be one of ['privileged', 'estimated'], got 'telepathic'"),
    "palme-collect": ("training.collect", ["state=noisy", "state_noise_m=-0.5"],
                      "state_noise_m must be a finite standard deviation >= 0 (m), got -0.5"),
}


@pytest.mark.parametrize("prog", list(CLI_CASES))
def test_bad_state_keys_are_one_line_and_exit_2(tmp_path, prog):
    module, args, says = CLI_CASES[prog]
    extra = [f"out={tmp_path / 'data'}"] if prog == "palme-collect" else []
    proc = subprocess.run([sys.executable, "-m", module, *args, *extra, f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("pybullet build time")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines == [f"{prog}: error: {says}"]


def test_eval_workers_build_their_env_and_executor_from_the_state_keys(tmp_path):
    from agent.eval_agent import build_state_options
    from agent.eval_runner import EpisodeRunner
    from agent.evaluate import EvalConfig, resolve, runner_settings

    cfg = resolve(EvalConfig(planner="oracle", tasks=["grasp"], state="noisy", state_noise_m=0.02,
                             skills_use="estimated"))
    settings = runner_settings(cfg)
    runner = EpisodeRunner(settings, tmp_path)
    try:
        source = runner._env_for("grasp", "L1").unwrapped.state_source
        assert (source.name, source.noise_m) == ("noisy", 0.02)
    finally:
        runner.close()
    assert build_state_options(settings).executor() is run_skill_estimated
    assert build_state_options({}).executor() is skill_executor("privileged")  # settings of older runs


# ---- skills_use=estimated -----------------------------------------------------------------------------
def test_find_named_reads_the_words_of_the_name():
    rows = np.zeros((8, 11), np.float32)
    for k, (colour, edge) in enumerate([("red", 0.04), ("red", 0.05), ("blue", 0.04)]):
        rows[k, [7, 8, 10]] = edge, COLOR_NAMES.index(colour), 1.0
    assert find_named(rows, "small red cube") == (0, "")
    assert find_named(rows, "large red cube") == (1, "")
    assert find_named(rows, "blue cube") == (2, "")
    k, why = find_named(rows, "red cube")
    assert k is None and why == "the camera's estimate holds 2 objects that fit the red cube; cannot tell which"
    k, why = find_named(rows, "green cube")
    assert k is None and why.startswith("the camera's estimate holds no green cube (it sees ")
    k, why = find_named(rows, "obj 2")
    assert k is None and "obj 2" in why and "no colour and shape words" in why


def test_estimated_skills_complete_the_oracles_pick_on_an_l1_scene():
    env = _env("grasp", state="estimated")
    try:
        env.reset(seed=SEED)
        u = env.unwrapped
        plan = u.task.oracle_plan(u, u.goal)
        assert plan[0].skill == "pick"
        res = skill_executor("estimated")(u, plan[0])
        assert res.success, res.reason
        assert res.reason == f"holding the {u.names[plan[0].obj]}" and res.steps > 0
        assert u.held_object() == plan[0].obj and u.is_success  # the simulator agrees
    finally:
        env.close()


def test_estimated_stack_runs_the_oracles_plan_through_the_skills():
    env = _env("stack")  # the planner's rows stay privileged: skills_use alone takes its own estimate
    try:
        env.reset(seed=1_000_000)
        u = env.unwrapped
        for _ in range(6):
            plan = u.task.oracle_plan(u, u.goal)
            if not plan:
                break
            res = run_skill_estimated(u, plan[0])
            assert res.success, res.reason
        assert u.is_success
    finally:
        env.close()


def test_a_step_whose_object_the_estimate_lacks_fails_cleanly_after_looking_again():
    env = _env("grasp")
    try:
        env.reset(seed=SEED)
        u = env.unwrapped
        i = u.task.oracle_plan(u, u.goal)[0].obj
        # repaint the cube black: the camera no longer sees it as any catalogue cube (nothing else changes)
        p.changeVisualShape(u.object_ids[i], -1, rgbaColor=[0.05, 0.05, 0.05, 1.0], physicsClientId=u.client)
        perceive(u, fresh=True)
        cube0 = u.object_pose(i)[0]
        res = run_skill_estimated(u, SkillCall("pick", obj=i))
        assert not res.success and res.steps > 0  # it moved, only to look from VIEW_POSE
        assert res.reason.startswith(f"the camera's estimate holds no {u.names[i]} (it sees ")
        assert res.reason.endswith(", even with the arm out of view")
        np.testing.assert_allclose(u.ee_pose()[0], VIEW_POSE["pickplace"], atol=0.03)
        np.testing.assert_allclose(u.object_pose(i)[0], cube0, atol=1e-4)  # no grasp was tried
        assert u.held_object() is None
        # through the agent loop the reason is the step's feedback (the hand is already out of view: no move)
        trace = Agent(make_planner("oracle"), executor=skill_executor("estimated"), max_steps=1).run(env, seed=SEED)
        step = trace.steps[0]
        assert step.failure == "skill_failure" and step.feedback.startswith("failed: the camera's estimate holds no")
        assert step.end_t == step.start_t
    finally:
        env.close()


def test_a_cube_the_arm_hides_is_found_by_looking_again():
    env = _env("stack")
    try:
        env.reset(seed=1_500_006)
        u = env.unwrapped
        for _ in range(2):  # pick up and place: the hand then hovers between the camera and the next cube
            assert run_skill_estimated(u, u.task.oracle_plan(u, u.goal)[0]).success
        call = u.task.oracle_plan(u, u.goal)[0]
        k, why = find_named(perceive(u).objects, u.names[call.obj])
        assert k is None and why.startswith(f"the camera's estimate holds no {u.names[call.obj]}")
        res = run_skill_estimated(u, call)
        assert res.success, res.reason
        assert u.held_object() == call.obj
    finally:
        env.close()


# ---- blank_frames ----------------------------------------------------------------------------------------
def _seen_images(blank: bool) -> tuple[list[np.ndarray], np.ndarray]:
    """The images the shipped model is given for one decision, and the frame the env rendered."""
    planner = planner_from_options("palme", PlannerOptions(blank_frames=blank))
    assert isinstance(planner, PalmEPlanner) and planner.blank_frames is blank and planner.needs_image
    given: list[np.ndarray] = []
    generate = planner.model.generate

    def recording(examples, **kw):
        given.extend(np.array(ex.image) for ex in examples)
        return generate(examples, **kw)

    planner.model.generate = recording
    env = make_env("pickplace", "grasp", split="L1", image_size=(64, 64))
    frames: list[np.ndarray] = []
    try:
        Agent(planner, max_steps=1, on_step_start=lambda s: frames.append(s.obs["rgb"])).episode(env, seed=SEED)
    finally:
        env.close()
    return given, frames[0]


def test_blank_frames_zero_the_frame_the_model_sees():
    given, frame = _seen_images(blank=True)
    assert frame.any() and given
    for image in given:
        assert image.shape == frame.shape and image.dtype == np.uint8 and not image.any()
    given, frame = _seen_images(blank=False)
    assert all(np.array_equal(image, frame) for image in given)


def _blank_env(state: str, blank: bool, **kw):
    """An L1 grasp env built from the CLI keys as palme-eval builds it (`blank_frames` -> `blank_perception`)."""
    kwargs = StateOptions(state=state, **kw).env_kwargs("pickplace", "L1", blank_frames=blank)
    return make_env("pickplace", "grasp", obs_type="state", **kwargs)


def test_blank_frames_blank_the_camera_perception_reads():
    env = _blank_env("estimated", blank=True)
    try:
        obs, _ = env.reset(seed=SEED)
        u = env.unwrapped
        assert u.blank_perception and u.object_rows().any()  # the scene is there; the camera shows nothing of it
        assert not obs["objects"].any() and not obs["zones"].any()
        assert perceive(env).n_objects == 0
        u.blank_perception = False  # the same env at the same control step, camera back: the estimate is redone
        seen = u.observe()
        assert int(seen["objects"][:, -1].sum()) == len(u.object_ids) and seen["zones"].any()
    finally:
        env.close()


@pytest.mark.parametrize(("state", "kw"), [("privileged", {}), ("noisy", {"state_noise_m": 0.02})])
def test_blank_frames_leave_rows_that_do_not_come_from_the_camera_alone(state, kw):
    rows = {}
    for blank in (False, True):
        env = _blank_env(state, blank=blank, **kw)
        try:
            obs, _ = env.reset(seed=SEED)
            assert env.unwrapped.blank_perception is blank
            rows[blank] = obs["objects"], obs["zones"]
        finally:
            env.close()
    assert rows[False][0].any()
    for with_camera, blanked in zip(rows[False], rows[True], strict=True):
        np.testing.assert_array_equal(blanked, with_camera)


@pytest.mark.parametrize("planner", ["palme", "oracle"])  # the shipped model; the oracle surely tries a pick
def test_an_evaluation_with_the_camera_blanked_runs_and_its_skills_see_nothing(tmp_path, planner):
    import json

    from agent.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(planner=planner, tasks=["grasp"], split="L1", episodes=1, videos_per_task=0, progress=False,
                     image_size=[64, 64], state="estimated", skills_use="estimated", blank_frames=True, max_steps=3)
    info = evaluate(cfg, tmp_path / "run")
    assert info["overall"]["n_episodes"] == 1 and info["config"]["blank_frames"] is True
    (episode,) = [json.loads(line) for line in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    assert episode["traceback"] is None and episode["failure"] != "exception" and not episode["success"]
    picks = [s for s in episode["steps"] if s["text"] != "done"]
    assert all(s["failure"] == "skill_failure" and "it sees no objects" in s["feedback"] for s in picks)
    assert picks or planner == "palme"


# ---- the planner's allowed steps: the scene as its rows show it --------------------------------------------
class _Recording(Planner):
    """Writes the oracle's step (or done) and records the steps the loop lets a planner choose among."""

    name = "recording"

    def __init__(self) -> None:
        self.allowed: list[list[str]] = []
        self.obs: list[dict] = []
        self.oracle = make_planner("oracle")

    def next_step(self, ctx: PlanContext) -> str:
        self.allowed.append(ctx.valid_steps())
        self.obs.append(ctx.obs)
        step = self.oracle.next_step(ctx)
        return step if step in self.allowed[-1] else "done"


def _allowed(state: str, blank: bool = False, task: str = "grasp", steps: int = 1) -> tuple[_Recording, list]:
    """The recording planner after up to `steps` decisions of an L1 episode, and the simulator's scenes there."""
    env = _blank_env(state, blank=blank) if task == "grasp" else _env(task, state=state)
    planner, scenes = _Recording(), []
    try:
        Agent(planner, max_steps=steps,
              on_step_start=lambda _: scenes.append(SceneContext.from_env(env))).episode(env, seed=SEED)
    finally:
        env.close()
    return planner, scenes


def test_with_the_camera_blanked_the_planner_may_name_no_object():
    planner, scenes = _allowed("estimated", blank=True)
    assert planner.allowed == [["done"]]  # no object row: only the steps that need no object
    assert len(scenes[0].objects) == 3 and "pick up the green cube" in valid_steps(scenes[0])  # the simulator's scene
    env = _blank_env("estimated", blank=True)
    try:  # the random baseline draws from the same set
        trace = Agent(make_planner("random"), max_steps=3).episode(env, seed=SEED)
    finally:
        env.close()
    assert [s.step for s in trace.steps] == ["done"] and not trace.success


@pytest.mark.parametrize("blank", [False, True])
def test_with_privileged_state_the_allowed_steps_are_the_simulators(blank):
    planner, scenes = _allowed("privileged", blank=blank)
    assert planner.allowed == [valid_steps(scenes[0])] and len(planner.allowed[0]) == 4  # three picks and done


def test_with_estimated_state_the_allowed_steps_name_what_perception_sees():
    planner, _ = _allowed("estimated")
    (allowed,), (obs,) = planner.allowed, planner.obs
    seen = object_names(descs_from_rows(obs["objects"]))
    assert sorted(seen) == ["green cube", "large orange cube", "small orange cube"]
    assert allowed == [f"pick up the {name}" for name in seen] + ["done"]  # in the estimate's row order
    planner, scenes = _allowed("estimated", task="put_in_zone", steps=2)  # a held cube: its place steps, zones seen
    held = scenes[1].names[scenes[1].held]
    seen = object_names(descs_from_rows(planner.obs[1]["objects"]))
    places = (f"place the {held} on the ", f"place the {held} in the ")  # the held cube only, nothing to pick
    assert held in seen and all(s.startswith(places) for s in planner.allowed[1] if s != "done")
    zones = [COLOR_NAMES[round(z[8])] for z in planner.obs[1]["zones"] if z[-1] > 0.5]
    assert sorted(zones) == sorted(scenes[1].zones)
    assert [s for s in planner.allowed[1] if s.endswith("zone")] == [f"place the {held} in the {z} zone" for z in zones]


def test_the_shipped_model_with_the_camera_blanked_cannot_name_the_cube(tmp_path):
    import json

    from agent.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(planner="palme", tasks=["grasp"], split="L1", episodes=2, videos_per_task=0, progress=False,
                     image_size=[64, 64], state="estimated", blank_frames=True, skills_use="privileged")
    info = evaluate(cfg, tmp_path / "run")
    assert info["overall"]["n_episodes"] == 2 and info["overall"]["n_successes"] == 0
    episodes = [json.loads(line) for line in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    assert all(s["text"] == "done" for ep in episodes for s in ep["steps"])  # constrained to what it sees: nothing


def test_camera_reliance_pairs_the_same_seeds_and_pools_them():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import camera_reliance

    def rec(task, seed, ok):
        return {"task": task, "seed": seed, "success": ok}

    records = {"rendered": [rec("stack", 1, True), rec("stack", 2, True), rec("grasp", 1, False)],
               "blanked": [rec("grasp", 1, True), rec("stack", 2, False), rec("stack", 1, True)]}
    rows = camera_reliance.paired(records)
    assert rows == [{"task": "stack", "seed": 1, "rendered": 1, "blanked": 1},
                    {"task": "stack", "seed": 2, "rendered": 1, "blanked": 0},
                    {"task": "grasp", "seed": 1, "rendered": 0, "blanked": 1}]
    stack, grasp, pooled = camera_reliance.summary(rows)
    assert (stack["task"], stack["n"], stack["difference_points"], stack["only_rendered"]) == ("stack", 2, -50.0, 1)
    assert grasp["only_blanked"] == 1 and pooled["task"] == "all" and pooled["n"] == 3
    assert pooled["rendered"]["successes"] == 2 and pooled["blanked"]["ci95"][0] > 0
    assert "| all | 3 |" in camera_reliance.table([stack, grasp, pooled])



# ---- training data: the planner's rows and the simulator's ------------------------------------------------
def test_collect_with_estimated_state_records_both_rows_and_old_folders_still_load(tmp_path):
    from training.collect import CollectConfig, collect
    from training.dataset import LogDataset
    from training.dataset.schema import ENV_STATE_KEY, OBSERVED_STATE_KEY, load_info
    from training.dataset.validate import validate

    args = {"task": "grasp", "split": "L1", "seed_start": SEED, "episodes": 1, "workers": 1, "image_size": [32, 32],
            "progress": False}
    out = tmp_path / "estimated"
    collect(CollectConfig(**args, state="estimated", out=str(out)), log=lambda *_: None)
    info = load_info(out)
    keys = list(info["features"])
    assert keys[keys.index(ENV_STATE_KEY) + 1] == OBSERVED_STATE_KEY
    assert info["palme"]["observed_state"] == [{"source": "estimated"}]
    assert not [pr for pr in validate(out) if pr.level == "error"]
    ep = LogDataset(out).episodes[0]
    assert ep.observed is not None and ep.observed.shape == ep.env_state.shape
    n = len(ep.objects)
    first_true, first_seen = ep.env_state[0, :n], ep.observed[0, :n]
    assert not np.array_equal(first_true, first_seen)  # the estimate: its own order and measured positions
    for row in first_true:  # ... of the same cubes: each true cube has an estimated one of its colour within 1.5 cm
        same = first_seen[np.round(first_seen[:, 8]) == round(row[8])]
        assert np.min(np.linalg.norm(same[:, :3] - row[:3], axis=1)) < 0.015
    with pytest.raises(ValueError, match="collected with state=estimated.noisy, this run collects with state=privileged"):
        collect(CollectConfig(**args, out=str(out)), log=lambda *_: None)
    plain = tmp_path / "privileged"  # a folder as every earlier run wrote it: no observed rows, loads as before
    collect(CollectConfig(**args, out=str(plain)), log=lambda *_: None)
    assert OBSERVED_STATE_KEY not in load_info(plain)["features"] and not [pr for pr in validate(plain) if pr.level == "error"]
    data = LogDataset(plain)
    assert data.episodes[0].observed is None
    np.testing.assert_array_equal(data.frame(0, 0, image=False)["objects"], ep.env_state[0])  # same scene, same truth
    with pytest.raises(ValueError, match="has no observed rows"):
        data.frame(0, 0, image=False, observed=True)
