"""What every saferl algorithm is: a config dataclass, networks, and one ``update(batch)`` hook.

The trainer (``saferl.trainer``) owns the loop: it samples a batch, calls :meth:`Algorithm.update`, logs
the returned losses by name, evaluates, and checkpoints :meth:`Algorithm.training_state`. An algorithm
owns its networks, optimisers (registered with :meth:`Algorithm.add_optimizer` so they are checkpointed)
and any other state (multipliers, EMA weights, snapshots) through :meth:`extra_state`.

This module is part of the core: it imports only the dataset types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

import numpy as np
import torch
from torch import nn

from saferl.datasets import Batch, TransitionDataset

OPTIMIZER_IMPLS: dict[str, dict[str, bool]] = {
    "fused": {"fused": True},
    "foreach": {"foreach": True},
    "for_loop": {"foreach": False},
}
"""Values of ``AlgorithmConfig.optimizer_impl`` and the torch optimiser arguments each one sets."""


@dataclass
class AlgorithmConfig:
    """Fields every algorithm config has; each algorithm subclasses it with its own fields."""

    batch_size: int = 256
    """Transitions per gradient step."""
    optimizer_impl: str = "fused"
    """How torch runs every optimiser step of the algorithm: 'fused' (one kernel per parameter, the fastest),
    'foreach' or 'for_loop' (torch's CPU default). All are deterministic; 'fused' rounds differently, so its
    weights differ from 'for_loop' in the last bits of a float32. A resumed run keeps the one it started with."""


@dataclass(frozen=True)
class TaskContext:
    """Facts about the task and the run an algorithm is trained for (from the registry and the run config)."""

    obs_dim: int
    act_dim: int
    episode_len: int
    cost_limit: float
    """Episodic cost limit kappa (undiscounted episode cost)."""
    reward_max: float = float("nan")
    reward_min: float = float("nan")
    total_steps: int = 0
    """Gradient steps of the run (for learning-rate schedules and staged training; 0 if unknown)."""


class ObservationNormalizer(nn.Module):
    """z-normalisation of observations with statistics fitted once on the training data (as buffers)."""

    def __init__(self, obs_dim: int, enabled: bool = True, eps: float = 1e-3) -> None:
        super().__init__()
        self.enabled = enabled
        self.eps = eps
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))

    def fit(self, observations: np.ndarray) -> None:
        """Set mean and standard deviation from ``observations`` (N, obs_dim)."""
        if self.enabled:
            self.mean.copy_(torch.as_tensor(observations.mean(0), dtype=torch.float32))
            self.std.copy_(torch.as_tensor(observations.std(0), dtype=torch.float32) + self.eps)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """``(obs - mean) / std``."""
        return (observations - self.mean) / self.std


class Algorithm(nn.Module):
    """Base class of saferl algorithms (composition helpers, no algorithm logic).

    Subclasses set ``name`` and ``config_class``, build their networks in ``__init__``, and implement
    :meth:`update` and :meth:`act_tensor`. :meth:`setup` may select or preprocess the training data.
    """

    name: ClassVar[str] = "algorithm"
    config_class: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig
    act_time_fields: ClassVar[tuple[str, ...]] = ()
    """``algo.*`` fields read only when acting: ``saferl eval RUN_DIR algo.FIELD=VALUE`` may change them."""

    def __init__(self, config: AlgorithmConfig, context: TaskContext) -> None:
        super().__init__()
        self.config = config
        self.context = context
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}

    # ------------------------------------------------------------------ hooks
    def setup(self, dataset: TransitionDataset) -> TransitionDataset:
        """Prepare for training on ``dataset`` and return the data to sample from (default: all of it).

        Called once before training, and again (identically) when a run resumes: everything it derives
        must be a deterministic function of the dataset and the config.
        """
        return dataset

    def update(self, batch: Batch, step: int) -> dict[str, float | torch.Tensor]:
        """One training step on ``batch``; return the losses and diagnostics to log, by name.

        Values are floats or one-element tensors. The trainer reads tensors once per log window rather than
        every step (no host sync per step on a GPU), so return fresh ones (``loss.detach()``), never a tensor
        that the algorithm later changes in place.
        """
        raise NotImplementedError

    def act_tensor(self, observations: torch.Tensor) -> torch.Tensor:
        """Actions for a batch of raw (unnormalised) observations, as a tensor in ``[-1, 1]``."""
        raise NotImplementedError

    def feasibility_margin(self, observations: torch.Tensor) -> torch.Tensor | None:
        """``value - threshold`` of the algorithm's feasibility critic for raw observations (feasible where
        ``<= 0``), or None for algorithms without one. Reports draw and score it against the true region."""
        return None

    def extra_state(self) -> dict[str, Any]:
        """State outside ``nn.Module`` parameters/buffers and optimisers (tensors and plain types only)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        """Device of the algorithm's parameters."""
        for tensor in self.parameters():
            return tensor.device
        return torch.device("cpu")

    def add_optimizer(
        self, name: str, params: Iterable[torch.nn.Parameter], lr: float, kind: str = "adam", **kwargs: Any
    ) -> torch.optim.Optimizer:
        """Create an optimiser that the checkpoint will hold under ``name``.

        It runs as ``config.optimizer_impl`` says unless ``kwargs`` name ``fused`` or ``foreach`` themselves.
        """
        factories = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
        if kind not in factories:
            raise ValueError(f"unknown optimiser '{kind}'; choose one of {sorted(factories)}")
        impl = self.config.optimizer_impl
        if impl not in OPTIMIZER_IMPLS:
            raise ValueError(f"unknown optimizer_impl '{impl}'; choose one of {list(OPTIMIZER_IMPLS)}")
        if "fused" not in kwargs and "foreach" not in kwargs:
            kwargs = {**kwargs, **OPTIMIZER_IMPLS[impl]}
        optimizer = factories[kind](list(params), lr=lr, **kwargs)
        self.optimizers[name] = optimizer
        return optimizer

    def step_optimizer(self, name: str, loss: torch.Tensor) -> None:
        """Zero the optimiser's gradients, back-propagate ``loss`` and step (and its scheduler, if any)."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if name in self.schedulers:
            self.schedulers[name].step()

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """Batched acting for evaluation: numpy ``(B, obs_dim)`` -> numpy ``(B, act_dim)``."""
        was_training = self.training
        self.eval()
        obs = torch.as_tensor(np.asarray(observations, dtype=np.float32), device=self.device)
        squeeze = obs.ndim == 1
        actions = self.act_tensor(obs[None] if squeeze else obs)
        self.train(was_training)
        out = actions.cpu().numpy()
        return out[0] if squeeze else out

    def training_state(self) -> dict[str, Any]:
        """Every piece of training state: module weights and buffers, optimisers, schedulers, extras."""
        return {
            "modules": self.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: sch.state_dict() for name, sch in self.schedulers.items()},
            "extra": self.extra_state(),
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`training_state` (strict: missing or unexpected entries are errors)."""
        self.load_state_dict(state["modules"])
        if set(state["optimizers"]) != set(self.optimizers):
            raise ValueError(
                f"checkpoint optimisers {sorted(state['optimizers'])} do not match {sorted(self.optimizers)}"
            )
        for name, opt_state in state["optimizers"].items():
            self.optimizers[name].load_state_dict(opt_state)
        for name, sch_state in state.get("schedulers", {}).items():
            self.schedulers[name].load_state_dict(sch_state)
        self.load_extra_state(state.get("extra", {}))


__all__ = ["Algorithm", "AlgorithmConfig", "TaskContext", "ObservationNormalizer", "OPTIMIZER_IMPLS"]
