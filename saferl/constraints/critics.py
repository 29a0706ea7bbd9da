"""Critic ensembles, expectile regression and the IQL helpers shared by reward and cost critics.

Notation: ``Q_i(s, a)`` is member ``i`` of an ensemble of ``n`` action-value networks, ``V(s)`` a state
value network, ``gamma`` the discount, ``d`` the 0/1 *termination* flag of a transition. Time-limit
truncations (``timeouts``) are not terminations: the episode was cut, the state still has a future,
so every target here bootstraps through them; only ``terminals`` stop the bootstrap.

Sign convention of the expectile losses: ``diff = target - prediction`` (for IQL,
``diff = Q(s, a) - V(s)``). With ``tau > 0.5`` the *upper* expectile pulls the prediction towards the
largest targets (``V(s) -> max_a Q(s, a)`` over in-data actions as ``tau -> 1``); the *reversed*
expectile weights the other side and pulls it towards the smallest (``V(s) -> min_a Q(s, a)``).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from saferl.networks.mlp import MLP, EnsembleMLP

Reduction = Literal["min", "max", "mean", "quantile"]


class CriticEnsemble(nn.Module):
    """``n`` action-value networks ``Q_i(s, a)``, i = 1..n, evaluated in one batched pass.

    Each member is an MLP on the concatenation ``[s, a]`` with one output. Used for reward critics
    (reduce with ``"min"``: clipped double Q) and cost or feasibility critics (reduce with ``"max"``:
    the pessimistic side of a cost).

    ``forward(obs, act)`` maps ``(B, obs_dim)``, ``(B, act_dim)`` to ``(n, B)``.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        n: int = 2,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.n = n
        self.net = EnsembleMLP(n, obs_dim + act_dim, 1, hidden, activation, layer_norm)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Every member's ``Q_i(s, a)``, shape ``(n, B)``."""
        if obs.dim() != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"observations must have shape (B, {self.obs_dim}), got {tuple(obs.shape)}")
        if act.dim() != 2 or act.shape != (obs.shape[0], self.act_dim):
            raise ValueError(f"actions must have shape ({obs.shape[0]}, {self.act_dim}), got {tuple(act.shape)}")
        return self.net(torch.cat([obs, act], dim=-1)).squeeze(-1)


