"""Lagrange multipliers: single steps against hand-computed values, KKT convergence, checkpoint round trips."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest
import torch

from saferl.constraints.multipliers import (
    MULTIPLIER_KINDS,
    LagrangeMultiplier,
    LogLagrangeMultiplier,
    Multiplier,
    PIDLagrangeMultiplier,
    make_multiplier,
)


def _solve_toy_problem(multiplier: Multiplier, steps: int, primal_lr: float = 0.05) -> tuple[float, float]:
    """Primal-dual descent-ascent on min (x - 3)^2 s.t. x <= 1, whose KKT point is x* = 1, lambda* = 4.

    The constraint g(x) = x is the "measured cost" and 1 the "cost limit"; stationarity of
    (x - 3)^2 + lambda (x - 1) at x = 1 gives lambda = 2 (3 - 1) = 4.
    """
    x = 3.0
    for _ in range(steps):
        x -= primal_lr * (2.0 * (x - 3.0) + multiplier.value)
        multiplier.update(x, 1.0)
    return x, multiplier.value


@pytest.mark.parametrize(
    ("kind", "options", "steps"),
    [
        ("lagrange", {"optimizer": "sgd", "lr": 0.05}, 600),
        ("lagrange", {"optimizer": "adam", "lr": 0.05}, 600),
        ("log_lagrange", {"optimizer": "sgd", "lr": 0.05}, 600),
        ("log_lagrange", {"optimizer": "adam", "lr": 0.01}, 1000),
        ("pid", {}, 8000),
    ],
)
def test_primal_dual_reaches_the_kkt_point(kind: str, options: dict[str, Any], steps: int) -> None:
    x, lam = _solve_toy_problem(make_multiplier(kind, **options), steps)
    assert x == pytest.approx(1.0, abs=1e-3)
    assert lam == pytest.approx(4.0, abs=1e-2)


def test_a_slack_constraint_drives_lambda_to_zero() -> None:
    # min (x - 3)^2 s.t. x <= 5: the constraint is inactive, so x* = 3 and lambda* = 0.
    multiplier = LagrangeMultiplier(initial_value=2.0, lr=0.05, optimizer="sgd")
    x = 0.0
    for _ in range(600):
        x -= 0.05 * (2.0 * (x - 3.0) + multiplier.value)
        multiplier.update(x, 5.0)
    assert multiplier.value == 0.0
    assert x == pytest.approx(3.0, abs=1e-6)


def test_lagrange_sgd_step_and_projection() -> None:
    multiplier = LagrangeMultiplier(initial_value=0.5, lr=0.1, optimizer="sgd")
    assert multiplier.update(3.0, 1.0) == pytest.approx(0.5 + 0.1 * 2.0)
    # A step below zero is projected back onto lambda >= 0.
    assert multiplier.update(0.0, 10.0) == 0.0


def test_lagrange_adam_first_step_has_size_lr() -> None:
    # Bias-corrected Adam moves by lr * g / (|g| + eps) on its first step, whatever the violation's scale.
    multiplier = LagrangeMultiplier(initial_value=1.0, lr=0.01, optimizer="adam")
    assert multiplier.update(1000.0, 1.0) == pytest.approx(1.01, abs=1e-9)


def test_lagrange_upper_bound() -> None:
    multiplier = LagrangeMultiplier(initial_value=0.9, lr=1.0, optimizer="sgd", max_value=1.0)
    assert multiplier.update(5.0, 0.0) == 1.0


def test_log_lagrange_sgd_step_is_multiplicative() -> None:
    multiplier = LogLagrangeMultiplier(initial_value=2.0, lr=0.1, optimizer="sgd")
    assert multiplier.update(2.0, 1.0) == pytest.approx(2.0 * math.exp(0.1))
    assert multiplier.update(0.0, 3.0) == pytest.approx(2.0 * math.exp(0.1 - 0.3))


def test_log_lagrange_stays_within_its_bounds() -> None:
    multiplier = LogLagrangeMultiplier(initial_value=1.0, lr=1.0, optimizer="sgd", min_value=0.5, max_value=2.0)
    assert multiplier.update(0.0, 100.0) == pytest.approx(0.5)
    assert multiplier.update(100.0, 0.0) == pytest.approx(2.0)


def test_pid_matches_hand_computed_steps() -> None:
    pid = PIDLagrangeMultiplier(kp=0.1, ki=0.003, kd=0.001)
    assert pid.value == 0.0
    # e = 2, I = 2, no derivative at the first update: 0.1*2 + 0.003*2.
    assert pid.update(3.0, 1.0) == pytest.approx(0.206)
    # e = 4, I = 6, cost rose by 2: 0.4 + 0.018 + 0.002.
    assert pid.update(5.0, 1.0) == pytest.approx(0.42)
    # e = -1, I = 5, cost fell (derivative clipped to 0): -0.1 + 0.015 < 0, projected to 0.
    assert pid.update(0.0, 1.0) == 0.0
    # e = -10: the integral is projected to 0 instead of going negative.
    assert pid.update(0.0, 10.0) == 0.0
    assert pid.state_dict()["integral"] == 0.0
    # e = 1, I = 1, cost rose by 1: 0.1 + 0.003 + 0.001.
    assert pid.update(1.0, 0.0) == pytest.approx(0.104)


def test_pid_derivative_is_smoothed_by_its_ema() -> None:
    pid = PIDLagrangeMultiplier(kp=0.0, ki=0.0, kd=1.0, derivative_ema=0.5)
    pid.update(0.0, 0.0)
    assert pid.update(4.0, 10.0) == pytest.approx(0.5 * 4.0)  # D = 0.5 * 0 + 0.5 * 4
    assert pid.update(4.0, 10.0) == pytest.approx(0.25 * 4.0)  # D = 0.5 * 2 + 0.5 * 0


def test_pid_derivative_ignores_a_change_of_the_cost_limit() -> None:
    pid = PIDLagrangeMultiplier(kp=0.0, ki=0.0, kd=1.0)
    pid.update(2.0, 5.0)
    assert pid.update(2.0, 1.0) == 0.0


def test_tensor_costs_are_accepted() -> None:
    from_tensor, from_float = PIDLagrangeMultiplier(), PIDLagrangeMultiplier()
    cost = torch.tensor(3.0, requires_grad=True)
    assert from_tensor.update(cost, 1.0) == from_float.update(3.0, 1.0)


def _roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("lagrange", {"optimizer": "adam", "lr": 0.05}),
        ("lagrange", {"optimizer": "sgd", "lr": 0.05}),
        ("log_lagrange", {"optimizer": "adam", "lr": 0.05}),
        ("pid", {"derivative_ema": 0.5}),
    ],
)
def test_state_round_trip_resumes_exactly(kind: str, options: dict[str, Any]) -> None:
    costs = [3.0, 5.0, 2.0, 4.0, 0.5, 6.0]
    original = make_multiplier(kind, **options)
    for cost in costs[:3]:
        original.update(cost, 1.0)
    restored = make_multiplier(kind, **options)
    restored.load_state_dict(_roundtrip(original.state_dict()))
    assert restored.value == original.value
    for cost in costs[3:]:
        assert restored.update(cost, 1.0) == original.update(cost, 1.0)


def test_adam_moments_are_part_of_the_state() -> None:
    # Restoring only lambda (a fresh optimiser) would give a different next step: the moments matter.
    original = make_multiplier("lagrange", optimizer="adam", lr=0.05)
    for cost in (3.0, 5.0, 2.0):
        original.update(cost, 1.0)
    only_lambda = make_multiplier("lagrange", optimizer="adam", lr=0.05, initial_value=original.value)
    full = make_multiplier("lagrange", optimizer="adam", lr=0.05)
    full.load_state_dict(_roundtrip(original.state_dict()))
    expected = original.update(0.0, 1.0)
    assert full.update(0.0, 1.0) == expected
    assert only_lambda.update(0.0, 1.0) != pytest.approx(expected)


def test_loading_a_state_of_another_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="'pid' multiplier"):
        LagrangeMultiplier().load_state_dict(PIDLagrangeMultiplier().state_dict())
    state = PIDLagrangeMultiplier().state_dict()
    del state["integral"]
    with pytest.raises(ValueError, match="integral"):
        PIDLagrangeMultiplier().load_state_dict(state)


def test_factory_knows_every_kind() -> None:
    assert set(MULTIPLIER_KINDS) == {"lagrange", "log_lagrange", "pid"}
    for kind, cls in MULTIPLIER_KINDS.items():
        assert type(make_multiplier(kind)) is cls


def test_factory_rejects_unknown_kinds_and_options() -> None:
    with pytest.raises(ValueError, match="Did you mean 'lagrange'"):
        make_multiplier("lagrangian")
    with pytest.raises(ValueError, match="unknown option.*'gain'.*'kp'"):
        make_multiplier("pid", gain=0.1)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("lagrange", {"lr": 0.0}, "lr"),
        ("lagrange", {"initial_value": -1.0}, "initial_value"),
        ("lagrange", {"optimizer": "rmsprop"}, "optimizer"),
        ("lagrange", {"max_value": 0.0}, "max_value"),
        ("log_lagrange", {"initial_value": 0.0}, "initial_value"),
        ("log_lagrange", {"min_value": 0.0}, "min_value"),
        ("pid", {"ki": -0.1}, "ki"),
        ("pid", {"derivative_ema": 1.0}, "derivative_ema"),
    ],
)
def test_bad_options_are_rejected(kind: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_multiplier(kind, **options)


@pytest.mark.parametrize("kind", sorted(MULTIPLIER_KINDS))
def test_bad_costs_are_rejected(kind: str) -> None:
    multiplier = make_multiplier(kind)
    with pytest.raises(ValueError, match="finite"):
        multiplier.update(math.nan, 1.0)
    with pytest.raises(ValueError, match="single number"):
        multiplier.update(torch.ones(4), 1.0)
    with pytest.raises(ValueError, match="cost_limit"):
        multiplier.update(1.0, math.inf)
