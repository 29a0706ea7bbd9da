"""OOD guardians: kernel density (exact and subsampled) and ensemble disagreement."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from saferl.constraints.ood import EnsembleDisagreementGuardian, KernelDensityGuardian
from saferl.networks.mlp import EnsembleMLP


def gaussian_mixture(n: int, seed: int, dim: int = 6) -> torch.Tensor:
    """Three Gaussian clusters (std 0.4) at +1, -1 and alternating signs in every dimension."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.stack([torch.ones(dim), -torch.ones(dim), torch.tensor([1.0, -1.0]).repeat(dim // 2)])
    labels = torch.randint(0, 3, (n,), generator=generator)
    return centres[labels] + 0.4 * torch.randn(n, dim, generator=generator)


def split(joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(observations, actions) = (first 4 columns, the rest)."""
    return joint[:, :4], joint[:, 4:]


def round_trip(state: dict) -> dict:
    """Save and load a state dict the way checkpoints are loaded."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# ---------------------------------------------------------------------------- kernel density
def test_log_density_matches_the_formula() -> None:
    data = np.random.default_rng(0).uniform(-3, 5, size=(50, 3))
    kde = KernelDensityGuardian(bandwidth=0.3).fit(data[:, :2], data[:, 2:])
    low, high = data.min(0), data.max(0)
    scaled = 2 * (data - low) / (high - low) - 1
    query = np.array([[0.0, 1.0, 2.0], [4.0, -2.0, 0.5]])
    z = 2 * (query - low) / (high - low) - 1
    sq = ((z[:, None, :] - scaled[None, :, :]) ** 2).sum(-1)
    expected = np.log(np.exp(-sq / (2 * 0.3**2)).mean(1)) - 1.5 * math.log(2 * math.pi * 0.3**2)
    np.testing.assert_allclose(kde.log_density(query[:, :2], query[:, 2:]).numpy(), expected, rtol=1e-4)


def test_constant_dimensions_are_centred_not_divided_by_zero() -> None:
    data = np.column_stack([np.linspace(10, 30, 20), np.full(20, 7.0)])
    kde = KernelDensityGuardian().fit(data[:, :1], data[:, 1:])
    torch.testing.assert_close(kde.centre, torch.tensor([20.0, 7.0]))
    torch.testing.assert_close(kde.half_range, torch.tensor([10.0, 1.0]))
    assert torch.isfinite(kde.log_density(data[:3, :1], data[:3, 1:])).all()


def test_inside_points_are_in_distribution_and_far_points_are_not() -> None:
    kde = KernelDensityGuardian().fit(*split(gaussian_mixture(3000, seed=0)))
    centres = torch.stack([torch.ones(6), -torch.ones(6)])
    far = torch.stack([torch.full((6,), 4.0), torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0]), torch.zeros(6)])
    assert kde.in_distribution(*split(centres)).all()
    assert not kde.in_distribution(*split(far)).any()
    torch.testing.assert_close(kde.ood_cost(*split(far)), torch.ones(3))


def test_threshold_flags_about_five_percent_of_training_and_fresh_points() -> None:
    kde = KernelDensityGuardian(percentile=5.0).fit(*split(gaussian_mixture(3000, seed=0)))
    assert kde.ood_cost(*split(gaussian_mixture(3000, seed=0))).mean().item() == pytest.approx(0.05, abs=0.004)
    assert 0.035 <= kde.ood_cost(*split(gaussian_mixture(5000, seed=1))).mean().item() <= 0.07


def test_leave_one_out_calibration_keeps_fresh_points_in_sparse_data() -> None:
    # 400 points in 20-D: each training point's own kernel dominates its density, so no training point
    # is flagged; calibrating without it still flags only about 5 % of fresh points from the same law.
    generator = torch.Generator().manual_seed(0)
    data, fresh = torch.rand(400, 20, generator=generator), torch.rand(4000, 20, generator=generator)
    kde = KernelDensityGuardian().fit(data[:, :18], data[:, 18:])
    assert kde.ood_cost(data[:, :18], data[:, 18:]).sum().item() == 0
    assert 0.03 <= kde.ood_cost(fresh[:, :18], fresh[:, 18:]).mean().item() <= 0.08


def test_subsampled_density_agrees_with_the_exact_one() -> None:
    data = gaussian_mixture(4000, seed=0)
    exact = KernelDensityGuardian(max_support=4000, calibration_size=4000).fit(*split(data))
    approx = KernelDensityGuardian(max_support=1000, calibration_size=2000).fit(*split(data))
    assert approx.support.shape[0] == 1000
    box = torch.rand(1000, 6, generator=torch.Generator().manual_seed(2)) * 6 - 3
    queries = torch.cat([gaussian_mixture(3000, seed=3), box])
    same = exact.in_distribution(*split(queries)) == approx.in_distribution(*split(queries))
    assert same.float().mean().item() >= 0.97


