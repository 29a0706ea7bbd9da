"""Behaviour cloning baselines of OSRL: BC-All, BC-Safe and BC-Frontier.

Objective (deterministic actor, actions in [-1, 1]):

.. math::

    \\min_\\theta \\; \\mathbb{E}_{(s, a) \\sim \\mathcal{D}'} \\lVert \\pi_\\theta(\\bar s) - a \\rVert^2,
    \\qquad \\bar s = (s - \\mu) / \\sigma

where the three baselines differ only in the data :math:`\\mathcal{D}'` they imitate:

* **BC-All**: every trajectory;
* **BC-Safe**: trajectories whose cost return is at most the episodic cost limit kappa;
* **BC-Frontier**: trajectories within ``(R_max - R_min) / 5`` of the Pareto frontier of
  (cost return, reward return) (see ``saferl.datasets.transforms.select_bc_frontier``).

Departures from OSRL: OSRL's BC-Frontier is defined with respect to the cost limit's frontier of
the DSRL data; ours delegates the frontier to the shared transform. Model selection is never by online
evaluation cost: the last model is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from saferl.algorithm import Algorithm, AlgorithmConfig, ObservationNormalizer, TaskContext
from saferl.datasets import Batch, TransitionDataset
from saferl.datasets.transforms import select_bc_frontier, select_bc_safe
from saferl.networks.mlp import MLP


@dataclass
class BCConfig(AlgorithmConfig):
    """Behaviour cloning."""

    batch_size: int = 512
    """Transitions per gradient step (OSRL: 512)."""
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden layer widths of the actor MLP."""
    lr: float = 1e-3
    """Adam learning rate (OSRL: 1e-3)."""
    normalize_obs: bool = True
    """z-normalise observations with the training data's statistics."""


class BCAll(Algorithm):
    """BC-All: imitate every transition of the dataset."""

    name = "bc_all"
    config_class = BCConfig

    def __init__(self, config: BCConfig, context: TaskContext) -> None:
        super().__init__(config, context)
        self.normalizer = ObservationNormalizer(context.obs_dim, config.normalize_obs)
        self.actor = MLP(context.obs_dim, context.act_dim, hidden=tuple(config.hidden), output_activation="tanh")
        self.add_optimizer("actor", self.actor.parameters(), lr=config.lr)

    def select(self, dataset: TransitionDataset) -> TransitionDataset:
        """The trajectories to imitate (all of them)."""
        return dataset

    def setup(self, dataset: TransitionDataset) -> TransitionDataset:
        """Select the data to imitate and fit the observation normaliser on it."""
        selected = self.select(dataset)
        self.normalizer.fit(selected.observations)
        return selected

    def update(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """One MSE step towards the dataset actions."""
        # ALGO LOGIC: the whole behaviour cloning update.
        loss = F.mse_loss(self.actor(self.normalizer(batch.observations)), batch.actions)
        self.step_optimizer("actor", loss)
        return {"actor_loss": loss.detach()}

    def act_tensor(self, observations: torch.Tensor) -> torch.Tensor:
        """The actor's deterministic action."""
        return self.actor(self.normalizer(observations))


class BCSafe(BCAll):
    """BC-Safe: imitate only trajectories with cost return <= the episodic cost limit."""

    name = "bc_safe"

    def select(self, dataset: TransitionDataset) -> TransitionDataset:
        """Trajectories whose cost return is within the cost limit."""
        return select_bc_safe(dataset, self.context.cost_limit)


class BCFrontier(BCAll):
    """BC-Frontier: imitate trajectories near the reward-cost Pareto frontier."""

    name = "bc_frontier"

    def select(self, dataset: TransitionDataset) -> TransitionDataset:
        """Trajectories within (R_max - R_min)/5 of the fitted frontier."""
        return select_bc_frontier(dataset)


__all__ = ["BCConfig", "BCAll", "BCSafe", "BCFrontier"]
