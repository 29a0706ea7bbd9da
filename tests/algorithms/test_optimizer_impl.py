"""``optimizer_impl``: every choice is deterministic, and 'for_loop' is torch's default Adam bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from saferl.algorithm import TaskContext
from saferl.algorithms.bc import BCAll, BCConfig
from saferl.datasets import TransitionDataset
from saferl.networks.mlp import MLP

CONTEXT = TaskContext(obs_dim=3, act_dim=2, episode_len=50, cost_limit=10.0)


def tiny_dataset(n: int = 300) -> TransitionDataset:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 3))
    return TransitionDataset(obs, rng.uniform(-1, 1, (n, 2)), rng.normal(size=n), np.zeros(n), obs, np.zeros(n),
                             np.zeros(n))


def trained_weights(impl: str, steps: int = 30) -> tuple[torch.Tensor, list[float]]:
    """BC-All's actor weights and losses after ``steps`` updates (normaliser off: the raw MLP)."""
    torch.manual_seed(0)
    algo = BCAll(BCConfig(hidden=[16, 16], normalize_obs=False, optimizer_impl=impl), CONTEXT)
    data, generator = tiny_dataset(), torch.Generator().manual_seed(1)
    losses = [float(algo.update(data.sample(64, generator), step)["actor_loss"]) for step in range(steps)]
    return torch.cat([p.detach().flatten() for p in algo.actor.parameters()]), losses


def torch_default_adam_weights(steps: int = 30) -> torch.Tensor:
    """The same training with ``torch.optim.Adam``'s defaults."""
    torch.manual_seed(0)
    actor = MLP(3, 2, hidden=(16, 16), output_activation="tanh")
    optimizer = torch.optim.Adam(actor.parameters(), lr=BCConfig().lr)
    data, generator = tiny_dataset(), torch.Generator().manual_seed(1)
    for _ in range(steps):
        batch = data.sample(64, generator)
        loss = F.mse_loss(actor(batch.observations), batch.actions)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return torch.cat([p.detach().flatten() for p in actor.parameters()])


@pytest.mark.parametrize("impl", ["fused", "foreach", "for_loop"])
def test_every_optimizer_impl_is_deterministic_and_trains(impl: str) -> None:
    weights, losses = trained_weights(impl)
    again, losses_again = trained_weights(impl)
    assert torch.equal(weights, again) and losses == losses_again
    assert losses[-1] < losses[0]


def test_for_loop_is_torch_default_adam_and_fused_is_within_rounding() -> None:
    reference = torch_default_adam_weights()
    assert torch.equal(trained_weights("for_loop")[0], reference)
    torch.testing.assert_close(trained_weights("fused")[0], reference, rtol=1e-4, atol=1e-5)


def test_optimizer_impl_reaches_torch_and_unknown_names_fail() -> None:
    algo = BCAll(BCConfig(hidden=[8]), CONTEXT)
    assert algo.optimizers["actor"].param_groups[0]["fused"] is True
    with pytest.raises(ValueError, match="optimizer_impl"):
        BCAll(BCConfig(hidden=[8], optimizer_impl="fast"), CONTEXT)
