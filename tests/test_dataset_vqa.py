"""VQA answers computed from logged object rows agree with the simulator: contacts, pixels, counts."""

from __future__ import annotations

import numpy as np
import pybullet as p
import pytest

from envs import make_env
from training.vqa import Camera, Scene, q_count, q_feasibility, q_support, q_zone

SEEDS = range(6)


@pytest.fixture(scope="module")
def scenes():
    """Unstack scenes (towers at reset) with their scene facts, body ids and segmentation masks."""
    env = make_env("pickplace", "unstack", obs_type="state")
    u = env.unwrapped
    camera = Camera(tuple(u._view), tuple(u._proj))
    out = []
    for seed in SEEDS:
        env.reset(seed=seed)
        h, w = u.image_size
        seg = np.asarray(p.getCameraImage(w, h, u._view, u._proj, renderer=p.ER_TINY_RENDERER,
                                          physicsClientId=u.client)[4]).reshape(h, w)
        scene = Scene(u.object_rows(), u.names, camera, table_z=0.0)
        out.append((u, scene, list(u.object_ids), seg))
        contacts = {}
        for a, ba in enumerate(u.object_ids):
            for b, bb in enumerate(u.object_ids):
                if a < b:
                    pts = p.getContactPoints(ba, bb, physicsClientId=u.client)
                    contacts[(a, b)] = [(pt[7], pt[5], pt[6]) for pt in pts]  # normal on B, pos on A, pos on B
        out[-1] = (*out[-1], contacts, [u.object_pose(i)[0] for i in range(len(u.object_ids))])
    env.close()
    return out


def test_on_top_of_agrees_with_contact_points(scenes):
    checked = stacked = 0
    for _u, scene, ids, _seg, contacts, pos in scenes:
        for (a, b), pts in contacts.items():
            vertical = [pt for pt in pts if abs(pt[0][2]) > 0.9]
            touching_vertically = bool(vertical) and abs(pos[a][2] - pos[b][2]) > 0.02
            upper, lower = (a, b) if pos[a][2] > pos[b][2] else (b, a)
            assert scene.on_top_of(upper, lower) == touching_vertically, (upper, lower, pts)
            assert not scene.on_top_of(lower, upper)
            checked += 1
            stacked += touching_vertically
    assert checked > 20 and stacked >= 3  # the scenes do hold towers


def test_image_frame_agrees_with_pixels(scenes):
    """Projected centres land on the objects' pixels, so left/right mean what the camera sees."""
    compared = 0
    for u, scene, ids, seg, _c, _p in scenes:
        h, w = seg.shape
        cols = {}
        for k, o in enumerate(scene.objects):
            mask = seg == ids[o.slot]
            if mask.sum() >= 15:
                ys, xs = np.nonzero(mask)
                cols[k] = xs.mean() / w
                uu, vv = scene.uv(k)
                assert abs(uu - (xs.mean() + 0.5) / w) < 0.05 and abs(vv - (ys.mean() + 0.5) / h) < 0.08
        for a, col_a in cols.items():
            for b, col_b in cols.items():
                left = scene.left_of(a, b) if a != b else None
                if left is not None and abs(col_a - col_b) > 0.04:
                    assert left == (col_a < col_b)
                    compared += 1
    assert compared > 20


def test_feasibility_and_count_answers(scenes):
    rng = np.random.default_rng(0)
    for _u, scene, ids, _seg, _contacts, pos in scenes:
        for _ in range(6):
            q, a = q_feasibility(scene, rng)
            name = q.removeprefix("Can the ").removesuffix(" be picked up now?")
            k = next(i for i, o in enumerate(scene.objects) if o.name == name)
            above = [j for j in range(len(pos)) if scene.on_top_of(j, k)]
            assert a == ("yes" if not above else f"no, the {scene.objects[above[0]].name} is on top of it")
        q, a = q_count(scene, np.random.default_rng(1))
        if q == "How many objects are on the table?":
            assert int(a) == len(ids)


def test_held_object_agrees_with_finger_contacts():
    from envs.vocab import SkillCall
    from policies.base import run_skill

    env = make_env("pickplace", "grasp", obs_type="state")
    u = env.unwrapped
    env.reset(seed=0)
    camera = Camera(tuple(u._view), tuple(u._proj))
    top = next(i for i in range(len(u.object_ids)) if not u.blocks_above(i))
    assert run_skill(u, SkillCall("pick", obj=top)).success
    obs = u.observe(render=False)
    scene = Scene(obs["objects"], u.names, camera, ee=obs["robot"][:3])
    assert u.held_object() == top and scene.held == next(k for k, o in enumerate(scene.objects) if o.slot == top)
    assert f"the {u.names[top]} is in the gripper" in scene.caption()
    env.close()


def test_zone_answers_agree_with_the_world():
    from policies.base import run_skill

    env = make_env("pickplace", "sort_by_color", obs_type="state")
    u = env.unwrapped
    checked = 0
    for seed in (0, 1):
        env.reset(seed=seed)
        for _ in range(12):  # the oracle sorts cube by cube; every decision point is a question frame
            obs = u.observe(render=False)
            scene = Scene(obs["objects"], u.names, ee=obs["robot"][:3], zones=obs["zones"])
            for k, o in enumerate(scene.objects):
                truth = next((c for c in u.zones if u.in_zone(o.slot, c)), "")
                if scene.zone_of(k) is not None:
                    assert scene.zone_of(k) == truth, (seed, o.name, truth)
                    checked += 1
            plan = u.task.oracle_plan(u, u.goal)
            if not plan:
                break
            run_skill(u, plan[0])
        assert u.is_success
        qa = q_zone(scene, np.random.default_rng(0))
        assert qa is not None and qa[1].startswith("the ") and qa[1].endswith(" zone")  # all sorted: in a zone
    assert checked > 40
    env.close()


def test_support_answers_name_what_the_simulator_says_each_cube_rests_on():
    """"What is X on?" names the cube below (as plan steps name it) or the table, as the world's support graph says."""
    env = make_env("pickplace", "unstack", obs_type="state")  # towers at reset
    u = env.unwrapped
    asked = on_cube = 0
    for seed in SEEDS:
        env.reset(seed=seed)
        graph, names = u.support_graph(), u.names
        scene = Scene(u.object_rows(), names)
        for r in range(12):
            question, answer = q_support(scene, np.random.default_rng(r))
            k = names.index(question.removeprefix("What is the ").removesuffix(" on?"))
            assert answer == ("the table" if graph[k] == -1 else f"the {names[graph[k]]}"), (question, answer, graph)
            asked += 1
            on_cube += graph[k] >= 0
    env.close()
    assert asked == 12 * len(SEEDS) and on_cube > asked / 3  # half the questions are about stacked cubes


def test_support_answer_for_a_held_cube():
    from envs.vocab import SkillCall
    from policies.base import run_skill

    env = make_env("pickplace", "grasp", obs_type="state")
    u = env.unwrapped
    env.reset(seed=0)
    assert run_skill(u, SkillCall("pick", obj=0)).success
    obs = u.observe(render=False)
    scene = Scene(obs["objects"], u.names, ee=obs["robot"][:3])
    answers = {q_support(scene, np.random.default_rng(r)) for r in range(40)}
    assert (f"What is the {u.names[0]} on?", "nothing, it is in the gripper") in answers
    env.close()
