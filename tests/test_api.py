"""The Python API (agent/api.py), the README's example of it, gymnasium ids and vector envs, and the
errors a newcomer meets first: an env that was never reset, planner=text_only on a model that reads the scene."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

import envs
from agent.api import make_env, make_planner, run_episode
from agent.loop import Agent

ROOT = Path(__file__).resolve().parents[1]


def _readme_python_example() -> str:
    """The README's one ```python block (under "From Python")."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    assert len(blocks) == 1, f"expected one python block in README.md, found {len(blocks)}"
    return blocks[0]


def _python(code: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_readme_python_example_runs_verbatim():
    code = _readme_python_example()
    assert "from agent.api import" in code and "run_episode" in code and "evaluate(" in code
    res = _python(code)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("success ['pick up the") and lines[0].endswith("'done']"), res.stdout
    assert float(lines[-1]) == 100.0  # the oracle on grasp, 2 L1 episodes


def test_run_on_an_env_never_reset_says_so():
    env = make_env("pickplace", "grasp", obs_type="state", render_mode=None)
    try:
        with pytest.raises(ValueError, match=r"env was never reset: call env.reset\(seed=\.\.\.\) first"):
            Agent(make_planner("oracle")).run(env, seed=3)
        env.reset(seed=3)  # after a reset, run() plays the scene
        assert Agent(make_planner("oracle")).run(env, seed=3).success is True
    finally:
        env.close()


def test_make_env_with_seed_is_reset_and_run_episode_takes_a_planner_name():
    env = make_env("pickplace", "grasp", split="L1", seed=5, obs_type="state", render_mode=None)
    try:
        first = env.unwrapped.task_description
        assert first  # reset by make_env
        trace = run_episode(env, "oracle", seed=5)
        assert trace.success is True and trace.instruction == first and trace.steps[-1].step == "done"
    finally:
        env.close()


def test_make_planner_refuses_an_unknown_option_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown planner option\(s\) \['constrainted'\]; known options: .*constrained"):
        make_planner("palme", constrainted=False)
    with pytest.raises(ValueError, match="unknown planner 'orcale'; known planners"):
        make_planner("orcale")


def test_gym_make_with_the_module_prefix_needs_no_import_of_ours():
    """gymnasium 1.x has no plugin entry points; `envs:` in the id makes gymnasium import (and register) us."""
    res = _python(
        "import sys, gymnasium\n"
        "assert 'envs' not in sys.modules\n"
        "env = gymnasium.make('envs:palme/PickPlace-Stack-v0', obs_type='state', render_mode=None)\n"
        "obs, _ = env.reset(seed=0)\n"
        "print(env.unwrapped.task_name, bool(obs['instruction']))\n"
        "env = gymnasium.make('palme/PushBlocks-v0', obs_type='state', render_mode=None)\n"
        "print(env.unwrapped.task_name)\n",
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["stack", "True", "block2block"]


def test_gym_id_spells_tasks_in_camel_case():
    assert envs.gym_id("pickplace") == "palme/PickPlace-v0"
    assert envs.gym_id("pickplace", "put_in_zone") == "palme/PickPlace-PutInZone-v0"
    assert envs.gym_id("push", "block2block") == "palme/PushBlocks-Block2Block-v0"
    assert envs.gym_id("push", "block2block_relative_location") == "palme/PushBlocks-Block2BlockRelativeLocation-v0"
    with pytest.raises(ValueError, match=r"unknown env 'kitchen'; known envs: \['pickplace', 'push'\]"):
        envs.gym_id("kitchen", "stack")


def test_every_registered_task_has_an_id_that_builds_and_resets():
    from envs.tasks.base import task_names

    ids = envs.register_envs()
    expected = {envs.gym_id(w, t) for w in envs.WORLDS for t in task_names(w)}
    assert set(ids) == expected and "palme/PickPlace-Stack-v0" in ids and "palme/PushBlocks-Block2Block-v0" in ids
    assert envs.register_envs() == ids  # idempotent
    for world in envs.WORLDS:
        for task in task_names(world):
            env = gym.make(envs.gym_id(world, task), obs_type="state", render_mode=None)
            try:
                obs, _ = env.reset(seed=0)
                assert env.unwrapped.task_name == task and env.unwrapped.world == world
                assert obs["instruction"] == env.unwrapped.task_description != ""
            finally:
                env.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_make_vec_batches_the_instruction_as_strings(mode):
    kwargs = {"vector_kwargs": {"shared_memory": False}} if mode == "async" else {}
    vec = gym.make_vec("palme/PickPlace-Grasp-v0", num_envs=2, vectorization_mode=mode, obs_type="state",
                       render_mode=None, **kwargs)
    try:
        obs, info = vec.reset(seed=3)
        assert isinstance(obs["instruction"], tuple) and len(obs["instruction"]) == 2
        assert all(isinstance(s, str) and s for s in obs["instruction"])
        assert list(obs["instruction"]) == list(info["task_description"])
        assert obs["instruction"][0] != obs["instruction"][1]  # two scenes (seeds 3 and 4)
        assert obs["objects"].shape[0] == 2
    finally:
        vec.close()


def test_text_only_refuses_a_checkpoint_that_reads_the_scene():
    with pytest.raises(ValueError) as err:
        make_planner("text_only")  # the shipped checkpoint reads image, object, instruction and robot tokens
    msg = str(err.value)
    assert "\n" not in msg and "checkpoints/palme-tiny reads image, object, instruction, robot tokens" in msg
    assert "planner=text_only needs a model trained with model.prompt.tokens=[]" in msg
