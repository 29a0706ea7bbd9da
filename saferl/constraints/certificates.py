r"""High-confidence safety certificates: upper confidence bounds on the expected episode cost.

Given the costs :math:`C_1, \dots, C_n` of n independent evaluation episodes of one policy, a
:math:`(1-\delta)` upper confidence bound :math:`U` satisfies :math:`P(\mathbb{E}[C] \le U) \ge 1 - \delta`.
With :math:`\bar C` the mean and :math:`s` the sample standard deviation (``ddof=1``):

* Student-t (HC-RLHF): :math:`U = \bar C + t_{1-\delta,\,n-1}\, s / \sqrt n`. Exact when the costs are
  Gaussian, approximate (central limit theorem) otherwise.
* Hoeffding, costs in :math:`[0, b]`: :math:`U = \bar C + b \sqrt{\ln(1/\delta) / (2n)}`. Exact for any
  bounded distribution, but its width ignores the variance.
* Empirical Bernstein (Maurer and Pontil 2009, Theorem 4), costs in :math:`[0, b]`:
  :math:`U = \bar C + s\sqrt{2\ln(2/\delta)/n} + 7 b \ln(2/\delta) / (3(n-1))`. Exact, and much tighter
  than Hoeffding when the costs vary little (e.g. a policy that is almost always safe).

Both exact bounds are capped at b, since :math:`\mathbb{E}[C] \le b` holds anyway.

:func:`safety_test` is the HC-RLHF test: a candidate policy passes if :math:`U \le` threshold on costs
from held-out episodes (never those used to select or train it); otherwise the answer is "no solution
found" and the candidate must not be returned. :func:`inflated_bound` (:math:`\bar C + k s`) is the
pessimistic estimate to use *during* training so that the final test is likely to pass.

The bound functions accept a 1-D array of n costs (returning a float) or an array of shape (..., n)
(one bound per row, returned as an array), so that many samples can be bounded at once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

__all__ = [
    "CERTIFICATE_METHODS",
    "NO_SOLUTION_FOUND",
    "SafetyTestResult",
    "empirical_bernstein_upper_bound",
    "hoeffding_upper_bound",
    "inflated_bound",
    "safety_test",
    "student_t_upper_bound",
    "upper_confidence_bound",
]

CertificateMethod = Literal["student_t", "hoeffding", "empirical_bernstein"]
CERTIFICATE_METHODS: tuple[str, ...] = ("student_t", "hoeffding", "empirical_bernstein")
NO_SOLUTION_FOUND = "no solution found"


def _check_delta(delta: float) -> float:
    """Return delta as a float after checking 0 < delta < 1."""
    delta = float(delta)
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must lie in (0, 1) (the allowed failure probability, e.g. 0.05), got {delta}")
    return delta


def _check_cost_bound(cost_bound: float | None) -> float:
    """Return the cost bound b as a float after checking that it was given, finite and > 0."""
    if cost_bound is None:
        raise ValueError(
            "this bound needs cost_bound, the largest possible episode cost b (costs must lie in [0, b]); "
            "e.g. episode_len * max per-step cost"
        )
    cost_bound = float(cost_bound)
    if not (math.isfinite(cost_bound) and cost_bound > 0.0):
        raise ValueError(f"cost_bound must be a finite number > 0, got {cost_bound}")
    return cost_bound


def _as_costs(costs: npt.ArrayLike, cost_bound: float | None = None) -> np.ndarray:
    """Return costs as a float64 array of shape (..., n) after checking n >= 2, finiteness and the bound."""
    array = np.asarray(costs, dtype=np.float64)
    if array.ndim == 0:
        raise ValueError("costs must be a sequence of episode costs, got a single number")
    if array.shape[-1] < 2:
        raise ValueError(
            f"need at least 2 episode costs to bound their mean (a sample variance needs n >= 2), "
            f"got n = {array.shape[-1]}: evaluate more episodes"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("costs contain NaN or infinity: check the evaluation episodes")
    if cost_bound is not None:
        bound = _check_cost_bound(cost_bound)
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > bound:
            raise ValueError(
                f"costs must lie in [0, cost_bound={bound}], found values in [{low}, {high}]: "
                "raise cost_bound to the largest possible episode cost (the guarantee needs a true bound)"
            )
    return array


def _as_result(values: np.ndarray) -> float | np.ndarray:
    """A 0-d result becomes a float; batched results stay an array."""
    return float(values) if values.ndim == 0 else values


def student_t_upper_bound(costs: npt.ArrayLike, delta: float) -> float | np.ndarray:
    r"""Student-t upper bound :math:`\bar C + t_{1-\delta,\,n-1}\, s / \sqrt n` on the expected cost.

    Args:
        costs: n >= 2 episode costs, shape (n,) or (..., n).
        delta: allowed failure probability, in (0, 1).
    """
    delta = _check_delta(delta)
    array = _as_costs(costs)
    n = array.shape[-1]
    quantile = stats.t.ppf(1.0 - delta, df=n - 1)
    return _as_result(array.mean(axis=-1) + quantile * array.std(axis=-1, ddof=1) / math.sqrt(n))


def hoeffding_upper_bound(costs: npt.ArrayLike, delta: float, cost_bound: float) -> float | np.ndarray:
    r"""Hoeffding upper bound :math:`\min(b, \bar C + b \sqrt{\ln(1/\delta) / (2n)})` for costs in [0, b].

    Args:
        costs: n >= 2 episode costs in [0, cost_bound], shape (n,) or (..., n).
        delta: allowed failure probability, in (0, 1).
        cost_bound: b, the largest possible episode cost.
    """
    delta = _check_delta(delta)
    array = _as_costs(costs, cost_bound)
    bound = float(cost_bound)
    width = bound * math.sqrt(math.log(1.0 / delta) / (2.0 * array.shape[-1]))
    return _as_result(np.minimum(bound, array.mean(axis=-1) + width))


def empirical_bernstein_upper_bound(
    costs: npt.ArrayLike, delta: float, cost_bound: float
) -> float | np.ndarray:
    r"""Empirical-Bernstein upper bound (Maurer and Pontil 2009, Thm 4) for costs in [0, b].

    .. math::

        U = \min\Big(b,\; \bar C + s \sqrt{\frac{2 \ln(2/\delta)}{n}} + \frac{7\, b \ln(2/\delta)}{3 (n - 1)}\Big)

    (the theorem for [0, 1] variables applied to :math:`C / b`).

    Args:
        costs: n >= 2 episode costs in [0, cost_bound], shape (n,) or (..., n).
        delta: allowed failure probability, in (0, 1).
        cost_bound: b, the largest possible episode cost.
    """
    delta = _check_delta(delta)
    array = _as_costs(costs, cost_bound)
    bound = float(cost_bound)
    n = array.shape[-1]
    log_term = math.log(2.0 / delta)
    width = array.std(axis=-1, ddof=1) * math.sqrt(2.0 * log_term / n) + 7.0 * bound * log_term / (3.0 * (n - 1))
    return _as_result(np.minimum(bound, array.mean(axis=-1) + width))


def upper_confidence_bound(
    costs: npt.ArrayLike, delta: float, method: CertificateMethod, cost_bound: float | None = None
) -> float | np.ndarray:
    """The (1 - delta) upper confidence bound of ``method`` (one of :data:`CERTIFICATE_METHODS`).

    ``cost_bound`` is required by ``"hoeffding"`` and ``"empirical_bernstein"``; with ``"student_t"`` it is
    optional and only checked against the costs.
    """
    if method == "student_t":
        if cost_bound is not None:
            _as_costs(costs, cost_bound)
        return student_t_upper_bound(costs, delta)
    if method == "hoeffding":
        return hoeffding_upper_bound(costs, delta, _check_cost_bound(cost_bound))
    if method == "empirical_bernstein":
        return empirical_bernstein_upper_bound(costs, delta, _check_cost_bound(cost_bound))
    raise ValueError(f"unknown certificate method {method!r}; choose one of {list(CERTIFICATE_METHODS)}")


def inflated_bound(costs: npt.ArrayLike, k: float) -> float | np.ndarray:
    r"""Pessimistic training-time estimate :math:`\bar C + k\, s` of the expected cost (HC-RLHF).

    Used to select candidates on the training split: a candidate whose inflated bound is below the
    threshold is likely to pass :func:`safety_test` on held-out data. A common heuristic (Seldonian
    candidate selection) doubles the final test's width: :math:`k = 2\, t_{1-\delta,\,m-1} / \sqrt m`
    for m held-out episodes.

    Args:
        costs: n >= 2 episode costs, shape (n,) or (..., n).
        k: inflation factor on the sample standard deviation, >= 0.
    """
    k = float(k)
    if not (math.isfinite(k) and k >= 0.0):
        raise ValueError(f"k must be a finite number >= 0 (how many standard deviations to add), got {k}")
    array = _as_costs(costs)
    return _as_result(array.mean(axis=-1) + k * array.std(axis=-1, ddof=1))


@dataclass(frozen=True)
class SafetyTestResult:
    """Outcome of :func:`safety_test`; every field is a plain Python value (JSON-serialisable).

    Attributes:
        passed: True if ``upper_bound <= threshold``. False means "no solution found": the candidate
            is not certified safe and must not be returned as the answer.
        upper_bound: the (1 - delta) upper confidence bound on the expected episode cost.
        mean: the mean episode cost.
        n: the number of episodes.
        method: the bound used (one of :data:`CERTIFICATE_METHODS`).
        delta: the allowed failure probability.
        threshold: the episodic cost threshold tau.
        cost_bound: the bound b on episode costs, or None (Student-t without a bound).
    """

    passed: bool
    upper_bound: float
    mean: float
    n: int
    method: str
    delta: float
    threshold: float
    cost_bound: float | None

    @property
    def verdict(self) -> str:
        """``"passed"``, or ``"no solution found"`` when the test failed."""
        return "passed" if self.passed else NO_SOLUTION_FOUND

    def to_dict(self) -> dict[str, Any]:
        """The fields plus ``verdict``, as a dict of plain Python values (for JSON reports)."""
        return {**asdict(self), "verdict": self.verdict}


def safety_test(
    costs: npt.ArrayLike,
    threshold: float,
    delta: float,
    method: CertificateMethod = "student_t",
    cost_bound: float | None = None,
) -> SafetyTestResult:
    r"""HC-RLHF safety test: pass iff the (1 - delta) upper bound on :math:`\mathbb{E}[C]` is <= threshold.

    If the test passes, :math:`\mathbb{E}[C] \le` threshold holds with probability >= 1 - delta (exactly
    for Hoeffding and empirical Bernstein, approximately for Student-t). The costs must come from
    held-out episodes, and the test must be run once per candidate: testing many candidates on the same
    episodes and keeping one that passes voids the guarantee.

    Args:
        costs: 1-D array of n >= 2 undiscounted episode costs of the candidate policy.
        threshold: tau, the episodic cost limit to certify.
        delta: allowed failure probability, in (0, 1).
        method: ``"student_t"``, ``"hoeffding"`` or ``"empirical_bernstein"``.
        cost_bound: b, the largest possible episode cost (needed by the two exact bounds).

    Returns:
        A :class:`SafetyTestResult`; ``passed=False`` means "no solution found".
    """
    array = np.asarray(costs, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"safety_test takes a 1-D array of episode costs, got shape {array.shape}")
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    upper = float(upper_confidence_bound(array, delta, method, cost_bound))
    return SafetyTestResult(
        passed=upper <= threshold,
        upper_bound=upper,
        mean=float(array.mean()),
        n=int(array.shape[0]),
        method=method,
        delta=float(delta),
        threshold=threshold,
        cost_bound=None if cost_bound is None else float(cost_bound),
    )
