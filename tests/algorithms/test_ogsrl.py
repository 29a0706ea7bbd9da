"""OGSRL: the dynamics ensemble learns, kNN returns logged transitions, the guardian flags far points,
the rollout buffer is deterministic, and the OOD constraint keeps model rollouts in distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saferl.algorithm import TaskContext
from saferl.algorithms.ogsrl import OGSRL, OGSRLConfig
from saferl.constraints.cost_limits import per_step_cost_threshold
from saferl.datasets import TransitionDataset

EPISODE_LEN = 20


def toy_dataset(n_episodes: int = 100, action_std: float = 0.1, seed: int = 0) -> TransitionDataset:
    """A linear system ``s' = s + 0.1 a`` with reward ``a_x`` and cost ``1[s'_y > 0.8]``, cautious actions."""
    rng = np.random.default_rng(seed)
    obs, acts, nexts = [], [], []
    for _ in range(n_episodes):
        s = rng.uniform(-1, 1, size=2)
        for _ in range(EPISODE_LEN):
            a = np.clip(rng.normal(0.0, action_std, size=2), -1, 1)
            obs.append(s)
            acts.append(a)
            s = s + 0.1 * a
            nexts.append(s)
    obs, acts, nexts = map(np.asarray, (obs, acts, nexts))
    timeouts = np.zeros(len(obs), bool)
    timeouts[EPISODE_LEN - 1 :: EPISODE_LEN] = True
    return TransitionDataset(obs, acts, acts[:, 0], (nexts[:, 1] > 0.8).astype(float), nexts,
                             np.zeros(len(obs), bool), timeouts)


def make(total_steps: int = 400, **overrides: object) -> OGSRL:
    torch.manual_seed(0)
    context = TaskContext(obs_dim=2, act_dim=2, episode_len=EPISODE_LEN, cost_limit=2.0, reward_max=1.0,
                          reward_min=0.0, total_steps=total_steps)
    config = dict(hidden=[32, 32], model_hidden=[32, 32], ensemble_size=3, rollout_batch_size=200,
                  rollout_horizon=3, rollout_every=50, batch_size=128, guardian_support=1000)
    return OGSRL(OGSRLConfig(**{**config, **overrides}), context)


def train(algo: OGSRL, data: TransitionDataset, steps: int) -> list[dict[str, float]]:
    generator = torch.Generator().manual_seed(0)
    return [algo.update(data.sample(algo.config.batch_size, generator), step) for step in range(steps)]


def test_thresholds_come_from_the_cost_limit_and_the_ood_rate() -> None:
    algo = make(gamma=0.9, ood_rate_limit=0.2)
    assert algo.cost_threshold == pytest.approx(per_step_cost_threshold(2.0, 0.9, EPISODE_LEN))
    assert algo.ood_threshold == pytest.approx(per_step_cost_threshold(0.2 * EPISODE_LEN, 0.9, EPISODE_LEN))
    assert algo.model_steps == int(0.2 * 400)
    assert make(dynamics="knn").model_steps == 0


def test_model_nll_decreases_on_a_linear_system() -> None:
    data = toy_dataset()
    algo = make(total_steps=500, model_fraction=1.0, model_lr=3e-3)
    algo.setup(data)
    probe = data.sample(512, torch.Generator().manual_seed(1))

    def errors() -> tuple[float, np.ndarray]:
        """NLL, and the mean squared error of each standardised target (Δs_x, Δs_y, r, c) over members."""
        with torch.no_grad():
            mean, _, _ = algo.model(algo._model_inputs(probe.observations, probe.actions))
            target = torch.cat([probe.next_observations - probe.observations, probe.rewards[:, None],
                                probe.costs[:, None]], dim=1)
            mse = (mean - (target - algo.target_mean) / algo.target_std).square().mean(dim=(0, 1))
            return algo.model_losses(probe)["nll"].item(), mse.numpy()

    nll_before, mse_before = errors()
    logs = train(algo, data, 500)
    nll_after, mse_after = errors()
    assert np.isnan(logs[-1]["actor_loss"])  # the policy waits for the model
    assert nll_after < nll_before - 10.0
    # The linear parts (Δs = 0.1 a, r = a_x) are learned; the cost is a step function, left out.
    assert np.all(mse_after[:3] < 0.25 * mse_before[:3]), (mse_before, mse_after)
    assert mse_after[:3].mean() < 0.1 * mse_before[:3].mean(), (mse_before, mse_after)
    # The learned step moves the state by about 0.1 a.
    torch.manual_seed(2)
    obs, act = torch.zeros(64, 2), torch.full((64, 2), 0.1)
    next_obs, reward, _, terminal = algo.predict(obs, act)
    np.testing.assert_allclose(next_obs.mean(0).numpy(), [0.01, 0.01], atol=0.01)
    assert reward.mean().item() == pytest.approx(0.1, abs=0.05) and terminal.sum() == 0


def test_knn_dynamics_returns_the_logged_transition() -> None:
    data = toy_dataset(20)
    algo = make(dynamics="knn")
    algo.setup(data)
    rows = torch.tensor([0, 7, 123, 399])
    tensors = data.tensors()
    next_obs, reward, cost, terminal = algo.predict(tensors["observations"][rows], tensors["actions"][rows])
    torch.testing.assert_close(next_obs, tensors["next_observations"][rows], rtol=0, atol=0)
    torch.testing.assert_close(reward, tensors["rewards"][rows], rtol=0, atol=0)
    torch.testing.assert_close(cost, tensors["costs"][rows], rtol=0, atol=0)
    assert terminal.sum() == 0


def test_guardian_flags_far_points_at_every_rollout_step() -> None:
    data = toy_dataset()
    algo = make(dynamics="knn")
    algo.setup(data)
    assert 0.02 < algo.data_ood_costs.mean().item() < 0.1  # about the 5th percentile of the data itself
    far = torch.full((10, 2), 5.0)
    assert algo.guardian.ood_cost(far, torch.zeros(10, 2)).tolist() == [1.0] * 10
    assert algo.guardian.ood_cost(torch.zeros(10, 2), torch.ones(10, 2)).tolist() == [1.0] * 10
    rollout = algo.rollout(torch.zeros(8, 2), horizon=4)
    assert rollout["ood_costs"].shape == (4, 8)
    for step in range(4):
        expected = algo.guardian.ood_cost(rollout["observations"][step], rollout["actions"][step])
        torch.testing.assert_close(rollout["ood_costs"][step], expected)


def test_rollout_buffer_is_module_state_and_reproducible() -> None:
    data = toy_dataset(20)
    first, second = make(dynamics="knn"), make(dynamics="knn")
    for algo in (first, second):
        algo.setup(data)
        torch.manual_seed(5)
        train(algo, data, 3)
    assert int(first.rollout_written) == 200 * 3
    state = first.state_dict()
    assert "rollout_observations" in state and "rollout_ood_costs" in state
    for key, tensor in state.items():
        assert torch.equal(tensor, second.state_dict()[key]), key
    restored = make(dynamics="knn")
    restored.load_state_dict(state)
    restored.load_extra_state(first.extra_state())
    assert restored.ood_multiplier.value == first.ood_multiplier.value


def test_ood_constraint_keeps_model_rollouts_in_distribution() -> None:
    """Reward ``a_x`` pulls the policy out of the data's cautious actions; the guardian holds it back."""
    data = toy_dataset()
    steps, rates, lambdas = 700, {}, {}
    for guarded in (True, False):
        algo = make(total_steps=steps, gamma=0.9, polyak=0.05, actor_lr=1e-3, critic_lr=1e-3, model_lr=3e-3,
                    model_fraction=0.3, ood_constraint=guarded, multiplier="lagrange",
                    multiplier_options={"lr": 0.05})
        algo.setup(data)
        logs = train(algo, data, steps)
        torch.manual_seed(3)
        rollout = algo.rollout(data.tensors()["observations"][:500], horizon=3)
        rates[guarded] = rollout["ood_costs"][rollout["alive"]].mean().item()
        lambdas[guarded] = [log["lambda_ood"] for log in logs[algo.model_steps :]]
    assert rates[False] > 0.8, rates  # unguarded: the policy exploits the model far from the data
    assert rates[True] < 0.5 * rates[False], rates
    assert max(lambdas[True]) > 0.5 and lambdas[True][0] == 0.0  # the OOD multiplier rose as rollouts left
    assert max(lambdas[False]) == 0.0
