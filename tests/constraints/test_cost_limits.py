"""Cost limits: the episodic budget and the discounted Q_c threshold, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from saferl.constraints.cost_limits import episodic_cost_limit_from_q_threshold, per_step_cost_threshold


def test_threshold_matches_the_closed_form() -> None:
    # kappa (1 - gamma^T) / ((1 - gamma) T) for kappa = 10, gamma = 0.99, T = 300 (CarCircle).
    expected = 10.0 * (1.0 - 0.99**300) / (0.01 * 300)
    assert per_step_cost_threshold(10.0, 0.99, 300) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(3.16986, abs=1e-5)


def test_threshold_is_the_discounted_sum_of_an_even_per_step_budget() -> None:
    kappa, gamma, horizon = 40.0, 0.95, 50
    per_step_cost = kappa / horizon
    discounted_sum = sum(gamma**t * per_step_cost for t in range(horizon))
    assert per_step_cost_threshold(kappa, gamma, horizon) == pytest.approx(discounted_sum, rel=1e-12)


def test_discount_edge_cases() -> None:
    # gamma = 1: no discounting, the thresholds coincide; gamma = 0: only the first step counts.
    assert per_step_cost_threshold(20.0, 1.0, 1000) == 20.0
    assert per_step_cost_threshold(20.0, 0.0, 1000) == pytest.approx(20.0 / 1000)
    assert per_step_cost_threshold(0.0, 0.99, 100) == 0.0


@pytest.mark.parametrize(("kappa", "gamma", "horizon"), [(10.0, 0.99, 300), (80.0, 0.999, 1000), (5.0, 1.0, 7)])
def test_inverse_round_trips(kappa: float, gamma: float, horizon: int) -> None:
    threshold = per_step_cost_threshold(kappa, gamma, horizon)
    assert episodic_cost_limit_from_q_threshold(threshold, gamma, horizon) == pytest.approx(kappa, rel=1e-12)


def test_inverse_of_a_known_threshold() -> None:
    # q = 1, gamma = 0.5, T = 2: kappa = 1 * 0.5 * 2 / (1 - 0.25) = 4/3.
    assert episodic_cost_limit_from_q_threshold(1.0, 0.5, 2) == pytest.approx(4.0 / 3.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"episodic_cost_limit": -1.0, "gamma": 0.99, "episode_len": 10}, "episodic_cost_limit"),
        ({"episodic_cost_limit": math.nan, "gamma": 0.99, "episode_len": 10}, "episodic_cost_limit"),
        ({"episodic_cost_limit": 10.0, "gamma": 1.5, "episode_len": 10}, "gamma"),
        ({"episodic_cost_limit": 10.0, "gamma": 0.99, "episode_len": 0}, "episode_len"),
        ({"episodic_cost_limit": 10.0, "gamma": 0.99, "episode_len": 10.5}, "episode_len"),
    ],
)
def test_bad_input_is_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        per_step_cost_threshold(**kwargs)  # type: ignore[arg-type]


def test_inverse_rejects_a_negative_threshold() -> None:
    with pytest.raises(ValueError, match="q_threshold"):
        episodic_cost_limit_from_q_threshold(-0.1, 0.99, 100)
