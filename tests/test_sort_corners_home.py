"""sort_corners (T2): the oracle sends each colour to its home corner, so a planner can read the corner off the colour."""

from __future__ import annotations

import numpy as np
import pybullet as p

from envs.push import X_MAX, X_MIN, Y_MAX, Y_MIN, PushEnv
from envs.tasks.push.geometry import CORNERS, LOCATION_POINTS, in_location
from envs.tasks.push.sort_corners import HOME_CORNERS, color_corner_assignment, reachable_corners
from policies.base import run_skill


def _move(env: PushEnv, i: int, xy: tuple[float, float]) -> None:
    pos, orn = p.getBasePositionAndOrientation(env.object_ids[i], physicsClientId=env.client)
    p.resetBasePositionAndOrientation(env.object_ids[i], [xy[0], xy[1], pos[2]], orn, physicsClientId=env.client)


def test_every_colour_takes_its_home_corner_when_its_blocks_can_reach_it():
    env = PushEnv("sort_corners", obs_type="state")
    for seed in range(4):
        env.reset(seed=seed)
        assign = color_corner_assignment(env)
        assert assign == {o.color: HOME_CORNERS[o.color] for o in env.objects}, seed
        plan = env.task.oracle_plan(env, env.goal)
        assert plan and all(c.location == HOME_CORNERS[env.objects[c.obj].color] for c in plan)
    env.close()


def test_a_block_held_against_an_edge_moves_its_colour_to_a_corner_on_that_edge():
    env = PushEnv("sort_corners", obs_type="state")
    env.reset(seed=0)
    k, colour = next((k, o.color) for k, o in enumerate(env.objects) if "left" in HOME_CORNERS[o.color])
    _move(env, k, ((X_MIN + X_MAX) / 2, Y_MAX - 0.01))  # against the right edge, home corner on the left
    assert reachable_corners(env.blocks_xy()[k]) == {"top right", "bottom right"}
    assign = color_corner_assignment(env)
    assert "right" in assign[colour]
    assert len(set(assign.values())) == len(assign)  # still one corner per colour
    env.close()


def test_reachable_corners():
    mid = np.array([(X_MIN + X_MAX) / 2, 0.0])
    assert reachable_corners(mid) == set(CORNERS)
    assert reachable_corners(np.array([X_MIN + 0.01, Y_MIN + 0.01])) == {"top left"}
    assert reachable_corners(np.array([X_MAX - 0.01, 0.0])) == {"bottom left", "bottom right"}


def test_oracle_sorts_into_home_corners():
    env = PushEnv("sort_corners", obs_type="state")
    env.reset(seed=1)
    for _ in range(16):
        plan = env.task.oracle_plan(env, env.goal)
        if not plan:
            break
        run_skill(env, plan[0])
    assert env.is_success
    xy = env.blocks_xy()
    assert all(in_location(xy[k], HOME_CORNERS[o.color]) for k, o in enumerate(env.objects))
    env.close()


def test_location_tasks_push_the_block_farthest_from_its_location_first():
    env = PushEnv("all_to_center", obs_type="state")
    env.reset(seed=3)
    plan = env.task.oracle_plan(env, env.goal)
    xy = env.blocks_xy()
    dist = [float(np.linalg.norm(xy[c.obj] - LOCATION_POINTS["center"])) for c in plan]
    assert len(plan) >= 2 and dist == sorted(dist, reverse=True)
    run_skill(env, plan[0])
    assert env.task.oracle_plan(env, env.goal)[0].obj != plan[0].obj  # the block just pushed in is not next
    env.close()
