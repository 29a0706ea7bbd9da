"""Trust regions: closed-form KL against torch.distributions, the fixed-sigma identity, snapshot refreshes."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal, kl_divergence

from saferl.constraints.trust_region import (
    PolicySnapshot,
    gaussian_anchor_distance,
    gaussian_kl,
    squared_distance,
)


def _diagonal_gaussian(mean: torch.Tensor, log_std: torch.Tensor) -> Independent:
    return Independent(Normal(mean, log_std.exp()), 1)


def test_gaussian_kl_matches_torch_distributions() -> None:
    generator = torch.Generator().manual_seed(0)
    mu_p, mu_q = torch.randn(2, 64, 3, generator=generator, dtype=torch.float64)
    log_std_p, log_std_q = 0.5 * torch.randn(2, 64, 3, generator=generator, dtype=torch.float64)
    expected = kl_divergence(_diagonal_gaussian(mu_p, log_std_p), _diagonal_gaussian(mu_q, log_std_q))
    result = gaussian_kl(mu_p, log_std_p, mu_q, log_std_q)
    assert result.shape == (64,)
    torch.testing.assert_close(result, expected, rtol=1e-12, atol=1e-12)


def test_gaussian_kl_of_a_known_pair() -> None:
    # KL(N(1, 1) || N(0, 2^2)) = log 2 + (1 + 1) / 8 - 1/2 in one dimension.
    result = gaussian_kl(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([2.0]).log())
    assert result.item() == pytest.approx(torch.tensor(2.0).log().item() + 0.25 - 0.5, abs=1e-6)


def test_gaussian_kl_is_zero_at_equality_and_positive_elsewhere() -> None:
    torch.manual_seed(0)
    mean, log_std = torch.randn(8, 2), torch.randn(8, 2)
    torch.testing.assert_close(gaussian_kl(mean, log_std, mean, log_std), torch.zeros(8))
    assert bool((gaussian_kl(mean + 0.1, log_std, mean, log_std) > 0).all())


def test_gaussian_kl_broadcasts_a_state_independent_log_std() -> None:
    torch.manual_seed(0)
    mean_p, mean_q = torch.randn(5, 2), torch.randn(5, 2)
    log_std = torch.tensor([0.3, -0.2])
    torch.testing.assert_close(
        gaussian_kl(mean_p, log_std, mean_q, log_std),
        gaussian_kl(mean_p, log_std.expand(5, 2), mean_q, log_std.expand(5, 2)),
    )


@pytest.mark.parametrize("sigma", [0.1, 1.0, 3.0])
def test_squared_distance_is_the_fixed_sigma_kl_times_two_sigma_squared(sigma: float) -> None:
    torch.manual_seed(0)
    action, old_action = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 4, dtype=torch.float64)
    log_std = torch.full((4,), sigma, dtype=torch.float64).log()
    kl = gaussian_kl(action, log_std, old_action, log_std)
    torch.testing.assert_close(squared_distance(action, old_action), 2.0 * sigma**2 * kl)


def test_squared_distance_by_hand() -> None:
    assert squared_distance(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])).tolist() == [5.0]


def test_gaussian_anchor_distance_has_the_gradient_of_the_kl() -> None:
    # For any fixed policy sigma s, KL(N(a, s^2) || N(mu, sigma^2)) - D(a) does not depend on a.
    torch.manual_seed(0)
    anchor_mean, anchor_log_std = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    policy_log_std = torch.full((2,), -1.0, dtype=torch.float64)
    action = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    distance = gaussian_anchor_distance(action, anchor_mean, anchor_log_std)
    kl = gaussian_kl(action, policy_log_std, anchor_mean, anchor_log_std)
    (grad_distance,) = torch.autograd.grad(distance.sum(), action)
    (grad_kl,) = torch.autograd.grad(kl.sum(), action)
    torch.testing.assert_close(grad_distance, grad_kl)
    # By hand: 0.5 * ((1 - 0) / 0.5)^2 = 2 in one dimension.
    one = gaussian_anchor_distance(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.5]).log())
    assert one.item() == pytest.approx(2.0)


def test_mismatched_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="do not broadcast"):
        squared_distance(torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="action axis"):
        gaussian_kl(torch.tensor(0.0), torch.zeros(1), torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError, match="torch.Tensor"):
        squared_distance([0.0, 1.0], torch.zeros(2))  # type: ignore[arg-type]


def _perturb(module: nn.Module, amount: float) -> None:
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(amount)


def test_snapshot_is_a_frozen_copy() -> None:
    torch.manual_seed(0)
    actor = nn.Linear(3, 2)
    snapshot = PolicySnapshot(actor, refresh_every=5)
    states = torch.randn(4, 3)
    torch.testing.assert_close(snapshot(states), actor(states))
    assert not snapshot(states).requires_grad
    assert not any(parameter.requires_grad for parameter in snapshot.module.parameters())
    _perturb(actor, 1.0)
    assert not torch.allclose(snapshot(states), actor(states))


def test_snapshot_refreshes_every_m_steps() -> None:
    torch.manual_seed(0)
    actor = nn.Linear(3, 2)
    snapshot = PolicySnapshot(actor, refresh_every=3)
    refreshed_at = []
    for update in range(1, 10):
        _perturb(actor, 0.1)
        if snapshot.step():
            refreshed_at.append(update)
            torch.testing.assert_close(snapshot.module.weight, actor.weight)
        else:
            assert not torch.allclose(snapshot.module.weight, actor.weight)
    assert refreshed_at == [3, 6, 9]


def test_snapshot_state_round_trip() -> None:
    torch.manual_seed(0)
    actor = nn.Sequential(nn.Linear(3, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    snapshot = PolicySnapshot(actor, refresh_every=4)
    for _ in range(6):
        _perturb(actor, 0.05)
        snapshot.step()
    buffer = io.BytesIO()
    torch.save(snapshot.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    restored = PolicySnapshot(actor, refresh_every=4)  # built from the live actor, which differs
    restored.load_state_dict(state)
    states = torch.randn(5, 3)
    torch.testing.assert_close(restored(states), snapshot(states))
    assert restored.updates == 6
    # The counter carries over: both refresh at update 8, not 4 updates after the restore.
    assert [restored.step(), restored.step()] == [False, True]


def test_snapshot_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="refresh_every"):
        PolicySnapshot(nn.Linear(1, 1), refresh_every=0)
    with pytest.raises(ValueError, match="nn.Module"):
        PolicySnapshot(lambda x: x, refresh_every=1)  # type: ignore[arg-type]
    state = PolicySnapshot(nn.Linear(1, 1), refresh_every=2).state_dict()
    with pytest.raises(ValueError, match="refresh_every"):
        PolicySnapshot(nn.Linear(1, 1), refresh_every=3).load_state_dict(state)
