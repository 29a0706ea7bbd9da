r"""FISOR: feasibility-guided safe offline RL with a diffusion policy (Zheng et al., ICLR 2024).

Three parts, all trained from the dataset (REFERENCE.md §3, "as implemented by its authors"):

1. **Feasibility critics** (Hamilton-Jacobi reachability, ``saferl.constraints.feasibility``): with
   ``h = 25`` on costly steps and ``-1`` otherwise,
   :math:`Q_h(s,a) \leftarrow (1-\gamma) h + \gamma \max(h, V_h(s'))`, :math:`V_h` fitted to
   :math:`\max_i Q'_{h,i}` by the reversed expectile (the safest in-data action). A state is feasible when
   :math:`V_h(s) \le 0`, an action when :math:`Q_h(s,a) \le 0`.
2. **Reward critics** (IQL): :math:`Q_r \leftarrow \tilde r + \gamma (1 - d) V_r(s')`,
   :math:`V_r` = expectile 0.9 of :math:`\min_i Q'_{r,i}`, rewards scaled
   :math:`\tilde r = r \, T / (R_{\max} - R_{\min})`.
3. **Weighted diffusion behaviour cloning** of :math:`\epsilon_\theta` (DDPM, VP schedule, T = 5):

   .. math::

       \min_\theta \mathbb{E}_{(s,a)}\, w(s,a)\, \lVert \epsilon_\theta(a_t, s, t) - \epsilon \rVert^2,
       \qquad w = \begin{cases}
         \min(e^{3 (Q_r - V_r)}, 100) & V_h(s) \le 0,\ Q_h(s,a) \le 0 \\
         0 & V_h(s) \le 0,\ Q_h(s,a) > 0 \\
         \min(e^{5 (V_h - Q_h)}, 150) & V_h(s) > 0
       \end{cases}

At test time the EMA actor samples ``N = 16`` candidates per state and the one with the least
:math:`Q_h` is taken (``selection="safest"``).

Beyond the paper (each off by default, switch in the config):

* ``selection="reward_aware"``: among candidates with :math:`Q_h \le 0` take the largest :math:`Q_r`;
  if none is feasible, the least :math:`Q_h` (FISOR's low rewards come from ignoring reward at test time).
* ``staged=true``: feasibility critics, then reward critics, then the actor, in consecutive phases
  (``stage_fractions`` of the run), as the paper describes; its code trains all three at once.
* ``feasibility_mode="discounted_cost"``: a budget-aware variant for kappa > 0 that replaces
  :math:`Q_h, V_h` by a discounted cost critic :math:`Q_c, V_c` with threshold
  ``per_step_cost_threshold(kappa, gamma, T)`` in every rule above.

Departures: observations are z-normalised (``normalize_obs``; the authors feed raw observations);
the learning rate decays (cosine) over the run's steps, not a fixed 3e6; the EMA copies the actor for
the first ``ema_warmup`` steps. Diffusion sampling is our own (see ``saferl.networks.diffusion`` for why
not diffusers' scheduler).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import torch

from saferl.algorithm import Algorithm, AlgorithmConfig, ObservationNormalizer, TaskContext
from saferl.constraints.cost_limits import per_step_cost_threshold
from saferl.constraints.critics import (
    CriticEnsemble,
    ValueNetwork,
    ensemble_mse_loss,
    expectile_loss,
    iql_q_target,
    polyak_update,
    reduce_ensemble,
)
from saferl.constraints.feasibility import FeasibilityCritic
from saferl.datasets import Batch, TransitionDataset
from saferl.networks.diffusion import DiffusionDenoiser, DiffusionSchedule, ddpm_sample, diffusion_loss


@dataclass
class FISORConfig(AlgorithmConfig):
    """FISOR (defaults: the authors' implementation)."""

    batch_size: int = 2048
    """Transitions sampled per step; the actor uses all of them, in chunks of actor_batch_size."""
    actor_batch_size: int = 1024
    """Rows per actor update (FISOR: 2 updates of 1024 per step)."""
    critic_batch_size: int = 256
    """Rows (the first ones of the batch) per critic update."""
    gamma: float = 0.99
    """Discount of all critics."""
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of the Q and V networks."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    actor_lr: float = 3e-4
    """AdamW learning rate of the diffusion actor (cosine decay over the run)."""
    polyak: float = 0.005
    """Target network update rate."""
    reward_expectile: float = 0.9
    """IQL expectile of V_r."""
    feasibility_expectile: float = 0.9
    """Reversed expectile of V_h."""
    cost_scale: float = 25.0
    """h of a costly step (safe steps have h = -1)."""
    feasibility_mode: Literal["hj", "discounted_cost"] = "hj"
    """'hj' (FISOR) or 'discounted_cost' (budget-aware, threshold from cost_limit)."""
    reward_temperature: float = 3.0
    """Temperature of the advantage weights in feasible states."""
    reward_weight_clip: float = 100.0
    """Upper clip of the advantage weights."""
    feasibility_temperature: float = 5.0
    """Temperature of the feasibility weights in infeasible states."""
    feasibility_weight_clip: float = 150.0
    """Upper clip of the feasibility weights."""
    reward_scale: float | None = None
    """Reward multiplier; None: T / (R_max - R_min) as FISOR."""
    diffusion_steps: int = 5
    """DDPM steps T."""
    beta_min: float = 0.1
    """VP schedule beta_min."""
    beta_max: float = 10.0
    """VP schedule beta_max."""
    actor_width: int = 256
    """Width of the LN-ResNet denoiser."""
    actor_blocks: int = 3
    """Residual blocks of the denoiser."""
    actor_dropout: float = 0.1
    """Dropout in the residual blocks."""
    ema_rate: float = 0.001
    """EMA rate of the acting actor."""
    ema_warmup: int = 1000
    """Steps during which the EMA actor copies the actor."""
    num_candidates: int = 16
    """Actions sampled per state at test time."""
    selection: Literal["safest", "reward_aware"] = "safest"
    """'safest' (FISOR: argmin Q_h) or 'reward_aware' (max Q_r among feasible candidates)."""
    staged: bool = False
    """Train feasibility critics, then reward critics, then the actor (the paper's three stages)."""
    stage_fractions: list[float] = field(default_factory=lambda: [0.3, 0.3])
    """Fractions of the run for the feasibility and reward stages when staged (the actor gets the rest)."""
    normalize_obs: bool = True
    """z-normalise observations with the dataset's statistics."""


class FISOR(Algorithm):
    """Feasibility-guided diffusion policy."""

    name = "fisor"
    config_class = FISORConfig
    act_time_fields = ("num_candidates", "selection")

    def __init__(self, config: FISORConfig, context: TaskContext) -> None:
        super().__init__(config, context)
        c, obs_dim, act_dim = config, context.obs_dim, context.act_dim
        self.normalizer = ObservationNormalizer(obs_dim, c.normalize_obs)
        threshold = None
        if c.feasibility_mode == "discounted_cost":
            threshold = per_step_cost_threshold(context.cost_limit, c.gamma, context.episode_len)
        self.feasibility = FeasibilityCritic(
            obs_dim, act_dim, mode=c.feasibility_mode, hidden=tuple(c.critic_hidden), gamma=c.gamma,
            expectile=c.feasibility_expectile, cost_scale=c.cost_scale, threshold=threshold,
            target_update_rate=c.polyak,
        )
        self.reward_critics = CriticEnsemble(obs_dim, act_dim, 2, tuple(c.critic_hidden))
        self.reward_target = copy.deepcopy(self.reward_critics).requires_grad_(False)
        self.reward_value = ValueNetwork(obs_dim, tuple(c.critic_hidden))
        self.actor = DiffusionDenoiser(obs_dim, act_dim, c.actor_width, c.actor_blocks, c.actor_dropout)
        self.ema_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.schedule = DiffusionSchedule(c.diffusion_steps, c.beta_min, c.beta_max)
        span = context.reward_max - context.reward_min
        self.reward_scale = c.reward_scale if c.reward_scale is not None else context.episode_len / span
        self.add_optimizer("feasibility", self.feasibility.trainable_parameters(), lr=c.critic_lr)
        self.add_optimizer("reward", [*self.reward_critics.parameters(), *self.reward_value.parameters()], lr=c.critic_lr)
        actor_opt = self.add_optimizer("actor", self.actor.parameters(), lr=c.actor_lr, kind="adamw")
        updates = max(1, context.total_steps) * max(1, c.batch_size // c.actor_batch_size)
        self.schedulers["actor"] = torch.optim.lr_scheduler.CosineAnnealingLR(actor_opt, T_max=updates)

    def setup(self, dataset: TransitionDataset) -> TransitionDataset:
        """Fit the observation normaliser; FISOR learns from every transition."""
        self.normalizer.fit(dataset.observations)
        return dataset

    # ------------------------------------------------------------------ ALGO LOGIC
    def _phases(self, step: int) -> tuple[bool, bool, bool]:
        """Which of (feasibility critics, reward critics, actor) train at ``step``."""
        if not self.config.staged:
            return True, True, True
        first, second = self.config.stage_fractions
        fraction = step / max(1, self.context.total_steps)
        return fraction < first, first <= fraction < first + second, fraction >= first + second

    def _normalized(self, batch: Batch) -> Batch:
        return Batch(**{**batch.__dict__, "observations": self.normalizer(batch.observations),
                        "next_observations": self.normalizer(batch.next_observations)})

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        """Critic updates on the first critic_batch_size rows, weighted diffusion BC on all rows."""
        c = self.config
        batch = self._normalized(batch)
        train_feasibility, train_reward, train_actor = self._phases(step)
        critic_batch = batch.rows(0, c.critic_batch_size)
        logs: dict[str, float] = {}
        if train_feasibility:
            losses = self.feasibility.losses(critic_batch)
            self.step_optimizer("feasibility", losses["q_loss"] + losses["v_loss"])
            self.feasibility.update_target()
            logs |= {"feasibility_q_loss": losses["q_loss"].item(), "feasibility_v_loss": losses["v_loss"].item()}
        if train_reward:
            logs |= self._reward_update(critic_batch)
        if train_actor:
            for start in range(0, len(batch), c.actor_batch_size):
                logs |= self._actor_update(batch.rows(start, start + c.actor_batch_size), step)
        return logs

    def _reward_update(self, batch: Batch) -> dict[str, float]:
        c = self.config
        with torch.no_grad():
            target = iql_q_target(batch.rewards * self.reward_scale, c.gamma, self.reward_value(batch.next_observations),
                                  batch.terminals)
            q_target = reduce_ensemble(self.reward_target(batch.observations, batch.actions), "min")
        q_loss = ensemble_mse_loss(self.reward_critics(batch.observations, batch.actions), target)
        v_loss = expectile_loss(q_target - self.reward_value(batch.observations), c.reward_expectile)
        self.step_optimizer("reward", q_loss + v_loss)
        polyak_update(self.reward_target, self.reward_critics, c.polyak)
        return {"reward_q_loss": q_loss.item(), "reward_v_loss": v_loss.item()}

    @torch.no_grad()
    def weights(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """FISOR's per-sample BC weights and the feasible-state mask (observations already normalised)."""
        c = self.config
        threshold = self.feasibility.threshold
        v_h = self.feasibility.state_value(obs)
        q_h = self.feasibility.action_value(obs, actions)
        q_r = reduce_ensemble(self.reward_target(obs, actions), "min")
        v_r = self.reward_value(obs)
        feasible_state, feasible_action = v_h <= threshold, q_h <= threshold
        reward_weight = torch.exp(c.reward_temperature * (q_r - v_r)).clamp(max=c.reward_weight_clip)
        recovery_weight = torch.exp(c.feasibility_temperature * (v_h - q_h)).clamp(max=c.feasibility_weight_clip)
        weight = torch.where(
            feasible_state, torch.where(feasible_action, reward_weight, torch.zeros_like(q_h)), recovery_weight
        )
        return weight, feasible_state

    def _actor_update(self, batch: Batch, step: int) -> dict[str, float]:
        c = self.config
        weight, feasible_state = self.weights(batch.observations, batch.actions)
        loss = (weight * diffusion_loss(self.actor, self.schedule, batch.observations, batch.actions)).mean()
        self.step_optimizer("actor", loss)
        if step < c.ema_warmup:
            self.ema_actor.load_state_dict(self.actor.state_dict())
        else:
            polyak_update(self.ema_actor, self.actor, c.ema_rate)
        return {"actor_loss": loss.item(), "mean_weight": weight.mean().item(),
                "feasible_state_fraction": feasible_state.float().mean().item()}

    @torch.no_grad()
    def feasibility_margin(self, observations: torch.Tensor) -> torch.Tensor:
        """``V_h(s) - threshold``: feasible states have a margin <= 0."""
        return self.feasibility.state_value(self.normalizer(observations)) - self.feasibility.threshold

    def act_tensor(self, observations: torch.Tensor) -> torch.Tensor:
        """Sample num_candidates actions per state from the EMA actor and select one (see ``selection``)."""
        c = self.config
        obs = self.normalizer(observations)
        n, batch = c.num_candidates, obs.shape[0]
        repeated = obs.repeat_interleave(n, dim=0)
        candidates = ddpm_sample(self.ema_actor, self.schedule, obs, self.context.act_dim, samples_per_state=n)
        q_h = self.feasibility.action_value(repeated, candidates).view(batch, n)
        if c.selection == "reward_aware":
            q_r = reduce_ensemble(self.reward_target(repeated, candidates), "min").view(batch, n)
            feasible = q_h <= self.feasibility.threshold
            score = torch.where(feasible.any(dim=1, keepdim=True), torch.where(feasible, q_r, -torch.inf), -q_h)
        else:
            score = -q_h
        best = score.argmax(dim=1)
        return candidates.view(batch, n, -1)[torch.arange(batch), best]


__all__ = ["FISORConfig", "FISOR"]
