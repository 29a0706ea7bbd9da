r"""Feasibility critics: which states can still avoid constraint violations, and which actions keep them so.

**Hamilton-Jacobi reachability (FISOR, as implemented by its authors).** Each transition carries a
constraint signal ``h = cost_scale`` if its cost is positive, else ``-1``. The feasibility values obey the
discounted reachability Bellman equation

.. math::

    Q_h(s, a) = (1 - \gamma)\, h(s) + \gamma \max\big(h(s),\ V_h(s')\big), \qquad
    Q_h(s, a) = h(s) \text{ at terminals}, \qquad V_h(s) = \min_a Q_h(s, a),

a fixed point of a ``gamma``-contraction. Without discounting, ``V_h(s) = min_pi max_t h(s_t)``: the worst
constraint value along the best trajectory, positive iff a violation is unavoidable. Discounting limits
the look-ahead: a state ``k`` safe steps before an unavoidable, absorbing violation has
``V_h = -1 + (cost_scale + 1) gamma^k``, positive only for ``k < ln(cost_scale + 1) / ln(1 / gamma)``
(see ``docs/constraints/feasibility.md``). Offline, the minimum over actions is over in-data actions: ``V_h`` is fitted to the
target-ensemble maximum ``max_i Q'_{h,i}(s, a)`` with the *reversed* expectile (weight ``tau`` where
``V_h > Q_h``), which tends to that minimum as ``tau -> 1``; for ``tau < 1`` it sits above the minimum
where unsafe actions are in the data (``tabular_hj_values(..., expectile=tau)`` computes by how much).

* feasible state: ``V_h(s) <= threshold`` (0 by default),
* feasible action: ``Q_h(s, a) <= threshold``.

**Discounted cost (the "qc" alternative).** ``Q_c(s, a) = c + gamma (1 - d) V_c(s')`` with the same
pessimistic ensemble maximum and reversed expectile, so ``V_c(s)`` is the least discounted cost the
data shows from ``s``; feasible where it is at most a Q-scale threshold, usually
:func:`saferl.constraints.cost_limits.per_step_cost_threshold` of the episodic cost limit.

Both targets stop bootstrapping at true terminations (``terminals``) only; time-limit truncations
(``timeouts``) keep their future.
"""

from __future__ import annotations

import copy
from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from saferl.constraints.critics import (
    CriticEnsemble,
    ValueNetwork,
    ensemble_mse_loss,
    iql_q_target,
    polyak_update,
    reduce_ensemble,
    reversed_expectile_loss,
)
from saferl.datasets.types import Batch

FeasibilityMode = Literal["hj", "discounted_cost"]


def constraint_signal(costs: torch.Tensor, cost_scale: float = 25.0) -> torch.Tensor:
    """FISOR's constraint signal ``h = cost_scale`` where ``cost > 0``, else ``-1``.

    ``cost_scale`` must be positive so that violations and safe steps have opposite signs.
    """
    if not cost_scale > 0:
        raise ValueError(f"cost_scale must be > 0 (violations must have h > 0), got {cost_scale}")
    return torch.where(costs > 0, torch.full_like(costs, cost_scale), torch.full_like(costs, -1.0))


def hj_q_target(h: torch.Tensor, v_next: torch.Tensor, gamma: float, terminals: torch.Tensor) -> torch.Tensor:
    """Discounted HJ reachability target, detached.

    ``y = (1 - gamma) h + gamma max(h, V_h(s'))`` for non-terminal transitions and ``y = h`` at true
    terminations (``terminals = 1``). Time-limit truncations are not terminations: pass
    ``batch.terminals`` only.
    """
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1) for the discounted HJ backup to contract, got {gamma}")
    if not (h.shape == v_next.shape == terminals.shape):
        raise ValueError(
            "h, v_next and terminals must have the same shape (B,), got "
            f"{tuple(h.shape)}, {tuple(v_next.shape)} and {tuple(terminals.shape)}"
        )
    backup = (1.0 - gamma) * h + gamma * torch.maximum(h, v_next)
    return torch.where(terminals > 0, h, backup).detach()


