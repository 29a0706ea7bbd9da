"""OGSRL's model on data with a constant observation coordinate (BallRun's last one moves by 1e-14)."""

from __future__ import annotations

import numpy as np
import torch

from saferl.algorithm import TaskContext
from saferl.algorithms.ogsrl import OGSRL, OGSRLConfig
from saferl.datasets import TransitionDataset

EPISODE_LEN = 20


def dataset_with_a_constant_coordinate(n_episodes: int = 100) -> TransitionDataset:
    """``s' = s + 0.1 a`` on two coordinates; the third is 0 up to float noise of 1e-14, as in BallRun."""
    rng = np.random.default_rng(0)
    n = n_episodes * EPISODE_LEN
    obs = np.zeros((n, 3))
    acts = np.clip(rng.normal(0.0, 0.3, size=(n, 2)), -1, 1)
    for start in range(0, n, EPISODE_LEN):
        s = rng.uniform(-1, 1, size=2)
        for t in range(EPISODE_LEN):
            obs[start + t, :2] = s
            s = s + 0.1 * acts[start + t]
    obs[:, 2] = 1e-14 * rng.normal(size=n)
    nexts = obs.copy()
    nexts[:-1] = obs[1:]
    last = np.arange(EPISODE_LEN - 1, n, EPISODE_LEN)
    nexts[last, :2] = obs[last, :2] + 0.1 * acts[last]
    nexts[last, 2] = 1e-14 * rng.normal(size=len(last))
    timeouts = np.zeros(n, bool)
    timeouts[last] = True
    return TransitionDataset(obs, acts, acts[:, 0], np.zeros(n), nexts, np.zeros(n, bool), timeouts)


def test_a_constant_coordinate_is_predicted_exactly_and_rollouts_stay_in_distribution() -> None:
    torch.manual_seed(0)
    data = dataset_with_a_constant_coordinate()
    context = TaskContext(obs_dim=3, act_dim=2, episode_len=EPISODE_LEN, cost_limit=2.0, reward_max=1.0,
                          reward_min=0.0, total_steps=400)
    algo = OGSRL(OGSRLConfig(hidden=[32, 32], model_hidden=[32, 32], ensemble_size=3, batch_size=128,
                             guardian_support=1000, model_fraction=1.0), context)
    algo.setup(data)
    assert algo.target_std[2] == 0.0
    obs = torch.as_tensor(data.observations, dtype=torch.float32)
    act = torch.as_tensor(data.actions, dtype=torch.float32)
    untrained_next = algo.predict(obs, act)[0]
    torch.testing.assert_close(untrained_next[:, 2] - obs[:, 2], algo.target_mean[2].expand(len(obs)))
    generator = torch.Generator().manual_seed(0)
    for step in range(300):
        algo.update(data.sample(128, generator), step)
    next_obs = algo.predict(obs, act)[0]
    assert torch.isfinite(next_obs).all()
    # A model error on the constant coordinate, however small, would leave its 1e-13-wide range and the
    # guardian would flag every model step; here model steps are flagged about as often as the data.
    data_rate = algo.guardian.ood_cost(obs[1:], act[1:]).mean().item()
    model_rate = algo.guardian.ood_cost(next_obs[:-1], act[1:]).mean().item()
    assert model_rate < data_rate + 0.15
