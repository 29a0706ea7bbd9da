"""The toy dosing simulator (synthetic, not clinical): dynamics, seeding, interfaces, the behaviour dataset."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from saferl.datasets import get_task, load_dataset
from saferl.datasets.envs import VectorSafetyEnv, make_env, make_vector_env, simulator_available
from saferl.datasets.envs.toy_dosing import (
    Patients,
    ToyDosingEnv,
    ToyDosingParams,
    ToyDosingVectorEnv,
    action_of_dose,
    band_reward,
    dose_of_action,
    step_dynamics,
)
from saferl.datasets.toy_dosing_data import build_toy_dosing_dataset

NOISELESS = ToyDosingParams(dose_noise=0.0, biomarker_noise=0.0)


def run_episode(env: ToyDosingVectorEnv, actions: np.ndarray) -> tuple[np.ndarray, ...]:
    """Step ``env`` with ``actions[t]`` for every t; stack observations, rewards, costs."""
    steps = [env.step(a) for a in actions]
    return tuple(np.stack([getattr(s, k) for s in steps]) for k in ("observations", "rewards", "costs"))


def test_dose_mapping_and_band_reward() -> None:
    params = ToyDosingParams(max_dose=1.5)
    np.testing.assert_allclose(dose_of_action(np.array([-1.0, 0.0, 1.0, 3.0]), params), [0.0, 0.75, 1.5, 1.5])
    np.testing.assert_allclose(action_of_dose(np.array([0.0, 0.75, 2.0]), params), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(band_reward(np.array([0.5, 0.6, 0.8, 1.0, 1.3]), params), [-0.1, 1, 1, 1, -0.3])


def test_noiseless_constant_dose_matches_hand_computation() -> None:
    # C_t = u (1 - q^t) / (1 - q), q = exp(-k); the biomarker update is replayed by hand from C_{t+1}.
    patients = Patients(np.array([0.3]), np.array([2.0]), np.array([1.5]))
    c, b, u, q = np.zeros(1), np.array([2.0]), 0.9, math.exp(-0.3)
    zeros = np.zeros(1)
    expected_b = 2.0
    for t in range(1, 80):
        c, b, reward, cost = step_dynamics(c, b, action_of_dose(np.array([u]), NOISELESS), patients, zeros, zeros,
                                           NOISELESS)
        expected_c = u * (1 - q**t) / (1 - q)
        expected_b += 0.2 * (2.0 - expected_b * (1 + 2.5 * expected_c / (1.5 + expected_c)))
        assert c[0] == pytest.approx(expected_c, rel=1e-12)
        assert b[0] == pytest.approx(expected_b, rel=1e-12)
        assert cost[0] == float(expected_c > 2.0)
        assert reward[0] == pytest.approx(band_reward(np.array([expected_b]), NOISELESS)[0])
    # Steady state: B = B0 / (1 + E(C_ss)), C_ss = u / (1 - q).
    c_ss = u / (1 - q)
    assert b[0] == pytest.approx(2.0 / (1 + 2.5 * c_ss / (1.5 + c_ss)), rel=1e-6)


def test_no_drug_keeps_the_untreated_level_and_costs_nothing() -> None:
    env = ToyDosingVectorEnv(3, NOISELESS)
    start = env.reset_envs([0, 1, 2], [0, 1, 2])
    observations, rewards, costs = run_episode(env, -np.ones((NOISELESS.episode_len, 3, 1)))
    np.testing.assert_array_equal(start[:, 0], 0.0)
    np.testing.assert_allclose(observations[-1, :, 1], start[:, 1], rtol=1e-6)
    assert costs.sum() == 0 and (rewards < 0).all()


def test_episode_is_a_function_of_its_seed_only() -> None:
    params = ToyDosingParams()
    actions = np.random.default_rng(0).uniform(-1, 1, (params.episode_len, 4, 1))
    batch = ToyDosingVectorEnv(4, params)
    batch.reset_envs([0, 1, 2, 3], [10, 11, 12, 13])
    batched = run_episode(batch, actions)
    single = ToyDosingVectorEnv(1, params)
    single.reset_envs([0], [12])
    alone = run_episode(single, actions[:, 2:3])
    for together, by_itself in zip(batched, alone):
        np.testing.assert_array_equal(together[:, 2], by_itself[:, 0])
    assert not np.array_equal(batched[0][:, 0], batched[0][:, 1])


def test_truncation_without_termination_and_no_step_past_the_limit() -> None:
    env = ToyDosingVectorEnv(2, dataclasses.replace(ToyDosingParams(), episode_len=5))
    env.reset_envs([0, 1], [0, 1])
    for t in range(5):
        step = env.step(np.zeros((2, 1)))
        assert not step.terminated.any()
        assert step.truncated.all() == (t == 4)
    with pytest.raises(RuntimeError, match="reset it first"):
        env.step(np.zeros((2, 1)))
    env.reset_envs([0], [5])
    with pytest.raises(RuntimeError):  # env 1 is still finished
        env.step(np.zeros((2, 1)))


def test_make_env_and_vector_env() -> None:
    spec = get_task("ToyDosing")
    assert simulator_available(spec.simulator)
    env = make_env("ToyDosing")
    assert isinstance(env, ToyDosingEnv)
    assert env.observation_space.shape == (spec.obs_dim,) and env.action_space.shape == (spec.act_dim,)
    first, _ = env.reset(seed=3)
    again, _ = env.reset(seed=3)
    other, _ = env.reset(seed=4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    obs, reward, terminated, truncated, info = env.step(np.array([1.0], np.float32))
    assert isinstance(reward, float) and isinstance(info["cost"], float)
    assert obs.shape == (2,) and not terminated and not truncated
    vector = make_vector_env("ToyDosing", 3)
    assert isinstance(vector, ToyDosingVectorEnv) and isinstance(vector, VectorSafetyEnv)
    assert vector.num_envs == 3


def test_dataset_is_deterministic_valid_and_spans_safe_to_unsafe() -> None:
    a = build_toy_dosing_dataset(60, seed=3)
    b = build_toy_dosing_dataset(60, seed=3)
    c = build_toy_dosing_dataset(60, seed=4)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.observations, b.observations)
    assert not np.array_equal(a.actions[:100], c.actions[:100])
    T = ToyDosingParams().episode_len
    assert a.num_trajectories == 60 and len(a) == 60 * T
    assert (a.trajectory_lengths() == T).all() and not a.terminals.any()
    np.testing.assert_array_equal(np.flatnonzero(a.timeouts), np.arange(T - 1, 60 * T, T))
    assert np.abs(a.actions).max() <= 1.0 and (a.observations >= 0).all()
    starts = set(a.episode_starts.tolist())
    cont = np.array([i for i in range(1, len(a)) if i not in starts])
    np.testing.assert_array_equal(a.observations[cont], a.next_observations[cont - 1])
    costs, returns = a.trajectory_cost_returns(), a.trajectory_returns()
    assert (costs == 0).any() and (costs > 10).any()
    # The trade-off the task exists for: on average more drug buys reward at the price of cost.
    assert returns[costs > 10].mean() > returns[costs <= 10].mean()


def test_registry_constants_match_the_default_dataset() -> None:
    task = get_task("ToyDosing")
    data = build_toy_dosing_dataset(task.num_trajectories, seed=0)
    returns, costs = data.trajectory_returns(), data.trajectory_cost_returns()
    assert task.reward_max == pytest.approx(returns.max(), abs=1e-4)
    assert task.reward_min == pytest.approx(returns.min(), abs=1e-4)
    assert task.cost_max == costs.max()
    assert task.episode_len == ToyDosingParams().episode_len
    assert task.file_name == f"ToyDosing-v0-{int(costs.max())}-{task.num_trajectories}.hdf5"


def test_loading_builds_the_dataset_into_the_cache() -> None:
    loaded = load_dataset("ToyDosing")
    built = build_toy_dosing_dataset(get_task("ToyDosing").num_trajectories, seed=0)
    np.testing.assert_array_equal(loaded.actions, built.actions)
    np.testing.assert_array_equal(loaded.costs, built.costs)


def test_data_build_and_list_treat_it_as_a_task_saferl_makes() -> None:
    from saferl.datasets.cli_support import data_build, data_list

    assert "built " in data_build("ToyDosing", force=True)
    line = next(row for row in data_list().splitlines() if row.startswith("ToyDosing "))
    assert line.rstrip().endswith("cached")


def test_batched_evaluation_equals_one_environment_at_a_time() -> None:
    from saferl.evaluation import evaluate

    def policy(obs: np.ndarray) -> np.ndarray:
        return np.clip(obs[:, :1] - 0.5, -1, 1).astype(np.float32)

    batched, _ = evaluate(policy, "ToyDosing", episodes=6, seed=3)  # default: all 6 at once
    single, _ = evaluate(policy, "ToyDosing", episodes=6, seed=3, num_envs=1)
    np.testing.assert_allclose(batched.episode_costs, single.episode_costs)
    np.testing.assert_allclose(batched.episode_returns, single.episode_returns)
