r"""PRDC: policy regularisation with a dataset constraint (Ran et al., ICML 2023), and PRDC-Lag.

TD3+BC's backbone (twin critics, deterministic tanh actor, target policy smoothing, delayed actor updates)
with the behaviour-cloning term replaced by the *dataset constraint*: the actor is pulled towards the
action of the dataset point nearest to the key of its own state-action pair,

.. math::

    \min_\pi \; -\frac{\alpha}{\mathbb{E}|Q|}\, \mathbb{E}_s\, Q(\bar s, \pi(\bar s))
      + \mathbb{E}_s \lVert \pi(\bar s) - a_{j^\star(s)} \rVert^2, \qquad
    j^\star(s) = \arg\min_j \lVert [\beta \bar s, \pi(\bar s)] - [\beta \bar s_j, a_j] \rVert,

with :math:`\bar s` the z-normalised state and the key detached. The index is the core's
:class:`saferl.constraints.neighbors.DatasetNeighborIndex`, built once per instance over the training
data; since a batch's states are dataset rows (``Batch.indices``), queries go through its certified-exact
per-row candidates (``neighbor_backend: candidates``).

**PRDC-Lag** (ours, for safe offline RL) adds twin cost critics :math:`Q_c` (TD targets on the step cost)
and a Lagrange multiplier :math:`\lambda \ge 0`:

.. math::

    \min_\pi \; -\frac{\alpha}{\mathbb{E}|Q_r|}\, \mathbb{E}\big[Q_r(\bar s, \pi) - \lambda Q_c(\bar s, \pi)\big]
      + \mathbb{E} \lVert \pi(\bar s) - a_{j^\star} \rVert^2,
    \qquad \lambda \leftarrow \text{update}\big(\mathbb{E}\, Q_c(\bar s, \pi(\bar s)),\ q_{\text{thres}}\big)

with the per-step threshold :math:`q_{\text{thres}} = \kappa (1 - \gamma^T) / ((1 - \gamma) T)` of the
episodic cost limit kappa (``saferl.constraints.per_step_cost_threshold``), the pessimistic (max) cost
critic, and a gradient-ascent or PID multiplier (``multiplier``).

Departures: critics bootstrap through time-limit truncations (only ``terminals`` stop the target, as
everywhere in saferl); ``alpha / mean|Q|`` is detached, as in TD3+BC; PRDC-Lag is not in the paper.
"""

from __future__ import annotations

import copy
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from saferl.algorithm import Algorithm, AlgorithmConfig, ObservationNormalizer, TaskContext
from saferl.constraints.cost_limits import per_step_cost_threshold
from saferl.constraints.critics import CriticEnsemble, ensemble_mse_loss, iql_q_target, polyak_update, reduce_ensemble
from saferl.constraints.multipliers import make_multiplier
from saferl.constraints.neighbors import DatasetNeighborIndex, Neighbors
from saferl.datasets import Batch, TransitionDataset
from saferl.networks.mlp import MLP


def overlap_search_enabled(setting: bool | None) -> bool:
    """Whether PRDC's search runs beside the critic update for ``overlap_search=setting``.

    ``None`` (the default) decides by the cores: overlap when torch's threads leave one of the cores this
    process may use (its CPU affinity where the platform reports it) free for the search thread.
    """
    if setting is not None:
        return setting
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return torch.get_num_threads() < cores


@dataclass
class PRDCConfig(AlgorithmConfig):
    """PRDC (defaults: the paper's TD3+BC backbone; alpha/beta of its hopper/walker2d settings)."""

    batch_size: int = 256
    """Transitions per step."""
    alpha: float = 2.5
    """Weight of the Q term (normalised by mean |Q|)."""
    beta: float = 2.0
    """State weight in the neighbour key [beta * s_norm, a]."""
    k: int = 1
    """Regularise towards the k-th nearest dataset point (PRDC: 1)."""
    neighbor_backend: str = "candidates"
    """Index backend: candidates (exact, per-row), cells, kdtree, faiss-flat, faiss-ivf, torch."""
    num_candidates: int = 16
    """Candidates stored per dataset row by the 'candidates' backend."""
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of actor and critics."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    gamma: float = 0.99
    """Discount."""
    polyak: float = 0.005
    """Target network update rate."""
    policy_noise: float = 0.2
    """Std of the target policy smoothing noise."""
    noise_clip: float = 0.5
    """Clip of the target policy smoothing noise."""
    policy_delay: int = 2
    """Actor and target updates every this many steps."""
    normalize_obs: bool = True
    """z-normalise states (PRDC and TD3+BC do)."""
    overlap_search: bool | None = None
    """On actor steps, run the neighbour search in one background thread while the critics update. The
    critic step does not change the actor, so the query (the actor's actions) and its answer are exactly
    those of the sequential order: same numbers, bit for bit; only the wall time changes. The thread needs
    a free core: null (default) overlaps only when torch's threads leave one (``torch_threads`` below the
    cores this process may use; ``scripts/bench_prdc.py`` measures both orders, docs/algorithms/prdc.md)."""


