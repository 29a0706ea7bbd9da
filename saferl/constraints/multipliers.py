r"""Lagrange multipliers for a constraint ``J_c(pi) <= d`` (measured cost below a cost limit).

A Lagrangian method solves :math:`\max_\pi J_r(\pi)` s.t. :math:`J_c(\pi) \le d` as the saddle point

.. math::

    \min_{\lambda \ge 0} \max_\pi \; L(\pi, \lambda) = J_r(\pi) - \lambda \, (J_c(\pi) - d).

The policy takes a step on :math:`L` with :math:`\lambda` held fixed (in a loss:
``-Q_r + multiplier.value * Q_c``); the multiplier then moves against :math:`L`, i.e. up when the
constraint is violated. Every multiplier here has the same small interface (:class:`Multiplier`):

* ``value``: the current :math:`\lambda \ge 0`, a float to use as a constant weight in the policy loss;
* ``update(measured_cost, cost_limit)``: one dual step from :math:`J_c - d`, returns the new value;
* ``state_dict()`` / ``load_state_dict()``: all of its state (optimiser moments, PID integrator, ...) as
  tensors and plain Python types, so a resumed run continues exactly.

:func:`make_multiplier` builds one from a config string: ``"lagrange"``, ``"log_lagrange"`` or ``"pid"``.
"""

from __future__ import annotations

import abc
import difflib
import inspect
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch

__all__ = [
    "MULTIPLIER_KINDS",
    "LagrangeMultiplier",
    "LogLagrangeMultiplier",
    "Multiplier",
    "PIDLagrangeMultiplier",
    "make_multiplier",
]

OptimizerName = Literal["sgd", "adam"]


