"""Contract shared by every world: same seed -> same scene; same seed + same actions -> same outcome."""

import numpy as np
import pytest

from envs import make_env


@pytest.mark.parametrize(("world", "task", "n_actions"), [("pickplace", "put_in_zone", 40), ("push", "block2block", 30)])
def test_same_seed_same_scene_and_same_outcome(world, task, n_actions):
    a, b = make_env(world, task).unwrapped, make_env(world, task).unwrapped
    oa, _ = a.reset(seed=11)
    ob, _ = b.reset(seed=11)
    for k in oa:
        assert np.array_equal(oa[k], ob[k]) if k != "instruction" else oa[k] == ob[k]
    space = a.action_space
    actions = np.random.default_rng(0).uniform(space.low, space.high, (n_actions, *space.shape))
    for act in actions:
        ra, rb = a.step(act), b.step(act)
    for k in ("objects", "robot", "rgb"):
        assert np.array_equal(ra[0][k], rb[0][k]), k
    assert ra[1:] == rb[1:]  # reward, terminated, truncated, info
    oc, _ = a.reset(seed=12)
    assert not np.array_equal(oc["objects"], oa["objects"])
    a.close()
    b.close()