@dataclass
class PRDCLagConfig(PRDCConfig):
    """PRDC-Lag: PRDC with cost critics and a Lagrange multiplier on the per-step cost threshold."""

    multiplier: str = "lagrange"
    """Multiplier kind: lagrange, log_lagrange or pid."""
    multiplier_lr: float = 1e-3
    """Learning rate of gradient multipliers (ignored by pid)."""
    initial_lambda: float = 1.0
    """Initial multiplier value (gradient multipliers)."""


class PRDC(Algorithm):
    """PRDC: TD3 with the dataset nearest-neighbour constraint."""

    name = "prdc"
    config_class = PRDCConfig
    uses_cost = False

    def __init__(self, config: PRDCConfig, context: TaskContext) -> None:
        super().__init__(config, context)
        c, obs_dim, act_dim = config, context.obs_dim, context.act_dim
        self.normalizer = ObservationNormalizer(obs_dim, c.normalize_obs)
        self.actor = MLP(obs_dim, act_dim, hidden=tuple(c.hidden), output_activation="tanh")
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critics = CriticEnsemble(obs_dim, act_dim, 2, tuple(c.hidden))
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.add_optimizer("actor", self.actor.parameters(), lr=c.actor_lr)
        self.add_optimizer("critic", self.critics.parameters(), lr=c.critic_lr)
        self.index: DatasetNeighborIndex | None = None
        self._search_pool: ThreadPoolExecutor | None = None
        self.search_timing = {"search_s": 0.0, "wait_s": 0.0}
        """Wall seconds spent inside the neighbour search, and seconds the update waited for it (equal
        without ``overlap_search``); diagnostics for ``scripts/bench_prdc.py``, not checkpointed."""

    def setup(self, dataset: TransitionDataset) -> TransitionDataset:
        """Fit the state normaliser and build this instance's neighbour index over the training data."""
        self.normalizer.fit(dataset.observations)
        with torch.no_grad():
            states = self.normalizer(torch.as_tensor(dataset.observations, device=self.device))
        self.index = DatasetNeighborIndex(
            states, torch.as_tensor(dataset.actions, device=self.device), self.config.beta,
            backend=self.config.neighbor_backend, k=self.config.k, num_candidates=self.config.num_candidates,
            workers=torch.get_num_threads(),  # the run's thread budget (torch_threads), not every core
        )
        return dataset

    # ------------------------------------------------------------------ ALGO LOGIC
    def _td_target(self, critics: CriticEnsemble, signal: torch.Tensor, batch: Batch, next_actions: torch.Tensor,
                   how: str) -> torch.Tensor:
        next_q = reduce_ensemble(critics(batch.next_observations, next_actions), how)  # type: ignore[arg-type]
        return iql_q_target(signal, self.config.gamma, next_q, batch.terminals)

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        """Critic step every step; actor (dataset constraint) and target steps every policy_delay steps."""
        c = self.config
        obs, next_obs = self.normalizer(batch.observations), self.normalizer(batch.next_observations)
        batch = Batch(**{**batch.__dict__, "observations": obs, "next_observations": next_obs})
        actor_step = step % c.policy_delay == 0
        search = self._start_search(batch) if actor_step and overlap_search_enabled(c.overlap_search) else None
        with torch.no_grad():
            noise = (torch.randn_like(batch.actions) * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
            next_actions = (self.actor_target(next_obs) + noise).clamp(-1.0, 1.0)
            reward_target = self._td_target(self.critics_target, batch.rewards, batch, next_actions, "min")
            cost_target = self._cost_target(batch, next_actions)
        critic_loss = ensemble_mse_loss(self.critics(obs, batch.actions), reward_target)
        logs = {"critic_loss": critic_loss.item()} | self._cost_critic_step(batch, cost_target)
        self.step_optimizer("critic", critic_loss)
        if actor_step:
            logs |= self._actor_step(batch, search)
            polyak_update(self.actor_target, self.actor, c.polyak)
            polyak_update(self.critics_target, self.critics, c.polyak)
            self._update_cost_targets()
        return logs

    def _search(self, rows: torch.Tensor, actions: torch.Tensor) -> Neighbors:
        """The index's answer for the keys ``[beta * s_row, action]``, timed."""
        assert self.index is not None, "call setup(dataset) before training"
        started = time.perf_counter()
        neighbours = self.index.query_rows(rows, actions)
        self.search_timing["search_s"] += time.perf_counter() - started
        return neighbours

    def _start_search(self, batch: Batch) -> Future[Neighbors]:
        """Submit this actor step's search to the background thread (the actor's current actions)."""
        with torch.no_grad():
            actions = self.actor(batch.observations)
        if self._search_pool is None:
            self._search_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prdc-search")
        return self._search_pool.submit(self._search, batch.indices.to(self.device), actions)

    def _actor_step(self, batch: Batch, search: Future[Neighbors] | None = None) -> dict[str, float]:
        assert self.index is not None, "call setup(dataset) before training"
        actions = self.actor(batch.observations)
        started = time.perf_counter()
        if search is not None:
            neighbours = search.result()
        else:
            neighbours = self._search(batch.indices.to(self.device), actions.detach())
        self.search_timing["wait_s"] += time.perf_counter() - started
        constraint = F.mse_loss(actions, neighbours.kth_actions)
        q = self.critics(batch.observations, actions)[0]
        objective, logs = self._actor_objective(batch, actions, q)
        scale = self.config.alpha / q.abs().mean().detach()
        actor_loss = -scale * objective.mean() + constraint
        self.step_optimizer("actor", actor_loss)
        return logs | {"actor_loss": actor_loss.item(), "dataset_constraint": constraint.item(), "q_scale": scale.item(),
                       "nn_fallback_fraction": self.index.stats.fallback_fraction}

    # Hooks PRDC-Lag fills in; PRDC has no cost critic.
    def _cost_target(self, batch: Batch, next_actions: torch.Tensor) -> torch.Tensor | None:
        return None

    def _cost_critic_step(self, batch: Batch, target: torch.Tensor | None) -> dict[str, float]:
        return {}

    def _update_cost_targets(self) -> None:
        return None

    def _actor_objective(self, batch: Batch, actions: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return q, {}

    def act_tensor(self, observations: torch.Tensor) -> torch.Tensor:
        """The deterministic actor's action."""
        return self.actor(self.normalizer(observations))


class PRDCLag(PRDC):
    """PRDC-Lag: PRDC with twin cost critics and a Lagrange multiplier against the per-step threshold."""

    name = "prdc_lag"
    config_class = PRDCLagConfig

    def __init__(self, config: PRDCLagConfig, context: TaskContext) -> None:
        super().__init__(config, context)
        self.cost_critics = CriticEnsemble(context.obs_dim, context.act_dim, 2, tuple(config.hidden))
        self.cost_critics_target = copy.deepcopy(self.cost_critics).requires_grad_(False)
        self.add_optimizer("cost_critic", self.cost_critics.parameters(), lr=config.critic_lr)
        self.q_threshold = per_step_cost_threshold(context.cost_limit, config.gamma, context.episode_len)
        options: dict[str, Any] = {}
        if config.multiplier != "pid":
            options = {"initial_value": config.initial_lambda, "lr": config.multiplier_lr}
        self.multiplier = make_multiplier(config.multiplier, **options)

    def _cost_target(self, batch: Batch, next_actions: torch.Tensor) -> torch.Tensor:
        return self._td_target(self.cost_critics_target, batch.costs, batch, next_actions, "max")

    def _cost_critic_step(self, batch: Batch, target: torch.Tensor | None) -> dict[str, float]:
        assert target is not None
        loss = ensemble_mse_loss(self.cost_critics(batch.observations, batch.actions), target)
        self.step_optimizer("cost_critic", loss)
        return {"cost_critic_loss": loss.item()}

    def _update_cost_targets(self) -> None:
        polyak_update(self.cost_critics_target, self.cost_critics, self.config.polyak)

    def _actor_objective(self, batch: Batch, actions: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        q_cost = reduce_ensemble(self.cost_critics(batch.observations, actions), "max")
        lam = self.multiplier.value
        self.multiplier.update(q_cost.mean().item(), self.q_threshold)
        return q - lam * q_cost, {"lambda": lam, "policy_q_cost": q_cost.mean().item(), "q_threshold": self.q_threshold}

    def extra_state(self) -> dict[str, Any]:
        """The multiplier's state."""
        return {"multiplier": self.multiplier.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the multiplier."""
        self.multiplier.load_state_dict(state["multiplier"])


__all__ = ["PRDCConfig", "PRDCLagConfig", "PRDC", "PRDCLag", "overlap_search_enabled"]