def _as_finite_float(name: str, value: float | torch.Tensor) -> float:
    """Return ``value`` (a number or a one-element tensor) as a finite float, else raise ValueError."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{name} must be a single number; got a tensor of shape {tuple(value.shape)}: "
                "average the batch first (e.g. cost_q.mean())"
            )
        value = value.detach().item()
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}: check the cost critic for divergence")
    return value


def _check_max_value(max_value: float | None) -> float:
    """Return the upper bound on lambda (``inf`` when None) after checking it is > 0."""
    if max_value is None:
        return math.inf
    max_value = float(max_value)
    if not max_value > 0.0:
        raise ValueError(f"max_value must be > 0 or None (no upper bound), got {max_value}")
    return max_value


def _check_state_keys(state: Mapping[str, Any], kind: str, keys: tuple[str, ...]) -> None:
    """Check that a state dict was written by a multiplier of ``kind`` and holds every key in ``keys``."""
    if state.get("kind") != kind:
        raise ValueError(
            f"state dict was written by a {state.get('kind')!r} multiplier, cannot load it into {kind!r}: "
            "build the multiplier with the same kind as the checkpoint"
        )
    missing = [key for key in keys if key not in state]
    if missing:
        raise ValueError(f"{kind!r} multiplier state dict lacks keys {missing}; expected {list(keys)}")


class Multiplier(abc.ABC):
    """Common interface of the Lagrange multipliers: a non-negative ``value`` moved by ``update``."""

    kind: ClassVar[str]

    @property
    @abc.abstractmethod
    def value(self) -> float:
        """The current multiplier lambda >= 0 (a plain float: use it as a constant in the policy loss)."""

    @abc.abstractmethod
    def update(self, measured_cost: float | torch.Tensor, cost_limit: float) -> float:
        """Take one dual step from the violation ``measured_cost - cost_limit``; return the new value."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """All state as tensors and plain Python types (loadable with ``torch.load(weights_only=True)``)."""

    @abc.abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state written by :meth:`state_dict` of a multiplier of the same kind."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(value={self.value:.6g})"


class _GradientMultiplier(Multiplier):
    r"""A multiplier moved by a torch optimiser on a scalar parameter theta, then projected onto a box.

    The ascent direction is the violation :math:`J_c - d` (the optimiser minimises, so it is given
    :math:`-(J_c - d)` as the gradient). Subclasses map theta to lambda and say where the box lies.
    """

    def __init__(
        self, parameter: float, lr: float, optimizer: OptimizerName, bounds: tuple[float, float]
    ) -> None:
        lr = float(lr)
        if not (math.isfinite(lr) and lr > 0.0):
            raise ValueError(f"lr must be a finite number > 0, got {lr}")
        self._parameter = torch.tensor(parameter, dtype=torch.float64)
        self._bounds = bounds
        if optimizer == "sgd":
            self._optimizer: torch.optim.Optimizer = torch.optim.SGD([self._parameter], lr=lr)
        elif optimizer == "adam":
            self._optimizer = torch.optim.Adam([self._parameter], lr=lr)
        else:
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")

    def update(self, measured_cost: float | torch.Tensor, cost_limit: float) -> float:
        """One projected optimiser step of theta along ``measured_cost - cost_limit``; returns lambda."""
        violation = _as_finite_float("measured_cost", measured_cost) - _as_finite_float("cost_limit", cost_limit)
        self._parameter.grad = torch.tensor(-violation, dtype=torch.float64)
        self._optimizer.step()
        self._parameter.grad = None
        self._parameter.clamp_(*self._bounds)
        return self.value

    def state_dict(self) -> dict[str, Any]:
        """``{"kind", "parameter", "optimizer"}``: theta and the optimiser's state (moments, step count)."""
        return {
            "kind": self.kind,
            "parameter": self._parameter.detach().clone(),
            "optimizer": self._optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore theta and the optimiser state written by :meth:`state_dict`."""
        _check_state_keys(state, self.kind, ("parameter", "optimizer"))
        self._parameter.copy_(torch.as_tensor(state["parameter"], dtype=torch.float64))
        self._optimizer.load_state_dict(state["optimizer"])


class LagrangeMultiplier(_GradientMultiplier):
    r"""Projected gradient ascent on lambda itself.

    .. math::

        \lambda \leftarrow \Pi_{[0, \lambda_{max}]}\big(\lambda + \eta \, (J_c - d)\big)

    with ``optimizer="sgd"``; ``"adam"`` replaces the raw step :math:`\eta (J_c - d)` by Adam's normalised
    step (scale-free in the cost units, which is why it is the default).

    Args:
        initial_value: lambda at the start (>= 0).
        lr: step size eta of the dual optimiser.
        optimizer: ``"adam"`` or ``"sgd"``.
        max_value: optional upper bound on lambda (None: unbounded).
    """

    kind = "lagrange"

    def __init__(
        self,
        initial_value: float = 0.0,
        lr: float = 1e-2,
        optimizer: OptimizerName = "adam",
        max_value: float | None = None,
    ) -> None:
        upper = _check_max_value(max_value)
        initial_value = float(initial_value)
        if not 0.0 <= initial_value <= upper:
            raise ValueError(f"initial_value must lie in [0, max_value={upper}], got {initial_value}")
        super().__init__(initial_value, lr, optimizer, (0.0, upper))

    @property
    def value(self) -> float:
        """lambda = theta."""
        return float(self._parameter.item())


class LogLagrangeMultiplier(_GradientMultiplier):
    r"""Gradient ascent on :math:`\nu = \log \lambda`, so that lambda stays strictly positive.

    The step uses the violation itself as the gradient in :math:`\nu` (as SAC does for its temperature):

    .. math::

        \nu \leftarrow \Pi_{[\log \lambda_{min}, \log \lambda_{max}]}\big(\nu + \eta \, (J_c - d)\big),
        \qquad \lambda = e^{\nu},

    i.e. with ``optimizer="sgd"`` a multiplicative update :math:`\lambda \leftarrow \lambda e^{\eta (J_c - d)}`.
    Its fixed points are those of :class:`LagrangeMultiplier` (zero violation), but the step is relative to
    lambda, so it moves fast across orders of magnitude. ``min_value`` keeps lambda from drifting towards 0
    while the constraint is slack, from where it would need many steps to come back.

    Args:
        initial_value: lambda at the start (> 0).
        lr: step size eta in log space.
        optimizer: ``"adam"`` or ``"sgd"``.
        min_value: lower bound on lambda (> 0).
        max_value: optional upper bound on lambda (None: unbounded).
    """

    kind = "log_lagrange"

    def __init__(
        self,
        initial_value: float = 1.0,
        lr: float = 1e-2,
        optimizer: OptimizerName = "adam",
        min_value: float = 1e-6,
        max_value: float | None = None,
    ) -> None:
        upper = _check_max_value(max_value)
        min_value = float(min_value)
        if not 0.0 < min_value < upper:
            raise ValueError(f"min_value must lie in (0, max_value={upper}), got {min_value}")
        initial_value = float(initial_value)
        if not min_value <= initial_value <= upper:
            raise ValueError(
                f"initial_value must lie in [min_value={min_value}, max_value={upper}] "
                f"(a log-space multiplier cannot be 0), got {initial_value}"
            )
        super().__init__(math.log(initial_value), lr, optimizer, (math.log(min_value), math.log(upper)))

    @property
    def value(self) -> float:
        """lambda = exp(nu)."""
        return math.exp(self._parameter.item())


class PIDLagrangeMultiplier(Multiplier):
    r"""PID Lagrangian (Stooke, Achiam and Abbeel, 2020), as used by OSRL's BEAR-Lag.

    With :math:`e_k = J_{c,k} - d` the violation at update k:

    .. math::

        I_k &= \max(0, I_{k-1} + e_k) \\
        D_k &= \beta D_{k-1} + (1 - \beta) \max(0, J_{c,k} - J_{c,k-1}) \\
        \lambda_k &= \min\big(\lambda_{max}, \max(0, K_P e_k + K_I I_k + K_D D_k)\big)

    The integral term alone is plain gradient ascent (step :math:`K_I`); the proportional term reacts at
    once to a violation and the derivative term to a rising cost, which damps the oscillation of
    gradient ascent. The derivative is taken on the measured cost, not the error, so that a change of the
    cost limit (annealing) does not kick it; it is 0 at the first update. ``beta = 0`` (the default) is
    the unsmoothed derivative of OSRL.

    Args:
        kp: proportional gain K_P (OSRL: 0.1).
        ki: integral gain K_I (OSRL: 0.003).
        kd: derivative gain K_D (OSRL: 0.001).
        derivative_ema: smoothing beta of the derivative term, in [0, 1).
        max_value: optional upper bound on lambda (None: unbounded).
    """

    kind = "pid"

    def __init__(
        self,
        kp: float = 0.1,
        ki: float = 0.003,
        kd: float = 0.001,
        derivative_ema: float = 0.0,
        max_value: float | None = None,
    ) -> None:
        gains = {"kp": float(kp), "ki": float(ki), "kd": float(kd)}
        for name, gain in gains.items():
            if not (math.isfinite(gain) and gain >= 0.0):
                raise ValueError(f"{name} must be a finite gain >= 0, got {gain}")
        derivative_ema = float(derivative_ema)
        if not 0.0 <= derivative_ema < 1.0:
            raise ValueError(f"derivative_ema must lie in [0, 1) (0: no smoothing), got {derivative_ema}")
        self.kp, self.ki, self.kd = gains["kp"], gains["ki"], gains["kd"]
        self.derivative_ema = derivative_ema
        self._max_value = _check_max_value(max_value)
        self._integral = 0.0
        self._smoothed_derivative = 0.0
        self._previous_cost = 0.0
        self._updates = 0
        self._value = 0.0

    @property
    def value(self) -> float:
        """lambda_k of the last update (0 before the first)."""
        return self._value

    def update(self, measured_cost: float | torch.Tensor, cost_limit: float) -> float:
        """One PID step from the measured cost J_c and the limit d; returns the new lambda."""
        cost = _as_finite_float("measured_cost", measured_cost)
        error = cost - _as_finite_float("cost_limit", cost_limit)
        self._integral = max(0.0, self._integral + error)
        rise = max(0.0, cost - self._previous_cost) if self._updates > 0 else 0.0
        self._smoothed_derivative = (
            self.derivative_ema * self._smoothed_derivative + (1.0 - self.derivative_ema) * rise
        )
        self._previous_cost = cost
        self._updates += 1
        raw = self.kp * error + self.ki * self._integral + self.kd * self._smoothed_derivative
        self._value = min(self._max_value, max(0.0, raw))
        return self._value

    def state_dict(self) -> dict[str, Any]:
        """``{"kind", "integral", "smoothed_derivative", "previous_cost", "updates", "value"}`` as plain numbers."""
        return {
            "kind": self.kind,
            "integral": self._integral,
            "smoothed_derivative": self._smoothed_derivative,
            "previous_cost": self._previous_cost,
            "updates": self._updates,
            "value": self._value,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the integrator, the derivative filter, the previous cost, the counter and lambda."""
        keys = ("integral", "smoothed_derivative", "previous_cost", "updates", "value")
        _check_state_keys(state, self.kind, keys)
        self._integral = float(state["integral"])
        self._smoothed_derivative = float(state["smoothed_derivative"])
        self._previous_cost = float(state["previous_cost"])
        self._updates = int(state["updates"])
        self._value = float(state["value"])


MULTIPLIER_KINDS: dict[str, type[Multiplier]] = {
    cls.kind: cls for cls in (LagrangeMultiplier, LogLagrangeMultiplier, PIDLagrangeMultiplier)
}


def make_multiplier(kind: str, **options: Any) -> Multiplier:
    """Build a multiplier from a config string and its options.

    Args:
        kind: one of ``"lagrange"``, ``"log_lagrange"``, ``"pid"`` (the keys of :data:`MULTIPLIER_KINDS`).
        **options: the keyword arguments of that class (e.g. ``lr=1e-3`` or ``kp=0.05``).

    Returns:
        A fresh :class:`Multiplier`.

    Example:
        >>> make_multiplier("pid", kp=0.1, ki=0.003, kd=0.001).value
        0.0
    """
    if kind not in MULTIPLIER_KINDS:
        close = difflib.get_close_matches(str(kind), MULTIPLIER_KINDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown multiplier kind {kind!r}; choose one of {sorted(MULTIPLIER_KINDS)}.{hint}")
    cls = MULTIPLIER_KINDS[kind]
    valid = list(inspect.signature(cls).parameters)
    unknown = [name for name in options if name not in valid]
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for multiplier {kind!r}; valid options: {valid}")
    return cls(**options)
