"""side_together (T3): the oracle gathers a side's blocks at its member nearest the edge, nearest the edge first."""

from __future__ import annotations

import numpy as np

from envs.push import PushEnv
from envs.tasks.push.side_together import SideGoal, edge_first, on_side, useful_push
from policies.base import run_skill


def test_edge_first_orders_by_distance_from_the_midline():
    xy = np.array([[0.3, -0.05], [0.4, 0.2], [0.35, -0.18], [0.5, -0.11]])
    assert edge_first(xy, [0, 2, 3]) == [2, 3, 0]
    assert edge_first(xy, [1]) == [1]


def test_every_step_pushes_a_member_next_to_the_member_nearest_the_edge():
    env = PushEnv("side_together", obs_type="state")
    for seed in range(6):
        env.reset(seed=seed)
        goal = env.goal
        plan = env.task.oracle_plan(env, goal)
        xy = env.blocks_xy()
        anchor = edge_first(xy, goal.members)[0]
        assert plan, seed
        assert all(c.target == anchor and c.relation == "next to" for c in plan)
        pushed = [c.obj for c in plan]
        assert set(pushed) <= set(goal.members) - {anchor}
        assert pushed == [k for k in edge_first(xy, goal.members) if k in pushed]  # nearest the edge first
    env.close()


def test_oracle_gathers_the_side_and_keeps_every_block_on_its_side():
    env = PushEnv("side_together", obs_type="state")
    for seed in (0, 3):
        env.reset(seed=seed)
        goal = env.goal
        for _ in range(10):
            plan = env.task.oracle_plan(env, goal)
            if not plan:
                break
            run_skill(env, plan[0])
        assert env.is_success, seed
        xy = env.blocks_xy()
        other = "right" if goal.side == "left" else "left"
        assert all(on_side(xy[k], goal.side if k in goal.members else other) for k in range(len(xy)))
    env.close()


def test_a_useful_push_joins_two_separate_blocks_of_the_goal_side():
    xy = np.array([[0.3, -0.05], [0.4, -0.2], [0.35, 0.18], [0.5, 0.11], [0.42, -0.24]])  # 1 and 4 already joined
    left, right = SideGoal("left"), SideGoal("right")
    assert useful_push(xy, left, 0, 1) and useful_push(xy, left, 4, 0)
    assert not useful_push(xy, right, 0, 1)  # the other side's blocks
    assert not useful_push(xy, left, 0, 2)  # one block from each side
    assert not useful_push(xy, left, 0, 0)  # a block next to itself
    assert not useful_push(xy, left, 1, 4)  # already one group
    assert useful_push(xy, right, 2, 3) and useful_push(xy, right, 3, 2)


def test_the_oracles_first_pushes_are_useful():
    env = PushEnv("side_together", obs_type="state")
    for seed in range(6):
        env.reset(seed=seed)
        first = env.task.oracle_plan(env, env.goal)[0]
        assert useful_push(env.blocks_xy(), env.goal, first.obj, first.target), seed
    env.close()
