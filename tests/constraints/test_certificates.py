"""Safety certificates: bounds against hand-computed values, coverage by simulation, the safety test."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest

from saferl.constraints.certificates import (
    SafetyTestResult,
    empirical_bernstein_upper_bound,
    hoeffding_upper_bound,
    inflated_bound,
    safety_test,
    student_t_upper_bound,
    upper_confidence_bound,
)

T_095_1DOF = 6.313751514675041  # the 0.95 quantile of Student's t with 1 degree of freedom


def test_student_t_bound_by_hand() -> None:
    # mean 2, s = sqrt(2), s / sqrt(2) = 1, so U = 2 + t_{0.95, 1}.
    assert student_t_upper_bound([1.0, 3.0], 0.05) == pytest.approx(2.0 + T_095_1DOF, rel=1e-12)


def test_hoeffding_bound_by_hand() -> None:
    # n = 4, b = 20, ln(1/delta) = 2: width = 20 * sqrt(2 / 8) = 10.
    assert hoeffding_upper_bound([0.0, 10.0, 5.0, 5.0], math.exp(-2.0), 20.0) == pytest.approx(15.0)


def test_empirical_bernstein_bound_by_hand() -> None:
    # 50 zeros and 50 twos: mean 1, s^2 = 100 / 99, ln(2/delta) = 3, b = 10, n = 100.
    costs = [0.0, 2.0] * 50
    expected = 1.0 + math.sqrt(100.0 / 99.0) * math.sqrt(2.0 * 3.0 / 100.0) + 7.0 * 10.0 * 3.0 / (3.0 * 99.0)
    assert empirical_bernstein_upper_bound(costs, 2.0 * math.exp(-3.0), 10.0) == pytest.approx(expected, rel=1e-12)


def test_exact_bounds_are_capped_at_the_cost_bound() -> None:
    assert hoeffding_upper_bound([9.0, 10.0], 0.05, 10.0) == 10.0
    assert empirical_bernstein_upper_bound([9.0, 10.0], 0.05, 10.0) == 10.0


def test_empirical_bernstein_beats_hoeffding_on_low_variance_costs() -> None:
    costs = np.zeros(2000)
    costs[:10] = 100.0  # a policy that is almost always safe
    hoeffding = hoeffding_upper_bound(costs, 0.05, 100.0)
    bernstein = empirical_bernstein_upper_bound(costs, 0.05, 100.0)
    assert bernstein < 0.5 * hoeffding


def test_batched_bounds_equal_row_by_row_bounds() -> None:
    rng = np.random.default_rng(0)
    costs = rng.uniform(0.0, 5.0, size=(7, 12))
    for method in ("student_t", "hoeffding", "empirical_bernstein"):
        batched = upper_confidence_bound(costs, 0.1, method, cost_bound=5.0)
        assert isinstance(batched, np.ndarray) and batched.shape == (7,)
        rows = [upper_confidence_bound(row, 0.1, method, cost_bound=5.0) for row in costs]
        np.testing.assert_allclose(batched, rows, rtol=1e-12)
        assert all(isinstance(row, float) for row in rows)


def test_inflated_bound_by_hand() -> None:
    assert inflated_bound([1.0, 3.0], 2.0) == pytest.approx(2.0 + 2.0 * math.sqrt(2.0))
    assert inflated_bound([1.0, 3.0], 0.0) == 2.0


REPETITIONS, EPISODES, DELTA, COST_BOUND = 20_000, 30, 0.1, 50.0


def _coverage(bounds: np.ndarray, true_mean: float) -> float:
    return float(np.mean(bounds >= true_mean))


@pytest.mark.parametrize(
    ("name", "sample", "true_mean"),
    [
        ("bernoulli", lambda rng, size: COST_BOUND * rng.binomial(1, 0.2, size=size), 0.2 * COST_BOUND),
        ("rare_bernoulli", lambda rng, size: COST_BOUND * rng.binomial(1, 0.02, size=size), 0.02 * COST_BOUND),
        ("beta", lambda rng, size: COST_BOUND * rng.beta(2.0, 5.0, size=size), 2.0 / 7.0 * COST_BOUND),
    ],
)
def test_exact_bounds_cover_the_true_mean(
    name: str, sample: Callable[[np.random.Generator, tuple[int, int]], np.ndarray], true_mean: float
) -> None:
    costs = sample(np.random.default_rng(1), (REPETITIONS, EPISODES))
    for bound in (hoeffding_upper_bound, empirical_bernstein_upper_bound):
        assert _coverage(bound(costs, DELTA, COST_BOUND), true_mean) >= 1.0 - DELTA, (name, bound.__name__)
    # The simulation can tell a valid bound from an invalid one: the bare mean covers about half the time.
    assert _coverage(costs.mean(axis=-1), true_mean) < 1.0 - DELTA


def test_student_t_is_exact_for_gaussian_costs() -> None:
    costs = np.random.default_rng(2).normal(10.0, 3.0, size=(REPETITIONS, EPISODES))
    assert _coverage(student_t_upper_bound(costs, DELTA), 10.0) == pytest.approx(1.0 - DELTA, abs=0.01)


def test_student_t_is_only_approximate_for_rare_costs() -> None:
    # With p = 0.02 every cost of a run is 0 with probability 0.98^30 = 0.545; then s = 0 and U = 0 < mean.
    costs = COST_BOUND * np.random.default_rng(3).binomial(1, 0.02, size=(REPETITIONS, EPISODES))
    coverage = _coverage(student_t_upper_bound(costs, DELTA), 0.02 * COST_BOUND)
    assert coverage <= 1.0 - 0.98**EPISODES + 0.01
    assert coverage < 1.0 - DELTA


def test_safety_test_passes_and_fails() -> None:
    costs = [1.0, 3.0]
    passed = safety_test(costs, threshold=9.0, delta=0.05)
    assert passed == SafetyTestResult(
        passed=True,
        upper_bound=pytest.approx(2.0 + T_095_1DOF),
        mean=2.0,
        n=2,
        method="student_t",
        delta=0.05,
        threshold=9.0,
        cost_bound=None,
    )
    assert passed.verdict == "passed"
    failed = safety_test(costs, threshold=8.0, delta=0.05)
    assert not failed.passed and failed.verdict == "no solution found"


def test_safety_test_result_is_json_serialisable() -> None:
    result = safety_test(np.array([0.0, 10.0, 5.0, 5.0], dtype=np.float32), 16.0, math.exp(-2.0), "hoeffding", 20)
    record = json.loads(json.dumps(result.to_dict()))
    assert record == {
        "passed": True,
        "upper_bound": pytest.approx(15.0),
        "mean": 5.0,
        "n": 4,
        "method": "hoeffding",
        "delta": pytest.approx(math.exp(-2.0)),
        "threshold": 16.0,
        "cost_bound": 20.0,
        "verdict": "passed",
    }


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: student_t_upper_bound([1.0], 0.05), "at least 2"),
        (lambda: student_t_upper_bound(3.0, 0.05), "single number"),
        (lambda: student_t_upper_bound([1.0, math.nan], 0.05), "NaN"),
        (lambda: student_t_upper_bound([1.0, 2.0], 1.0), "delta"),
        (lambda: hoeffding_upper_bound([1.0, 11.0], 0.05, 10.0), r"\[0, cost_bound=10.0\]"),
        (lambda: empirical_bernstein_upper_bound([-1.0, 1.0], 0.05, 10.0), "cost_bound"),
        (lambda: upper_confidence_bound([1.0, 2.0], 0.05, "hoeffding"), "needs cost_bound"),
        (lambda: upper_confidence_bound([1.0, 2.0], 0.05, "bernstein", 10.0), "unknown certificate method"),
        (lambda: upper_confidence_bound([1.0, 20.0], 0.05, "student_t", 10.0), "cost_bound"),
        (lambda: hoeffding_upper_bound([1.0, 2.0], 0.05, 0.0), "cost_bound"),
        (lambda: inflated_bound([1.0, 2.0], -1.0), "k must"),
        (lambda: safety_test([[1.0, 2.0]], 1.0, 0.05), "1-D"),
        (lambda: safety_test([1.0, 2.0], math.nan, 0.05), "threshold"),
    ],
)
def test_bad_input_is_rejected(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