class ValueNetwork(nn.Module):
    """A state value network ``V(s)``: ``(B, obs_dim) -> (B,)``."""

    def __init__(
        self,
        obs_dim: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.net = MLP(obs_dim, 1, hidden, activation, layer_norm)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``V(s)`` for each row of ``obs``, shape ``(B,)``."""
        if obs.dim() != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"observations must have shape (B, {self.obs_dim}), got {tuple(obs.shape)}")
        return self.net(obs).squeeze(-1)


def reduce_ensemble(values: torch.Tensor, how: Reduction, q: float | None = None) -> torch.Tensor:
    """Reduce ensemble values ``(n, B)`` over the members (dim 0) to ``(B,)``.

    ``"min"``: ``min_i Q_i`` (pessimistic for rewards), ``"max"``: ``max_i Q_i`` (pessimistic for
    costs), ``"mean"``: ``1/n sum_i Q_i``, ``"quantile"``: the ``q``-quantile over members, linearly
    interpolated (``q = 0`` is the min, ``q = 1`` the max).
    """
    if values.dim() != 2:
        raise ValueError(f"ensemble values must have shape (n_members, B), got {tuple(values.shape)}")
    if how == "quantile":
        if q is None or not 0.0 <= q <= 1.0:
            raise ValueError(f"reduce_ensemble(how='quantile') needs q in [0, 1], got q={q}")
        return torch.quantile(values, q, dim=0)
    if q is not None:
        raise ValueError(f"q is only used with how='quantile', got how={how!r} and q={q}")
    if how == "min":
        return values.min(dim=0).values
    if how == "max":
        return values.max(dim=0).values
    if how == "mean":
        return values.mean(dim=0)
    raise ValueError(f"unknown reduction {how!r}; choose one of 'min', 'max', 'mean', 'quantile'")


def _check_tau(tau: float) -> None:
    """Reject expectiles outside the open unit interval."""
    if not 0.0 < tau < 1.0:
        raise ValueError(f"the expectile tau must be in (0, 1), got {tau}")


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean asymmetric squared loss ``|tau - 1(diff < 0)| * diff^2``, with ``diff = target - prediction``.

    Minimising ``E[L]`` over a constant prediction gives the ``tau``-expectile of the targets: targets
    above the prediction weigh ``tau``, targets below it ``1 - tau``. ``tau = 0.5`` is half the MSE.
    """
    _check_tau(tau)
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return (weight * diff.square()).mean()


def reversed_expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """FISOR's reversed expectile: weight ``tau`` where the prediction is above the target.

    With ``diff = target - prediction`` (for FISOR's ``V_h``: ``diff = Q_h(s, a) - V_h(s)``) the weight is
    ``tau`` where ``diff < 0`` (``V_h > Q_h``) and ``1 - tau`` elsewhere, i.e. ``expectile_loss(diff,
    1 - tau)``. With ``tau = 0.9`` the prediction approaches the *minimum* over in-data actions: the
    safest constraint value the data shows for the state.
    """
    _check_tau(tau)
    return expectile_loss(diff, 1.0 - tau)


def iql_value_loss(q_target: torch.Tensor, v: torch.Tensor, tau: float) -> torch.Tensor:
    """IQL's value loss ``E[|tau - 1(Q - V < 0)| (Q(s, a) - V(s))^2]``.

    ``q_target`` (``(B,)``, usually the min over a target critic ensemble) is detached: the value fit
    must not move the critics. With ``tau = 0.7..0.9``, ``V(s)`` approximates the upper range of
    ``Q(s, a)`` over in-data actions (an in-sample maximum).
    """
    if q_target.shape != v.shape:
        raise ValueError(f"q_target and v must have the same shape, got {tuple(q_target.shape)} and {tuple(v.shape)}")
    return expectile_loss(q_target.detach() - v, tau)


def iql_q_target(r: torch.Tensor, gamma: float, v_next: torch.Tensor, terminals: torch.Tensor) -> torch.Tensor:
    """One-step TD target ``r + gamma * (1 - terminals) * V(s')``, detached.

    ``terminals`` are true terminations only (0/1 floats). Pass ``batch.terminals``, never
    ``terminals + timeouts``: after a time-limit truncation the state still has a future and the
    target keeps bootstrapping. The same target serves reward critics (``r`` = reward) and
    discounted cost critics (``r`` = cost).
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if not (r.shape == v_next.shape == terminals.shape):
        raise ValueError(
            "r, v_next and terminals must have the same shape (B,), got "
            f"{tuple(r.shape)}, {tuple(v_next.shape)} and {tuple(terminals.shape)}"
        )
    return (r + gamma * (1.0 - terminals) * v_next).detach()


def ensemble_mse_loss(q_values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``sum_i mean_B (Q_i(s, a) - y)^2`` for ensemble values ``(n, B)`` and a shared target ``y`` ``(B,)``.

    Summing over members gives each member the gradient of its own MSE, whatever ``n``.
    The target is detached.
    """
    if q_values.dim() != 2 or q_values.shape[1:] != target.shape:
        raise ValueError(
            f"q_values must have shape (n_members, B) and target (B,), got {tuple(q_values.shape)} "
            f"and {tuple(target.shape)}"
        )
    return (q_values - target.detach()).square().mean(dim=1).sum()


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Move ``target``'s parameters towards ``source``'s: ``theta' <- (1 - tau) theta' + tau theta``.

    ``tau = 1`` copies ``source``; ``tau = 0`` leaves ``target`` unchanged. Both modules must have
    the same parameter shapes in the same order (e.g. ``target = copy.deepcopy(source)``).
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"polyak tau must be in [0, 1], got {tau}")
    target_params = list(target.parameters())
    source_params = list(source.parameters())
    if len(target_params) != len(source_params) or any(
        t.shape != s.shape for t, s in zip(target_params, source_params)
    ):
        raise ValueError(
            "target and source must have the same parameter shapes; build target with copy.deepcopy(source)"
        )
    for t, s in zip(target_params, source_params):
        t.lerp_(s, tau)


__all__ = [
    "CriticEnsemble",
    "ValueNetwork",
    "reduce_ensemble",
    "expectile_loss",
    "reversed_expectile_loss",
    "iql_value_loss",
    "iql_q_target",
    "ensemble_mse_loss",
    "polyak_update",
]