def tabular_hj_values(
    next_states: np.ndarray,
    h: np.ndarray,
    gamma: float,
    terminals: np.ndarray | None = None,
    expectile: float | None = None,
    tol: float = 1e-10,
    max_iterations: int = 100_000,
) -> tuple[np.ndarray, np.ndarray]:
    """HJ value iteration on a finite deterministic MDP; returns ``(Q_h (S, A), V_h (S,))``.

    ``next_states[s, a]`` is the successor index of action ``a`` in state ``s``, ``h[s]`` the constraint
    signal of state ``s``, ``terminals[s, a]`` whether that transition terminates. Iterates
    ``Q <- hj_q_target(h, V(s'), gamma, terminals)`` (a ``gamma``-contraction in the max norm) until
    successive iterates differ by less than ``tol``, with

    * ``expectile=None``: ``V(s) = min_a Q(s, a)``, the exact HJ value;
    * ``expectile=tau``: ``V(s)`` = the reversed ``tau``-expectile of ``Q(s, .)`` over the actions, each
      weighted equally: the fixed point that :class:`FeasibilityCritic` reaches on a dataset holding
      every action once, which shows the expectile's bias in closed form.
    """
    next_states = np.asarray(next_states)
    h = np.asarray(h, dtype=np.float64)
    if next_states.ndim != 2 or h.shape != (next_states.shape[0],):
        raise ValueError(f"next_states must be (S, A) and h (S,), got {next_states.shape} and {h.shape}")
    if next_states.min() < 0 or next_states.max() >= next_states.shape[0]:
        raise ValueError(f"next_states must hold state indices in [0, {next_states.shape[0]})")
    if terminals is None:
        terminals = np.zeros(next_states.shape, dtype=bool)
    if terminals.shape != next_states.shape:
        raise ValueError(f"terminals must have shape {next_states.shape}, got {terminals.shape}")
    if expectile is not None and not 0.0 < expectile < 1.0:
        raise ValueError(f"expectile must be in (0, 1) or None, got {expectile}")
    successors = torch.as_tensor(next_states, dtype=torch.long)
    signal = torch.as_tensor(h).unsqueeze(1).expand(next_states.shape)
    done = torch.as_tensor(terminals, dtype=torch.float64)

    def state_values(q: torch.Tensor) -> torch.Tensor:
        return q.min(dim=1).values if expectile is None else _reversed_expectile_rows(q, expectile)

    q = signal.clone()
    for _ in range(max_iterations):
        new_q = hj_q_target(signal, state_values(q)[successors], gamma, done)
        if (new_q - q).abs().max() < tol:
            return new_q.numpy(), state_values(new_q).numpy()
        q = new_q
    raise RuntimeError(
        f"HJ value iteration did not reach tol={tol} in {max_iterations} iterations; raise max_iterations"
    )


def _reversed_expectile_rows(values: torch.Tensor, tau: float, iterations: int = 100) -> torch.Tensor:
    """Per row, the ``m`` solving ``sum_j w_j (q_j - m) = 0`` with ``w_j = tau`` if ``q_j < m`` else ``1 - tau``.

    The left side decreases in ``m``, so bisection between the row's min and max finds the root.
    """
    low, high = values.min(dim=1).values, values.max(dim=1).values
    for _ in range(iterations):
        mid = (low + high) / 2
        residual = values - mid[:, None]
        slope = torch.where(residual < 0, tau, 1.0 - tau)
        above = (slope * residual).sum(dim=1) > 0
        low, high = torch.where(above, mid, low), torch.where(above, high, mid)
    return (low + high) / 2


