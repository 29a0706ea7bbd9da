r"""Trust regions for the actor: divergences to a frozen previous policy or to the behaviour policy.

Off-policy MDPO (Tomar et al.) replaces the actor loss :math:`-Q(s, \pi(s))` by

.. math::

    \mathcal{L}(\pi) = \mathbb{E}_s\big[\, t \,\mathrm{KL}(\pi(\cdot|s) \,\|\, \pi_{old}(\cdot|s)) - Q(s, a) \big],
    \quad a \sim \pi(\cdot|s),

(plus the entropy term of SAC for a stochastic actor), where :math:`\pi_{old}` is a frozen copy of the
actor refreshed every m updates (m = 1000 in the paper): :class:`PolicySnapshot`. The pieces here:

* :func:`gaussian_kl`: :math:`\mathrm{KL}(p \,\|\, q)` of two diagonal Gaussians in closed form;
* :func:`squared_distance`: :math:`\|\mu - \mu'\|^2` for deterministic actors. A deterministic actor is
  a Gaussian of fixed standard deviation sigma, and for two such Gaussians
  :math:`\mathrm{KL} = \|\mu - \mu'\|^2 / (2\sigma^2)`, so the squared distance is the KL up to the
  constant factor :math:`2\sigma^2`, which the trust-region weight t absorbs;
* :func:`gaussian_anchor_distance`: :math:`\tfrac12 \sum_i ((a_i - \mu_i)/\sigma_i)^2`, the distance of a
  deterministic action to a Gaussian (e.g. a behaviour model's). It is the part of
  :math:`\mathrm{KL}(\mathcal{N}(a, s^2) \,\|\, \mathcal{N}(\mu, \sigma^2))` that depends on a, for any fixed s.

Behaviour-anchored variants use the same functions with the behaviour policy in place of
:math:`\pi_{old}`: ``squared_distance(pi(s), a_dataset)`` (the TD3+BC term), ``gaussian_kl`` to a
behaviour model's Gaussian for a stochastic actor, ``gaussian_anchor_distance`` to it for a deterministic one.

Every divergence sums over the last (action) axis and keeps the batch axes; average it in the loss.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["PolicySnapshot", "gaussian_anchor_distance", "gaussian_kl", "squared_distance"]


def _check_action_tensors(**tensors: torch.Tensor) -> None:
    """Check that the named inputs are tensors with an action axis whose shapes broadcast together."""
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dim() == 0:
            raise ValueError(f"{name} must have an action axis (shape (..., act_dim)), got a scalar tensor")
    try:
        torch.broadcast_shapes(*(tensor.shape for tensor in tensors.values()))
    except RuntimeError as error:
        shapes = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
        raise ValueError(
            f"shapes {shapes} do not broadcast together: give every input the same action dimension"
        ) from error


def gaussian_kl(
    mu_p: torch.Tensor, log_std_p: torch.Tensor, mu_q: torch.Tensor, log_std_q: torch.Tensor
) -> torch.Tensor:
    r"""KL divergence :math:`\mathrm{KL}(p \,\|\, q)` between diagonal Gaussians, summed over the action axis.

    .. math::

        \mathrm{KL}(\mathcal{N}(\mu_p, \sigma_p^2) \,\|\, \mathcal{N}(\mu_q, \sigma_q^2))
        = \sum_i \Big[\log\frac{\sigma_{q,i}}{\sigma_{p,i}}
          + \frac{\sigma_{p,i}^2 + (\mu_{p,i} - \mu_{q,i})^2}{2\sigma_{q,i}^2} - \frac12\Big]

    For MDPO, p is the current policy and q the snapshot :math:`\pi_{old}`. Inputs broadcast (a state-
    independent ``log_std`` of shape ``(act_dim,)`` is fine).

    Returns:
        A tensor of the broadcast batch shape (the action axis summed out), >= 0, 0 iff p == q.
    """
    _check_action_tensors(mu_p=mu_p, log_std_p=log_std_p, mu_q=mu_q, log_std_q=log_std_q)
    variance_ratio = torch.exp(2.0 * (log_std_p - log_std_q))
    scaled_mean_gap = (mu_p - mu_q) * torch.exp(-log_std_q)
    per_dim = log_std_q - log_std_p + 0.5 * (variance_ratio + scaled_mean_gap.square() - 1.0)
    return per_dim.sum(dim=-1)


def squared_distance(action: torch.Tensor, anchor_action: torch.Tensor) -> torch.Tensor:
    r""":math:`\|a - a'\|^2` summed over the action axis: the trust region of a deterministic actor.

    Equals :math:`2\sigma^2 \,\mathrm{KL}(\mathcal{N}(a, \sigma^2 I) \,\|\, \mathcal{N}(a', \sigma^2 I))` for
    every fixed sigma. ``anchor_action`` is the snapshot's action (MDPO) or the dataset action
    (behaviour-anchored, as in TD3+BC); detach it or produce it under ``torch.no_grad()``.
    """
    _check_action_tensors(action=action, anchor_action=anchor_action)
    return (action - anchor_action).square().sum(dim=-1)


def gaussian_anchor_distance(
    action: torch.Tensor, anchor_mean: torch.Tensor, anchor_log_std: torch.Tensor
) -> torch.Tensor:
    r"""Distance of a deterministic action to a diagonal Gaussian anchor (e.g. a behaviour model).

    .. math::

        D(a) = \frac12 \sum_i \Big(\frac{a_i - \mu_i}{\sigma_i}\Big)^2
             = -\log \mathcal{N}(a; \mu, \sigma^2) - \text{const}

    and :math:`\mathrm{KL}(\mathcal{N}(a, s^2 I) \,\|\, \mathcal{N}(\mu, \sigma^2)) = D(a) + c(s, \sigma)`
    for every fixed s, so its gradient in a is that of the KL. Dimensions where the anchor is confident
    (small sigma) pull harder than those where the behaviour varied.
    """
    _check_action_tensors(action=action, anchor_mean=anchor_mean, anchor_log_std=anchor_log_std)
    return 0.5 * ((action - anchor_mean) * torch.exp(-anchor_log_std)).square().sum(dim=-1)


class PolicySnapshot:
    r"""A frozen copy :math:`\pi_{old}` of a policy network, refreshed from it every ``refresh_every`` updates.

    Call :meth:`step` once after each optimiser update of the live policy: after updates
    m, 2m, 3m, ... the snapshot's weights (and buffers) are copied from the live module. The copy is in
    eval mode with ``requires_grad=False``; calling the snapshot runs it under ``torch.no_grad()``.
    Build it after the module has been moved to its device: the copy is made on the module's device.

    Args:
        module: the live policy network (kept by reference: refreshes read its current weights).
        refresh_every: m, the number of updates between refreshes (MDPO: 1000).

    Example:
        >>> actor = nn.Linear(3, 2)
        >>> old_actor = PolicySnapshot(actor, refresh_every=1000)
        >>> penalty = squared_distance(actor(torch.zeros(1, 3)), old_actor(torch.zeros(1, 3)))
    """

    def __init__(self, module: nn.Module, refresh_every: int) -> None:
        if not isinstance(module, nn.Module):
            raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if isinstance(refresh_every, bool) or not isinstance(refresh_every, int) or refresh_every < 1:
            raise ValueError(f"refresh_every must be a positive int (updates between refreshes), got {refresh_every!r}")
        self._live = module
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.refresh_every = refresh_every
        self.updates = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the frozen copy on the inputs without building a graph."""
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def refresh(self) -> None:
        """Copy the live module's current weights and buffers into the snapshot now."""
        self.module.load_state_dict(self._live.state_dict())

    def step(self) -> bool:
        """Count one update of the live policy; refresh when the count is a multiple of ``refresh_every``.

        Returns:
            True if this call refreshed the snapshot.
        """
        self.updates += 1
        if self.updates % self.refresh_every == 0:
            self.refresh()
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """``{"module": snapshot weights, "updates": int, "refresh_every": int}``."""
        return {"module": self.module.state_dict(), "updates": self.updates, "refresh_every": self.refresh_every}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the snapshot's weights and update counter; the refresh period must match."""
        missing = [key for key in ("module", "updates", "refresh_every") if key not in state]
        if missing:
            raise ValueError(f"PolicySnapshot state dict lacks keys {missing}")
        if int(state["refresh_every"]) != self.refresh_every:
            raise ValueError(
                f"checkpoint refreshes every {state['refresh_every']} updates but this snapshot every "
                f"{self.refresh_every}: build the PolicySnapshot with the checkpoint's refresh_every"
            )
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
