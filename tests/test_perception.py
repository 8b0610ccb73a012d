"""Camera-based perception (envs.perception): rows estimated from RGB-D frames match the simulator's rows."""

from __future__ import annotations

import numpy as np
import pybullet as p
import pytest

import envs.tasks.pickplace  # noqa: F401 -- registers the tasks
from envs.catalogue import MAX_OBJECTS, MAX_ZONES, OBJ_DIM, SHAPE_NAMES, SIZE_EDGES
from envs.geometry import support_graph
from envs.perception import DEFAULT_SIZES, Perception, backproject, noisy_rows, render_for_perception
from envs.pickplace import PickPlaceEnv

POS_TOL = 0.015  # m


@pytest.fixture(scope="module")
def perception():
    return Perception("pickplace")


def match(true: np.ndarray, est: np.ndarray) -> dict[int, int]:
    """Greedy nearest pairs (true index -> estimate index), closest first, within 4 cm."""
    dist = np.linalg.norm(true[:, None, :3] - est[None, :, :3], axis=-1)
    out: dict[int, int] = {}
    for flat in np.argsort(dist, axis=None, kind="stable"):
        i, j = divmod(int(flat), dist.shape[1])
        if i not in out and j not in out.values() and dist[i, j] < 0.04:
            out[i] = j
    return out


def check_scene(env: PickPlaceEnv, perception: Perception) -> None:
    """Every cube found once (colour, size, position, support) and every zone (colour, centre, side)."""
    rgb, depth = render_for_perception(env)
    est = perception.estimate(rgb, depth, env._view, env._proj)
    n = len(env.object_ids)
    true = env.object_rows()[:n].astype(np.float64)
    rows = est.objects[: est.n_objects].astype(np.float64)
    assert est.n_objects == n, f"{est.n_objects} objects estimated, {n} in the scene"
    assert np.all(est.objects[n:] == 0) and np.all(est.confidence[n:] == 0)
    pairs = match(true, rows)
    assert len(pairs) == n
    for i, j in pairs.items():
        assert round(rows[j, 8]) == round(true[i, 8]), f"colour of cube {i}"
        assert rows[j, 7] == pytest.approx(true[i, 7], abs=1e-6), f"size of cube {i}"
        assert round(rows[j, 9]) == SHAPE_NAMES.index("cube")
        assert np.linalg.norm(rows[j, :3] - true[i, :3]) < POS_TOL, f"position of cube {i}"
        assert 0.0 < est.confidence[j] <= 1.0
    # support: est.support lists (upper, lower) row pairs; compare with the simulator's graph through the matching
    back = {j: i for i, j in pairs.items()}
    truth = env.support_graph()
    est_pairs = {(back[u], back[lo]) for u, lo in est.support}
    assert est_pairs == {(i, s) for i, s in enumerate(truth) if s is not None and s >= 0}
    assert est.support == [(u, lo) for u, lo in enumerate(support_graph(rows)) if lo is not None and lo >= 0]
    # rows are sorted by x then y
    assert np.all(np.diff(rows[:, 0]) >= 0)
    # zones: by colour
    tz = {round(r[8]): r for r in env.zone_rows() if r[-1] > 0.5}
    ez = {round(r[8]): r for r in est.zones if r[-1] > 0.5}
    assert set(ez) == set(tz)
    for c, r in tz.items():
        assert np.linalg.norm(ez[c][:2] - r[:2]) < 0.01 and abs(ez[c][7] - r[7]) < 0.01
        assert round(ez[c][9]) == len(SHAPE_NAMES)


@pytest.mark.parametrize(
    ("task", "split", "seed"),
    [("put_in_zone", "L1", 1_000_005), ("unstack", "L3", 1_000_005), ("stack", "L1", 1_000_001)],
)
def test_scene_rows_match_the_simulator(perception, task, split, seed):
    env = PickPlaceEnv(task, split=split, obs_type="state")
    try:
        env.reset(seed=seed)
        assert any(s is not None and s >= 0 for s in env.support_graph())  # the scene holds a tower
        check_scene(env, perception)
    finally:
        env.close()


@pytest.fixture(scope="module")
def pair_env():
    """An 8-cube scene with a small and a large cube of one colour (cubes of one colour differ in size)."""
    env = PickPlaceEnv("unstack", split="L3", obs_type="state")
    env.reset(seed=1_000_003)
    yield env
    env.close()


