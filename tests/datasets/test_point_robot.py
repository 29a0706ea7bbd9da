"""The built-in point robot: dynamics, the closed-form feasible region, the behaviour dataset."""

from __future__ import annotations

import math

import numpy as np
import pytest

from saferl.datasets import get_task
from saferl.datasets.envs.point_robot import (
    PointRobotEnv,
    PointRobotParams,
    PointRobotVectorEnv,
    project_to_disc,
    true_feasible_mask,
)
from saferl.datasets.point_robot_data import build_point_robot_dataset

FIXED_START = PointRobotParams(start_y_range=(0.3, 0.3))


def test_constant_policy_episode_matches_hand_computation() -> None:
    # Zero action: velocity (1, 0), x_t = -2.5 + 0.05 t at height 0.3. Inside the hazard while
    # |x| < sqrt(0.8^2 - 0.3^2) = 0.7416: t = 36..64 (29 steps). Goal (radius 0.4 around (2.5, 0)) is
    # reached when 2.5 - x < sqrt(0.16 - 0.09) = 0.2646: first at t = 95 (x = 2.25).
    env = PointRobotEnv(FIXED_START)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs, [-2.5, 0.3], atol=1e-6)
    total_reward, total_cost, steps, terminated = 0.0, 0.0, 0, False
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(np.zeros(2))
        total_reward += reward
        total_cost += info["cost"]
        steps += 1
        assert not truncated
    d0, d_end = math.hypot(5.0, 0.3), math.hypot(0.25, 0.3)
    assert steps == 95
    assert total_cost == 29
    assert total_reward == pytest.approx(d0 - d_end - 0.03 * 95 + 1.0, abs=1e-9)


def test_truncation_at_time_limit_is_not_a_termination() -> None:
    env = PointRobotVectorEnv(1, PointRobotParams(episode_len=10))
    env.reset_envs([0], [0])
    for _ in range(9):
        step = env.step(np.zeros((1, 2)))
        assert not step.truncated[0]
    step = env.step(np.zeros((1, 2)))
    assert step.truncated[0] and not step.terminated[0]


def test_actions_are_projected_onto_the_unit_disc() -> None:
    np.testing.assert_allclose(project_to_disc(np.array([[1.0, 1.0], [0.3, 0.4]])), [[0.70710678] * 2, [0.3, 0.4]])


def test_feasible_region_closed_form() -> None:
    params = PointRobotParams()
    # Directly upstream, the shadow ends where asin(r/d) = alpha: d = r / sin(30 deg) = 1.6.
    xs = np.array([[-1.55, 0.0], [-1.65, 0.0], [0.0, 0.0], [1.0, 0.0], [-1.0, 0.79], [-2.5, 0.0]])
    np.testing.assert_array_equal(true_feasible_mask(xs, params), [False, True, False, True, True, True])


def test_feasible_region_agrees_with_simulated_best_escape() -> None:
    # From infeasible points, every one of many constant headings hits the hazard; from feasible ones
    # (away from the boundary band) some heading escapes.
    params = PointRobotParams()
    rng = np.random.default_rng(0)
    points = rng.uniform([-2.5, -1.2], [-0.9, 1.2], size=(300, 2))
    feasible = true_feasible_mask(points, params)
    headings = np.linspace(-1, 1, 41)
    escaped = np.zeros(len(points), bool)
    for h in headings:
        env = PointRobotVectorEnv(len(points), params)
        env.reset_envs(np.arange(len(points)), [0] * len(points), starts=points)
        hit = np.zeros(len(points), bool)
        for _ in range(120):
            hit |= env.step(np.tile([0.0, h], (len(points), 1))).costs > 0
        escaped |= ~hit
    # Margin: the band of one step around the boundary may disagree (discrete time).
    assert (escaped == feasible).mean() >= 0.97
    assert not escaped[~feasible].any()


def test_dataset_is_deterministic_and_spans_safe_to_unsafe() -> None:
    a = build_point_robot_dataset(50, seed=3)
    b = build_point_robot_dataset(50, seed=3)
    c = build_point_robot_dataset(50, seed=4)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert not np.array_equal(a.actions[:100], c.actions[:100])
    costs = a.trajectory_cost_returns()
    assert a.num_trajectories == 50
    assert (costs == 0).any() and (costs > 10).any()
    # next_observations continue observations inside a trajectory
    starts = set(a.episode_starts.tolist())
    cont = np.array([i for i in range(1, len(a)) if i not in starts])
    np.testing.assert_array_equal(a.observations[cont], a.next_observations[cont - 1])


def test_registry_constants_match_the_default_dataset() -> None:
    task = get_task("PointRobot")
    data = build_point_robot_dataset(task.num_trajectories, seed=0)
    returns, costs = data.trajectory_returns(), data.trajectory_cost_returns()
    assert task.reward_max == pytest.approx(returns.max(), abs=1e-4)
    assert task.reward_min == pytest.approx(returns.min(), abs=1e-4)
    assert task.cost_max == costs.max()
    assert task.file_name == f"PointRobot-v0-{int(costs.max())}-{task.num_trajectories}.hdf5"