class FeasibilityCritic(nn.Module):
    """An ensemble ``Q_h`` (with a Polyak-averaged target copy) and a value ``V_h``, trained offline.

    Args:
        obs_dim, act_dim: observation and action sizes.
        mode: ``"hj"`` for HJ reachability on the signal ``h``, ``"discounted_cost"`` for ``Q_c``.
        n_critics: members of the ``Q`` ensemble (the target is their maximum).
        hidden, activation, layer_norm: network shape (see :class:`saferl.networks.mlp.MLP`).
        gamma: discount.
        expectile: ``tau`` of the reversed expectile that fits ``V`` (FISOR: 0.9).
        cost_scale: ``h`` of a violating step in ``"hj"`` mode (FISOR: 25).
        threshold: largest feasible value; ``None`` means 0 in ``"hj"`` mode and must be given in
            ``"discounted_cost"`` mode (a Q-scale cost threshold).
        target_update_rate: Polyak rate of :meth:`update_target`.

    Training step: ``losses = critic.losses(batch)``; minimise ``losses["q_loss"] + losses["v_loss"]``
    over :meth:`trainable_parameters` (the two losses touch disjoint parameters); then
    :meth:`update_target`. The state dict holds only tensors (both ensembles and the value network).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        mode: FeasibilityMode = "hj",
        n_critics: int = 2,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        layer_norm: bool = False,
        gamma: float = 0.99,
        expectile: float = 0.9,
        cost_scale: float = 25.0,
        threshold: float | None = None,
        target_update_rate: float = 0.005,
    ) -> None:
        super().__init__()
        if mode not in ("hj", "discounted_cost"):
            raise ValueError(f"unknown feasibility mode {mode!r}; choose 'hj' or 'discounted_cost'")
        if threshold is None:
            if mode == "discounted_cost":
                raise ValueError(
                    "mode='discounted_cost' needs a threshold on Q_c, e.g. "
                    "saferl.constraints.cost_limits.per_step_cost_threshold(kappa, gamma, episode_len)"
                )
            threshold = 0.0
        if not 0.0 <= gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {gamma}")
        if not 0.0 < expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {expectile}")
        if not cost_scale > 0:
            raise ValueError(f"cost_scale must be > 0, got {cost_scale}")
        if not 0.0 <= target_update_rate <= 1.0:
            raise ValueError(f"target_update_rate must be in [0, 1], got {target_update_rate}")
        self.mode = mode
        self.gamma = gamma
        self.expectile = expectile
        self.cost_scale = cost_scale
        self.threshold = float(threshold)
        self.target_update_rate = target_update_rate
        self.critics = CriticEnsemble(obs_dim, act_dim, n_critics, hidden, activation, layer_norm)
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.value = ValueNetwork(obs_dim, hidden, activation, layer_norm)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters of the online ``Q`` ensemble and of ``V`` (not the target copy)."""
        return list(self.critics.parameters()) + list(self.value.parameters())

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``{"q_loss", "v_loss"}`` on one batch.

        ``q_loss = sum_i mean (Q_i(s, a) - y)^2`` with ``y`` the HJ target (or ``c + gamma (1 - d) V(s')``),
        ``V(s')`` from the value network; ``v_loss`` = reversed expectile of ``max_i Q'_i(s, a) - V(s)``
        with ``Q'`` the target ensemble.
        """
        with torch.no_grad():
            v_next = self.value(batch.next_observations)
            if self.mode == "hj":
                h = constraint_signal(batch.costs, self.cost_scale)
                target = hj_q_target(h, v_next, self.gamma, batch.terminals)
            else:
                target = iql_q_target(batch.costs, self.gamma, v_next, batch.terminals)
            q_pessimistic = self.action_value(batch.observations, batch.actions)
        q_loss = ensemble_mse_loss(self.critics(batch.observations, batch.actions), target)
        v_loss = reversed_expectile_loss(q_pessimistic - self.value(batch.observations), self.expectile)
        return {"q_loss": q_loss, "v_loss": v_loss}

    def update_target(self) -> None:
        """Polyak step of the target ensemble towards the online one."""
        polyak_update(self.target_critics, self.critics, self.target_update_rate)

    def action_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``max_i Q'_i(s, a)`` over the target ensemble, shape ``(B,)`` (differentiable in ``act``)."""
        return reduce_ensemble(self.target_critics(obs, act), "max")

    def state_value(self, obs: torch.Tensor) -> torch.Tensor:
        """``V(s)``, shape ``(B,)``."""
        return self.value(obs)

    @torch.no_grad()
    def feasible_state(self, obs: torch.Tensor) -> torch.Tensor:
        """Boolean ``(B,)``: ``V(s) <= threshold``."""
        return self.state_value(obs) <= self.threshold

    @torch.no_grad()
    def feasible_action(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Boolean ``(B,)``: ``max_i Q'_i(s, a) <= threshold``."""
        return self.action_value(obs, act) <= self.threshold


__all__ = [
    "FeasibilityMode",
    "constraint_signal",
    "hj_q_target",
    "tabular_hj_values",
    "FeasibilityCritic",
]