def test_large_data_cost_is_bounded_by_the_subsample_sizes() -> None:
    data = gaussian_mixture(300_000, seed=0)
    kde = KernelDensityGuardian(max_support=2000, calibration_size=2000).fit(*split(data))
    assert kde.support.shape == (2000, 6)
    assert 0.035 <= kde.ood_cost(*split(gaussian_mixture(4000, seed=1))).mean().item() <= 0.07


def test_fit_is_deterministic_by_seed() -> None:
    data = gaussian_mixture(2000, seed=0)
    a = KernelDensityGuardian(max_support=500, calibration_size=500, seed=1).fit(*split(data))
    b = KernelDensityGuardian(max_support=500, calibration_size=500, seed=1).fit(*split(data))
    c = KernelDensityGuardian(max_support=500, calibration_size=500, seed=2).fit(*split(data))
    assert torch.equal(a.support, b.support) and a.threshold == b.threshold
    assert not torch.equal(a.support, c.support)


def test_kde_state_dict_round_trip() -> None:
    data = gaussian_mixture(1000, seed=0)
    kde = KernelDensityGuardian(max_support=300).fit(*split(data))
    restored = KernelDensityGuardian()
    restored.load_state_dict(round_trip(kde.state_dict()))
    queries = gaussian_mixture(500, seed=1)
    assert torch.equal(restored.log_density(*split(queries)), kde.log_density(*split(queries)))
    assert restored.threshold == kde.threshold and restored.max_support == 300
    with pytest.raises(ValueError, match="missing \\['support'\\]"):
        KernelDensityGuardian().load_state_dict({k: v for k, v in kde.state_dict().items() if k != "support"})


def test_kde_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="bandwidth"):
        KernelDensityGuardian(bandwidth=0.0)
    with pytest.raises(ValueError, match="percentile"):
        KernelDensityGuardian(percentile=100.0)
    with pytest.raises(ValueError, match="not fitted"):
        KernelDensityGuardian().in_distribution(torch.zeros(1, 4), torch.zeros(1, 2))
    kde = KernelDensityGuardian().fit(*split(gaussian_mixture(100, seed=0)))
    with pytest.raises(ValueError, match="dimension 6, got 5"):
        kde.in_distribution(torch.zeros(1, 4), torch.zeros(1, 1))
    with pytest.raises(ValueError, match="observations and actions must be"):
        kde.in_distribution(torch.zeros(2, 4), torch.zeros(3, 2))


# ---------------------------------------------------------------------------- ensemble disagreement
def mirrored_ensemble(observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Two members predicting +s and -s: the disagreement is exactly ||s||."""
    return torch.stack([observations, -observations])


def test_disagreement_closed_form_and_percentile() -> None:
    obs = torch.randn(2000, 3, generator=torch.Generator().manual_seed(0))
    act = torch.zeros(2000, 1)
    guardian = EnsembleDisagreementGuardian(mirrored_ensemble, percentile=95.0).fit(obs, act)
    torch.testing.assert_close(guardian.disagreement(obs, act), obs.norm(dim=1))
    assert guardian.threshold == pytest.approx(torch.quantile(obs.norm(dim=1), 0.95).item())
    assert guardian.ood_cost(obs, act).mean().item() == pytest.approx(0.05, abs=0.001)
    far = torch.tensor([[10.0, 0.0, 0.0]])
    assert not guardian.in_distribution(far, torch.zeros(1, 1)).any()


def test_disagreement_of_a_network_ensemble_flags_far_points() -> None:
    torch.manual_seed(0)
    ensemble = EnsembleMLP(5, 6, 4, hidden=(32, 32))
    guardian = EnsembleDisagreementGuardian(lambda s, a: ensemble(torch.cat([s, a], -1)))
    data = gaussian_mixture(2000, seed=0)
    guardian.fit(*split(data))
    assert guardian.ood_cost(*split(data)).mean().item() == pytest.approx(0.05, abs=0.002)
    assert guardian.ood_cost(*split(20 * gaussian_mixture(100, seed=1))).mean().item() == 1.0


def test_disagreement_state_dict_and_errors() -> None:
    obs, act = torch.randn(100, 3), torch.zeros(100, 1)
    guardian = EnsembleDisagreementGuardian(mirrored_ensemble).fit(obs, act)
    restored = EnsembleDisagreementGuardian(mirrored_ensemble)
    restored.load_state_dict(round_trip(guardian.state_dict()))
    assert restored.threshold == guardian.threshold
    with pytest.raises(ValueError, match="not fitted"):
        EnsembleDisagreementGuardian(mirrored_ensemble).in_distribution(obs, act)
    with pytest.raises(ValueError, match="at least 2 members"):
        EnsembleDisagreementGuardian(lambda s, a: s[None]).fit(obs, act)
