r"""Cost limits: from an episodic cost budget to the threshold a cost critic is compared with.

Two quantities name the same safety requirement in two units:

* ``episodic_cost_limit`` (kappa): the largest acceptable *undiscounted* sum of per-step costs over one
  episode of ``episode_len`` (T) steps. This is what DSRL reports and normalises by
  (``norm_cost = C / kappa``).
* ``q_threshold``: the largest acceptable *discounted* cost value
  :math:`Q_c(s, a) = \mathbb{E}[\sum_{t \ge 0} \gamma^t c_t]`, the quantity a cost critic learns with a
  TD target. Q-style methods (BCQ-Lag, BEAR-Lag, CPQ, FISOR's "qc" mode) compare their critic with it.

The conversion assumes the budget is spent evenly, ``kappa / T`` per step, over the T steps of the episode:

.. math::

    q\_threshold = \sum_{t=0}^{T-1} \gamma^t \frac{\kappa}{T} = \kappa \, \frac{1 - \gamma^T}{(1 - \gamma)\, T}.

It is exact for a constant per-step cost and an approximation otherwise (cost paid early weighs more than
cost paid late). At ``gamma = 1`` the factor is 1 and the two thresholds coincide.
"""

from __future__ import annotations

import math

__all__ = ["episodic_cost_limit_from_q_threshold", "per_step_cost_threshold"]


def _discounted_budget_factor(gamma: float, episode_len: int) -> float:
    r"""Return :math:`(1 - \gamma^T) / ((1 - \gamma) T)`, the mean discount weight of T steps.

    Validates ``gamma`` in [0, 1] and ``episode_len`` a positive integer; the ``gamma = 1`` limit is 1.
    """
    if isinstance(episode_len, bool) or not isinstance(episode_len, int) or episode_len < 1:
        raise ValueError(
            f"episode_len must be a positive int (the number of steps T of one episode), got {episode_len!r}"
        )
    gamma = float(gamma)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1] (a discount factor), got {gamma}")
    if gamma == 1.0:
        return 1.0
    return (1.0 - gamma**episode_len) / ((1.0 - gamma) * episode_len)


def _check_nonnegative_finite(name: str, value: float) -> float:
    """Return ``value`` as a float after checking that it is finite and >= 0."""
    value = float(value)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{name} must be a finite number >= 0 (costs are non-negative), got {value}")
    return value


def per_step_cost_threshold(episodic_cost_limit: float, gamma: float, episode_len: int) -> float:
    r"""Threshold on the discounted cost value Q_c equivalent to an episodic cost limit.

    .. math::

        q\_threshold = \kappa \, \frac{1 - \gamma^T}{(1 - \gamma)\, T}

    i.e. the discounted sum of the per-step budget ``kappa / T`` over T steps (see the module docstring).
    The name follows OSRL ("per-step" cost budget, discounted); the result is in the units of Q_c.

    Args:
        episodic_cost_limit: kappa, the undiscounted cost allowed per episode (>= 0).
        gamma: discount factor of the cost critic, in [0, 1].
        episode_len: T, the number of steps of one episode (the task's time limit).

    Returns:
        The threshold for Q_c, a float in [kappa / T, kappa].

    Example:
        >>> round(per_step_cost_threshold(10.0, 0.99, 300), 4)
        3.1699
    """
    kappa = _check_nonnegative_finite("episodic_cost_limit", episodic_cost_limit)
    return kappa * _discounted_budget_factor(gamma, episode_len)


def episodic_cost_limit_from_q_threshold(q_threshold: float, gamma: float, episode_len: int) -> float:
    r"""Inverse of :func:`per_step_cost_threshold`: the episodic cost limit that a Q_c threshold stands for.

    .. math::

        \kappa = q\_threshold \, \frac{(1 - \gamma)\, T}{1 - \gamma^T}

    Args:
        q_threshold: threshold on the discounted cost value Q_c (>= 0).
        gamma: discount factor of the cost critic, in [0, 1].
        episode_len: T, the number of steps of one episode.

    Returns:
        kappa, the undiscounted cost allowed per episode.
    """
    threshold = _check_nonnegative_finite("q_threshold", q_threshold)
    return threshold / _discounted_budget_factor(gamma, episode_len)
