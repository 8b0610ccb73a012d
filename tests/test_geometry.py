"""envs.geometry: the relations agree with the simulator's contacts and poses, on numpy and torch alike, and the
model's soft weights are exactly the ones the shipped checkpoint was trained with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pybullet as p
import pytest
import torch

from envs import geometry as g
from envs import make_env
from policies.base import run_skill

FIXTURE = Path(__file__).parent / "fixtures" / "relation_weights_v17.npz"


def fixture_batches() -> list[dict[str, np.ndarray]]:
    """The batches of relation_weights_v17.npz (see make_relation_weights_v17.py), weights reshaped."""
    d = np.load(FIXTURE)
    out = []
    s_at = z_at = 0
    for b in range(int(d["batch"].max()) + 1):
        rows, zone_rows = d["batch"] == b, d["zone_batch"] == b
        n, nz = int(rows.sum()), int(zone_rows.sum())
        out.append({"rows": d["rows"][rows], "scene": d["scene"][rows], "is_object": d["is_object"][rows],
                    "zones": d["zones"][zone_rows], "zone_scene": d["zone_scene"][zone_rows],
                    "support": d["support"][s_at : s_at + n * n].reshape(n, n),
                    "zone": d["zone"][z_at : z_at + n * nz].reshape(n, nz)})
        s_at, z_at = s_at + n * n, z_at + n * nz
    return out


def test_soft_weights_equal_the_ones_the_shipped_checkpoint_was_trained_with():
    batches = fixture_batches()
    for key, edge_cases in (("support", 20), ("zone", 5)):  # stacks and zoned cubes, and pairs on the soft edge
        assert sum(int((b[key] > 0.5).sum()) for b in batches) > 10
        assert sum(int(((b[key] > 0.01) & (b[key] < 0.99)).sum()) for b in batches) > edge_cases
    for b in batches:
        t = {k: torch.from_numpy(v) for k, v in b.items()}
        support = g.support_weights(t["rows"], t["scene"], t["is_object"])
        zone = g.zone_weights(t["rows"], t["scene"], t["is_object"], t["zones"], t["zone_scene"])
        assert support.dtype == zone.dtype == torch.float32
        assert torch.equal(support, t["support"]) and torch.equal(zone, t["zone"])


def test_numpy_and_torch_give_the_same_relations():
    for b in fixture_batches():
        rows, zones = b["rows"].astype(np.float64), b["zones"].astype(np.float64)
        tr, tz = torch.from_numpy(rows), torch.from_numpy(zones)
        for hard in (g.flat, g.on_table, g.resting_pairs, g.stacked_above):
            assert np.array_equal(hard(rows), hard(tr).numpy()), hard.__name__
        assert np.array_equal(g.inside_zone(rows, zones), g.inside_zone(tr, tz).numpy())
        assert np.array_equal(g.zone_margin(rows, zones), g.zone_margin(tr, tz).numpy())
        assert g.support_graph(rows) == g.support_graph(tr)
        soft = [(g.support_weights, (b["scene"], b["is_object"])),
                (g.zone_weights, (b["scene"], b["is_object"], b["zones"], b["zone_scene"]))]
        for fn, rest in soft:
            got = fn(b["rows"], *rest)
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, fn(torch.from_numpy(b["rows"]), *map(torch.from_numpy, rest)).numpy(),
                                       rtol=0, atol=1e-6)  # sigmoid: numpy's 1 / (1 + exp(-x)) vs torch's kernel


def _contact_relations(u) -> tuple[np.ndarray, np.ndarray]:
    """From the physics engine: (n, n) cube i pressed down on cube j, (n,) cube i pressed down on the table."""
    n = len(u.object_ids)
    on = np.zeros((n, n), bool)
    table = np.zeros(n, bool)
    for i, bi in enumerate(u.object_ids):
        # contact normals point from the second body to the first: up when i lies on it
        table[i] = any(pt[7][2] > 0.9 for pt in p.getContactPoints(bi, u.table, physicsClientId=u.client))
        for j, bj in enumerate(u.object_ids):
            pts = p.getContactPoints(bj, bi, physicsClientId=u.client)
            on[i, j] = i != j and any(pt[7][2] < -0.9 for pt in pts)
    return on, table


def test_relations_match_the_contacts_of_stacks_built_by_the_oracle():
    env = make_env("pickplace", "stack", obs_type="state")
    u = env.unwrapped
    checked = stacked = deep = 0
    for seed in (0, 9):  # a tower to take apart at reset; three loose cubes to stack
        env.reset(seed=seed)
        while True:
            held = u.held_object()
            rows = np.asarray(u.observe(render=False)["objects"], np.float32)[: len(u.object_ids)]
            free = np.array([i != held for i in range(len(rows))])
            on, table = _contact_relations(u)
            pairs = g.resting_pairs(rows)
            assert np.array_equal(pairs[free][:, free], on[free][:, free]), (seed, pairs, on)
            assert np.array_equal(g.on_table(rows)[free], table[free])
            assert g.support_graph(rows, held=held) == u.support_graph()
            closure = on.copy()
            for _ in range(len(rows)):
                closure |= (closure.astype(int) @ closure.astype(int)) > 0
            above = g.stacked_above(rows)  # [i, j]: j above i
            assert np.array_equal(above[free][:, free], closure.T[free][:, free])
            w = g.support_weights(torch.from_numpy(rows), torch.zeros(len(rows), dtype=torch.long),
                                  torch.ones(len(rows), dtype=torch.bool))
            assert torch.equal(w[free][:, free] > 0.5, torch.from_numpy(above[free][:, free]))
            assert bool(((w > 0.05) == (w > 0.5)).all())  # nothing in between: neighbours on the table weigh ~0
            checked += 1
            stacked += int(on.sum())
            deep += int(closure.sum() - on.sum())
            plan = u.task.oracle_plan(u, u.goal)
            if not plan or plan[0].skill == "done":
                break
            assert run_skill(u, plan[0]).success
        assert u.is_success
    env.close()
    assert checked >= 10 and stacked >= 6 and deep >= 2  # towers of three were built and judged


def test_in_zone_agrees_with_the_world_near_zone_edges():
    env = make_env("pickplace", "sort_by_color", obs_type="state")
    rng = np.random.default_rng(3)
    checked = inside = 0
    for seed in range(2):
        obs, _ = env.reset(seed=seed)
        u = env.unwrapped
        i = u.support_graph().index(-1)  # a cube on the table; it is moved around the zones below
        pos, quat = u.object_pose(i)
        zones = np.asarray(obs["zones"], np.float32)[: len(u.zones)]
        half = float(zones[0, 7]) / 2
        edges = [(half - 0.001, 0.0), (-half - 0.001, 0.0), (0.0, half + 0.001), (0.0, 0.001 - half)]  # 1 mm in / out
        for k, (color, centre) in enumerate(u.zones.items()):
            # near the zone's edge on both sides, where a wrong threshold would show
            for offset in [*edges, *(rng.choice([-1, 1], 2) * rng.uniform(0.05, 0.1, 2) for _ in range(6))]:
                xy = np.asarray(centre) + offset
                p.resetBasePositionAndOrientation(u.object_ids[i], [*xy, pos[2]], quat, physicsClientId=u.client)
                graph = u.support_graph()
                rows = u.object_rows()[: len(u.object_ids)]
                margin = float(np.min(half - np.abs(xy - centre)))  # how far inside the square (m)
                truth = margin >= 0 and graph[i] is not None
                assert u.in_zone(i, color, graph) == truth
                if abs(margin) > 1e-4:  # float32 rows round the centre by less than this
                    assert bool(g.in_zone(rows, zones, graph)[i, k]) == truth, (seed, color, xy)
                w = g.zone_weights(torch.from_numpy(rows), torch.zeros(len(rows), dtype=torch.long),
                                   torch.ones(len(rows), dtype=torch.bool), torch.from_numpy(zones),
                                   torch.zeros(len(zones), dtype=torch.long))
                if abs(margin) > 0.004 and graph[i] is not None:  # 4 mm off the edge: the soft step has decided
                    assert (float(w[i, k]) > 0.5) == truth, (seed, color, xy, float(w[i, k]))
                checked += 1
                inside += truth
        assert not g.in_zone(rows, zones, [None] * len(rows)).any()  # held or tilted: in no zone
    assert checked >= 50 and 0 < inside < checked
    env.close()


def test_flat_reads_quaternions_as_bullet_does_and_a_tilted_cube_rests_on_nothing():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2000, 4))
    q[:1000] /= np.linalg.norm(q[:1000], axis=1, keepdims=True)
    q[:200] = np.round(q[:200] * 4) / 4  # whole and half turns: |cos| exactly 1 or on the threshold's far side
    rows = np.zeros((len(q), len(g.OBJ_FIELDS)))
    rows[:, 3:7] = q
    bullet = [np.max(np.abs(np.asarray(p.getMatrixFromQuaternion(x.tolist()))[6:9])) > g.TILT_TOL
              if np.any(x) else True for x in q]
    assert g.flat(rows).tolist() == bullet and 0 < sum(bullet) < len(q)
    env = make_env("pickplace", "unstack", obs_type="state")
    env.reset(seed=0)
    u = env.unwrapped
    i = u.support_graph().index(-1)
    pos, _ = u.object_pose(i)
    for angle, is_flat in ((0.25, True), (0.4, False), (np.pi / 2 - 0.25, True)):  # ~18 degrees off a face at most
        tilt = p.getQuaternionFromEuler([angle, 0, 0])
        p.resetBasePositionAndOrientation(u.object_ids[i], pos, tilt, physicsClientId=u.client)
        assert u.is_flat(i) == is_flat and (u.support_graph()[i] == -1) == is_flat
        assert (g.support_graph(u.object_rows()[: len(u.object_ids)])[i] == -1) == is_flat
    env.close()


def test_resting_means_within_rest_tol_of_the_top_below():
    """Lift the top cube of a tower (no physics step between): it rests until its bottom is REST_TOL above."""
    env = make_env("pickplace", "unstack", obs_type="state")
    env.reset(seed=0)
    u = env.unwrapped
    graph = u.support_graph()
    up = next(i for i, s in enumerate(graph) if s is not None and s >= 0 and not u.blocks_above(i))
    pos, quat = u.object_pose(up)
    below = u.object_pose(graph[up])[0]
    sizes = u.object_sizes
    for lift, rests in ((0.5, True), (0.95, True), (1.05, False), (-0.5, True)):
        gap = lift * g.REST_TOL
        z = below[2] + sizes[graph[up]] / 2 + gap + sizes[up] / 2
        for dx, aligned in ((0.0, True), (0.8 * g.ALIGN_FRACTION, True), (1.05 * g.ALIGN_FRACTION, False)):
            xy = below[:2] + [dx * (sizes[up] + sizes[graph[up]]) / 2, 0.0]
            p.resetBasePositionAndOrientation(u.object_ids[up], [*xy, z], quat, physicsClientId=u.client)
            want = graph[up] if rests and aligned else None
            assert u.support_graph()[up] == want, (lift, dx)
            rows = u.object_rows()[: len(u.object_ids)]
            assert g.support_graph(rows)[up] == want and bool(g.resting_pairs(rows)[up, graph[up]]) == (want is not None)
    # on the table: within REST_TOL above its top, or under it (a row's size can exceed the body's height)
    i = graph.index(-1)
    pos, quat = u.object_pose(i)
    for z, rests in ((0.5, True), (0.95, True), (1.05, False), (-3.0, True)):
        p.resetBasePositionAndOrientation(u.object_ids[i], [*pos[:2], sizes[i] / 2 + z * g.REST_TOL], quat,
                                          physicsClientId=u.client)
        assert (u.support_graph()[i] == -1) == rests and bool(g.on_table(u.object_rows()[[i]])[0]) == rests
    env.close()


def test_push_blocks_rest_on_the_table_in_vqa_scenes():
    """Push blocks are lower than their `size` (footprint) column: their rows' bottom lies under the table top."""
    from training.vqa import Scene

    env = make_env("push", "block2block", obs_type="state")
    obs, _ = env.reset(seed=0)
    scene = Scene(obs["objects"], env.unwrapped.names)
    assert scene.objects and all(scene.support(k) == "table" for k in range(len(scene.objects)))
    assert "in the air" not in scene.caption()
    env.close()


@pytest.mark.parametrize("n", [0, 1])
def test_small_scenes(n):
    rows = np.zeros((n, len(g.OBJ_FIELDS)))
    rows[:, 6], rows[:, 7], rows[:, 2] = 1.0, 0.04, 0.02
    assert g.support_graph(rows) == [-1] * n
    assert g.stacked_above(rows).shape == g.resting_pairs(rows).shape == (n, n)
    assert g.in_zone(rows, np.zeros((0, len(g.OBJ_FIELDS))), [-1] * n).shape == (n, 0)
