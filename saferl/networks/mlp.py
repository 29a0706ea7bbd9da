"""Multi-layer perceptrons: one network (:class:`MLP`) and a vectorised ensemble (:class:`EnsembleMLP`).

Both compute, layer by layer,

    x_{l+1} = dropout(act(norm(W_l x_l + b_l)))          for hidden layers l = 0 .. L-1
    y       = out_act(W_L x_L + b_L)

where ``norm`` is LayerNorm when ``layer_norm=True`` (identity otherwise) and ``out_act`` is the
optional output activation. The ensemble holds the weights of its ``n`` members stacked in one tensor
per layer, ``W_l`` of shape ``(n, in, out)``, and evaluates all members with one batched matrix product
per layer, so that ``n`` critics cost one kernel launch instead of ``n``.

Initialisation matches :class:`torch.nn.Linear`: weights and biases uniform in
``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, drawn from torch's global generator, so that
``torch.manual_seed(s)`` before construction fixes every weight.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "mish": nn.Mish,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}
"""Activation names accepted by :class:`MLP` and :class:`EnsembleMLP`."""


def make_activation(name: str) -> nn.Module:
    """The activation module called ``name`` (one of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _check_sizes(in_dim: int, out_dim: int, hidden: Sequence[int], dropout: float) -> tuple[int, ...]:
    """Validate layer sizes and the dropout rate; return the hidden sizes as a tuple."""
    hidden = tuple(hidden)
    for label, size in [("in_dim", in_dim), ("out_dim", out_dim)] + [(f"hidden[{i}]", h) for i, h in enumerate(hidden)]:
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ValueError(f"{label} must be a positive int, got {size!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return hidden


class MLP(nn.Module):
    """A fully connected network ``in_dim -> hidden... -> out_dim``.

    Args:
        in_dim: input features.
        out_dim: output features.
        hidden: widths of the hidden layers (empty: a single linear layer).
        activation: hidden activation, a name from :data:`ACTIVATIONS`.
        layer_norm: apply LayerNorm after each hidden linear layer, before the activation.
        dropout: dropout rate after each hidden activation (0 disables it).
        output_activation: optional activation name applied to the output (e.g. ``"tanh"``).

    Input ``(..., in_dim)``, output ``(..., out_dim)``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        layer_norm: bool = False,
        dropout: float = 0.0,
        output_activation: str | None = None,
    ) -> None:
        super().__init__()
        hidden = _check_sizes(in_dim, out_dim, hidden, dropout)
        layers: list[nn.Module] = []
        width = in_dim
        for size in hidden:
            layers.append(nn.Linear(width, size))
            if layer_norm:
                layers.append(nn.LayerNorm(size))
            layers.append(make_activation(activation))
            if dropout > 0.0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, out_dim))
        if output_activation is not None:
            layers.append(make_activation(output_activation))
        self.layers = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate the network on ``x`` of shape ``(..., in_dim)``."""
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"MLP expects inputs with last dimension {self.in_dim}, got shape {tuple(x.shape)}")
        return self.layers(x)


class EnsembleLinear(nn.Module):
    """``n`` independent linear layers evaluated together: ``y_i = x_i W_i + b_i``.

    ``weight`` has shape ``(n, in_dim, out_dim)``, ``bias`` ``(n, 1, out_dim)``. The input is either
    ``(B, in_dim)``, shared by every member, or ``(n, B, in_dim)``, one batch per member; the output is
    ``(n, B, out_dim)``.
    """

    def __init__(self, n_members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(n_members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply every member's layer; ``(B, in)`` or ``(n, B, in)`` -> ``(n, B, out)``."""
        return torch.matmul(x, self.weight) + self.bias


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dimension with a separate affine scale and shift per member."""

    def __init__(self, n_members: int, size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_members, 1, size))
        self.bias = nn.Parameter(torch.zeros(n_members, 1, size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``(n, B, size)`` per row, then scale and shift per member."""
        return F.layer_norm(x, x.shape[-1:], eps=self.eps) * self.weight + self.bias


class EnsembleMLP(nn.Module):
    """``n_members`` independent MLPs of the same shape, evaluated with batched matrix products.

    Member ``i`` computes exactly what an :class:`MLP` with the same arguments and member ``i``'s
    weights computes. Input ``(B, in_dim)`` (the same batch for every member) or
    ``(n_members, B, in_dim)``; output ``(n_members, B, out_dim)``.
    """

    def __init__(
        self,
        n_members: int,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        layer_norm: bool = False,
        dropout: float = 0.0,
        output_activation: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(n_members, int) or isinstance(n_members, bool) or n_members <= 0:
            raise ValueError(f"n_members must be a positive int, got {n_members!r}")
        hidden = _check_sizes(in_dim, out_dim, hidden, dropout)
        layers: list[nn.Module] = []
        width = in_dim
        for size in hidden:
            layers.append(EnsembleLinear(n_members, width, size))
            if layer_norm:
                layers.append(EnsembleLayerNorm(n_members, size))
            layers.append(make_activation(activation))
            if dropout > 0.0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(EnsembleLinear(n_members, width, out_dim))
        if output_activation is not None:
            layers.append(make_activation(output_activation))
        self.layers = nn.Sequential(*layers)
        self.n_members = n_members
        self.in_dim = in_dim
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate every member; ``(B, in_dim)`` or ``(n_members, B, in_dim)`` -> ``(n_members, B, out_dim)``."""
        shared = x.dim() == 2 and x.shape[1] == self.in_dim
        per_member = x.dim() == 3 and x.shape[0] == self.n_members and x.shape[2] == self.in_dim
        if not (shared or per_member):
            raise ValueError(
                f"EnsembleMLP expects inputs of shape (B, {self.in_dim}) or ({self.n_members}, B, {self.in_dim}), "
                f"got {tuple(x.shape)}"
            )
        return self.layers(x)


__all__ = ["ACTIVATIONS", "MLP", "EnsembleLinear", "EnsembleLayerNorm", "EnsembleMLP", "make_activation"]