def arrange(env: PickPlaceEnv, poses: dict[int, tuple[float, float, float]]) -> None:
    """Test set-up (privileged): cubes not in `poses` in a row at the back, the others where given, settled."""
    rest = [i for i in range(len(env.object_ids)) if i not in poses]
    for k, i in enumerate(rest):
        x, y = 0.32 + 0.1 * (k % 4), -0.3 + 0.12 * (k // 4)
        p.resetBasePositionAndOrientation(env.object_ids[i], [x, y, env.object_sizes[i] / 2], [0, 0, 0, 1],
                                          physicsClientId=env.client)
    for i, (x, y, z) in poses.items():
        q = p.getQuaternionFromEuler([0, 0, 0.2])
        p.resetBasePositionAndOrientation(env.object_ids[i], [x, y, z], q, physicsClientId=env.client)
        p.resetBaseVelocity(env.object_ids[i], [0, 0, 0], [0, 0, 0], physicsClientId=env.client)
    for _ in range(120):
        p.stepSimulation(physicsClientId=env.client)


@pytest.mark.parametrize("layout", ["small_on_large", "large_on_small", "side_by_side"])
def test_cubes_of_one_colour_stacked_or_touching(perception, pair_env, layout):
    env = pair_env
    colours = [o.color for o in env.objects]
    colour = next(c for c in colours if colours.count(c) == 2)
    small, large = sorted((i for i, c in enumerate(colours) if c == colour), key=lambda i: env.object_sizes[i])
    s, lg = SIZE_EDGES["small"], SIZE_EDGES["large"]
    x, y = 0.52, 0.12
    if layout == "small_on_large":
        arrange(env, {large: (x, y, lg / 2), small: (x, y, lg + s / 2 + 0.001)})
    elif layout == "large_on_small":
        arrange(env, {small: (x, y, s / 2), large: (x, y, s + lg / 2 + 0.001)})
    else:  # touching side by side along y (the camera looks along -x)
        arrange(env, {small: (x, y, s / 2), large: (x, y + (s + lg) / 2 + 0.002, lg / 2)})
    check_scene(env, perception)


def test_blank_and_empty_frames_give_no_objects(perception):
    h, w = perception.image_size
    est = perception.estimate(np.zeros((h, w, 3), np.uint8), np.ones((h, w), np.float32), [0.0] * 16, np.eye(4).ravel())
    assert est.n_objects == 0 and not est.objects.any() and not est.zones.any()
    assert est.objects.shape == (MAX_OBJECTS, OBJ_DIM) and est.zones.shape == (MAX_ZONES, OBJ_DIM)
    assert est.objects.dtype == np.float32 and est.confidence.shape == (MAX_OBJECTS,) and est.support == []
    env = PickPlaceEnv("stack", split="L1", obs_type="state")
    try:
        env.reset(seed=1_000_002)
        for body in env.object_ids:  # the table, the robot and the zones only
            p.removeBody(body, physicsClientId=env.client)
        rgb, depth = render_for_perception(env)
        est = perception.estimate(rgb, depth, env._view, env._proj)
        assert est.n_objects == 0
        assert (est.zones[:, -1] > 0.5).sum() == len(env.zones)
    finally:
        env.close()


def test_bad_input_names_the_expected_shape(perception):
    h, w = perception.image_size
    rgb, depth = np.zeros((h, w, 3), np.uint8), np.ones((h, w), np.float32)
    view, proj = [0.0] * 16, np.eye(4).ravel()
    with pytest.raises(ValueError, match=rf"rgb must have shape \({h}, {w}, 3\)"):
        perception.estimate(rgb[:10], depth, view, proj)
    with pytest.raises(ValueError, match=rf"depth must have shape \({h}, {w}\)"):
        perception.estimate(rgb, depth[None], view, proj)
    with pytest.raises(ValueError, match="uint8"):
        perception.estimate(rgb.astype(np.float32), depth, view, proj)
    with pytest.raises(ValueError, match="16 numbers"):
        perception.estimate(rgb, depth, [0.0] * 9, proj)
    with pytest.raises(ValueError, match="singular"):
        perception.estimate(rgb, depth * 0.5, [0.0] * 16, proj)
    with pytest.raises(ValueError, match="unknown world"):
        Perception("moon")


def test_backprojection_puts_the_table_at_zero_height():
    env = PickPlaceEnv("stack", split="L1", obs_type="state")
    try:
        env.reset(seed=1_000_000)
        _, depth = render_for_perception(env, (96, 96))
        pts = backproject(depth, env._view, env._proj)
        bottom = pts[-10:].reshape(-1, 3)  # the near edge of the table fills the bottom rows
        assert np.abs(bottom[:, 2]).max() < 1e-4
    finally:
        env.close()


def test_push_blocks_shape_and_position():
    from envs.push import PushEnv

    env = PushEnv("block2block", split="L3", obs_type="state")
    try:
        env.reset(seed=1_000_000)
        rgb, depth = render_for_perception(env)
        assert rgb.shape == (*DEFAULT_SIZES["push"], 3) and depth.shape == DEFAULT_SIZES["push"]
        est = Perception("push").estimate(rgb, depth, env._view, env._proj)
        n = len(env.object_ids)
        true = env.object_rows()[:n].astype(np.float64)
        rows = est.objects[: est.n_objects].astype(np.float64)
        pairs = match(true, rows)
        assert est.n_objects == n and len(pairs) == n
        for i, j in pairs.items():
            assert rows[j, 8:10].round().tolist() == true[i, 8:10].round().tolist()  # colour and shape
            assert np.linalg.norm(rows[j, :3] - true[i, :3]) < POS_TOL
            assert rows[j, 7] == pytest.approx(true[i, 7], abs=1e-6)
        assert not est.zones.any() and est.support == []
    finally:
        env.close()


def test_noisy_rows_is_seeded_and_leaves_absent_rows_zero():
    rows = np.zeros((MAX_OBJECTS, OBJ_DIM), np.float32)
    rows[:3, :3] = [[0.4, 0.1, 0.02], [0.5, -0.2, 0.025], [0.6, 0.0, 0.07]]
    rows[:3, 6] = 1.0
    rows[:3, 7] = 0.04
    rows[:3, 10] = 1.0
    a = noisy_rows(rows, np.random.default_rng(7), 0.01)
    b = noisy_rows(rows, np.random.default_rng(7), 0.01)
    c = noisy_rows(rows, np.random.default_rng(8), 0.01)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == rows.dtype and np.all(a[3:] == 0)
    assert np.array_equal(a[:, 3:], rows[:, 3:])  # only x, y, z move
    assert 0 < np.abs(a[:3, :3] - rows[:3, :3]).max() < 0.06
    assert np.array_equal(noisy_rows(rows, np.random.default_rng(7), 0.0), rows)
    with pytest.raises(ValueError, match="Generator"):
        noisy_rows(rows, 7, 0.01)
    with pytest.raises(ValueError, match=r"\(n, 11\)"):
        noisy_rows(rows[0], np.random.default_rng(0), 0.01)
