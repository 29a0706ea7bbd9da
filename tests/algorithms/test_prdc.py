"""PRDC and PRDC-Lag: the dataset constraint, per-instance indexes, the Lagrangian cost term."""

from __future__ import annotations

import numpy as np
import torch

from saferl.algorithm import TaskContext
from saferl.algorithms.prdc import PRDC, PRDCConfig, PRDCLag, PRDCLagConfig
from saferl.datasets import TransitionDataset


def toy_dataset(n: int, seed: int, action_of_state: float = 0.5) -> TransitionDataset:
    """1-D states; every dataset action is ``tanh(action_of_state * s)``; zero reward."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(-2, 2, size=(n, 1)).astype(np.float32)
    a = np.tanh(action_of_state * s)
    timeouts = np.zeros(n, bool)
    timeouts[99::100] = True
    return TransitionDataset(s, a, np.zeros(n), np.zeros(n), s.copy(), np.zeros(n), timeouts)


CONTEXT = TaskContext(obs_dim=1, act_dim=1, episode_len=100, cost_limit=10.0, total_steps=400)


def test_dataset_constraint_pulls_actions_to_the_nearest_dataset_action() -> None:
    torch.manual_seed(0)
    data = toy_dataset(2000, seed=0)
    config = PRDCConfig(alpha=0.0, beta=2.0, hidden=[32, 32], actor_lr=3e-3, batch_size=128)
    algo = PRDC(config, CONTEXT)
    data = algo.setup(data)
    probe = np.linspace(-1.8, 1.8, 9, dtype=np.float32)[:, None]
    before = np.abs(algo.act(probe) - np.tanh(0.5 * probe)).mean()
    generator = torch.Generator().manual_seed(0)
    logs: dict[str, float] = {}
    for step in range(400):
        logs |= algo.update(data.sample(config.batch_size, generator), step)
    after = np.abs(algo.act(probe) - np.tanh(0.5 * probe)).mean()
    assert after < 0.05 < before
    assert logs["dataset_constraint"] < 1e-2


def test_neighbour_targets_are_the_exact_nearest_dataset_actions() -> None:
    data = toy_dataset(500, seed=1)
    algo = PRDC(PRDCConfig(beta=2.0, hidden=[8]), CONTEXT)
    data = algo.setup(data)
    rows = torch.arange(0, 500, 7)
    actions = torch.rand(len(rows), 1) * 2 - 1
    states = algo.normalizer(torch.as_tensor(data.observations))
    keys = torch.cat([2.0 * states, torch.as_tensor(data.actions)], dim=1)
    queries = torch.cat([2.0 * states[rows], actions], dim=1)
    brute = torch.cdist(queries, keys).argmin(dim=1)
    got = algo.index.query_rows(rows, actions)
    torch.testing.assert_close(got.kth_actions, torch.as_tensor(data.actions)[brute])


def test_two_instances_never_share_an_index() -> None:
    first, second = PRDC(PRDCConfig(hidden=[8]), CONTEXT), PRDC(PRDCConfig(hidden=[8]), CONTEXT)
    first.setup(toy_dataset(300, seed=2, action_of_state=0.5))
    second.setup(toy_dataset(300, seed=3, action_of_state=-0.5))
    assert first.index is not second.index
    rows, actions = torch.arange(10), torch.zeros(10, 1)
    a = first.index.query_rows(rows, actions).kth_actions
    b = second.index.query_rows(rows, actions).kth_actions
    assert not torch.allclose(a, b)
    assert "index" not in vars(PRDC) and "index" not in vars(PRDCLag)


def test_lagrangian_multiplier_rises_when_the_cost_critic_exceeds_the_threshold() -> None:
    torch.manual_seed(0)
    data = toy_dataset(1000, seed=4)
    data = data.replace(costs=np.ones(len(data), np.float32))  # every step costs 1: Q_c -> ~1/(1-gamma)
    config = PRDCLagConfig(hidden=[16], batch_size=64, multiplier="lagrange", multiplier_lr=0.05, initial_lambda=0.0)
    tight = TaskContext(obs_dim=1, act_dim=1, episode_len=100, cost_limit=0.1, total_steps=200)
    algo = PRDCLag(config, tight)
    data = algo.setup(data)
    generator = torch.Generator().manual_seed(0)
    lambdas = []
    logs: dict[str, float] = {}
    for step in range(200):
        logs |= algo.update(data.sample(64, generator), step)
        if "lambda" in logs:
            lambdas.append(logs["lambda"])
    assert logs["policy_q_cost"] > algo.q_threshold
    assert lambdas[-1] > lambdas[0] >= 0.0
    state = algo.extra_state()
    fresh = PRDCLag(config, tight)
    fresh.load_extra_state(state)
    assert fresh.multiplier.value == algo.multiplier.value


def test_overlapped_search_gives_the_sequential_numbers_bit_for_bit() -> None:
    """The background-thread search changes only wall time: same losses and weights as the sequential order."""
    data = toy_dataset(1500, seed=3)
    runs = {}
    for overlap in (True, False):
        torch.manual_seed(0)
        algo = PRDCLag(PRDCLagConfig(hidden=[32, 32], batch_size=64, overlap_search=overlap), CONTEXT)
        fitted = algo.setup(data)
        generator = torch.Generator().manual_seed(0)
        logs = [algo.update(fitted.sample(64, generator), step) for step in range(30)]
        runs[overlap] = (logs, [p.detach().clone() for p in algo.actor.parameters()], dict(algo.search_timing))
    assert runs[True][0] == runs[False][0]
    for a, b in zip(runs[True][1], runs[False][1]):
        assert torch.equal(a, b)
    for _, _, timing in runs.values():
        assert timing["search_s"] > 0.0 and timing["wait_s"] > 0.0
