"""Safety evaluation: rollouts and metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from saferl.datasets import get_task
from saferl.datasets.envs.point_robot import BehaviourFamily, PointRobotParams, PointRobotVectorEnv, scripted_actions
from saferl.evaluation import EpisodeRecords, cost_cvar, evaluate, normalized_cost, normalized_reward, rollout, summarize


def zero_policy(obs: np.ndarray) -> np.ndarray:
    return np.zeros((len(obs), 2), np.float32)


def test_constant_policy_evaluation_hand_computed() -> None:
    params = PointRobotParams(start_y_range=(0.3, 0.3))
    records = rollout(PointRobotVectorEnv(3, params), zero_policy, episodes=5, seed=0)
    expected_return = math.hypot(5.0, 0.3) - math.hypot(0.25, 0.3) - 0.03 * 95 + 1.0
    np.testing.assert_allclose(records.returns, expected_return, atol=1e-9)
    np.testing.assert_array_equal(records.costs, 29)
    np.testing.assert_array_equal(records.lengths, 95)
    assert records.terminated.all()
    result = summarize(records, get_task("PointRobot"), [10, 40], seed=0)
    assert result.limit(10).normalized_cost == pytest.approx(2.9)
    assert result.limit(10).violation_rate == 1.0 and not result.limit(10).safe
    assert result.limit(40).violation_rate == 0.0 and result.limit(40).safe


def test_normalisation_formulas_of_dsrl() -> None:
    car_circle = get_task("CarCircle")  # R_max 534.31, R_min 3.484
    assert normalized_reward(534.31, car_circle) == pytest.approx(1.0)
    assert normalized_reward(3.484, car_circle) == pytest.approx(0.0)
    assert normalized_reward(268.897, car_circle) == pytest.approx(0.5)
    assert normalized_cost(10.0, 10.0) == 1.0
    assert normalized_cost(5.0, 20.0) == 0.25
    assert normalized_cost(0.0, 0.0) == 1.0  # eps = 1 only when kappa == 0
    assert normalized_cost(3.0, 0.0) == 4.0


def test_cvar_and_rates() -> None:
    costs = np.arange(20, dtype=float)  # worst 10% = {18, 19}
    assert cost_cvar(costs, 0.1) == 18.5
    assert cost_cvar(np.array([0.0, 5.0, 1.0]), 0.1) == 5.0  # at least one episode
    records = EpisodeRecords(np.zeros(4), np.array([0.0, 0.0, 15.0, 30.0]), np.ones(4, int), np.ones(4, bool))
    result = summarize(records, get_task("PointRobot"), [10, 20], seed=0)
    assert result.zero_cost_rate == 0.5
    assert result.limit(10).violation_rate == 0.5
    assert result.limit(20).violation_rate == 0.25
    import json

    json.dumps(result.to_dict())


def test_vectorised_equals_sequential_episode_by_episode() -> None:
    params = PointRobotParams()
    behaviour = {k: v[:1].repeat(64) for k, v in BehaviourFamily().sample(1, np.random.default_rng(1)).items()}

    def policy(obs: np.ndarray) -> np.ndarray:
        b = {k: v[: len(obs)] for k, v in behaviour.items()}
        return scripted_actions(obs.astype(np.float64), b, params)

    seq = rollout(PointRobotVectorEnv(1, params), policy, episodes=12, seed=7)
    vec = rollout(PointRobotVectorEnv(5, params), policy, episodes=12, seed=7)
    np.testing.assert_allclose(seq.returns, vec.returns, rtol=1e-6)
    np.testing.assert_array_equal(seq.costs, vec.costs)
    np.testing.assert_array_equal(seq.lengths, vec.lengths)


def test_evaluate_task_by_name_with_several_limits() -> None:
    result, records = evaluate(zero_policy, "PointRobot", episodes=6, seed=0, cost_limits=(10, 20, 40), record_observations=True)
    assert [m.cost_limit for m in result.per_limit] == [10, 20, 40]
    assert records.observations is not None and len(records.observations) == 6
    assert records.observations[0].shape[1] == 2
