r"""OGSRL: offline guarded safe RL, model-based with an out-of-distribution guardian (NeurIPS 2025).

OGSRL learns a model of the data (transitions, rewards, costs) and solves, on rollouts of that model, a
constrained MDP with two constraints (REFERENCE.md §5): the safety cost, and an **OOD cost**
:math:`o(s, a) = 1[(s, a) \notin \hat{\mathcal D}]` that the guardian charges at *every* model step, so
that whole rollout trajectories, not only actions, stay where the data are. For :math:`x \in \{c, o\}`:

.. math::

    \max_\pi J_r(\pi) \;\; \text{s.t.} \;\; J_x(\pi) = \mathbb E_{s_0 \sim \mathcal D_0}
    Q_x^\pi(s_0, \pi(s_0)) \le d_x, \qquad
    d_c = \kappa\, \frac{1 - \gamma^T}{(1-\gamma) T}, \quad d_o = \rho T\, \frac{1 - \gamma^T}{(1-\gamma) T}

with :math:`\mathcal D_0` the dataset's episode starts, :math:`\kappa` the episodic cost limit and
:math:`\rho` the allowed per-step OOD rate (``ood_rate_limit``), both via ``per_step_cost_threshold``.

1. **Model** (``dynamics="ensemble"``): ``ensemble_size`` MLPs on :math:`[\bar s, a]` with Gaussian heads
   for the standardised :math:`(\Delta s, r, c)` (soft-bounded log-variances, MBPO) and a termination
   logit, fitted during the first ``model_fraction`` of the run by β-NLL + BCE, each member on its own
   bootstrap. ``dynamics="knn"`` is the released code's model: the logged :math:`(s', r, c, d)` of the
   nearest dataset pair in :math:`[\bar s, a]` (scipy cKDTree built in ``setup``).
2. **Guardian**: the core's ``KernelDensityGuardian`` on the data's joint :math:`(s, a)`.
3. **Branched rollouts** (MBPO/MOPO): every ``rollout_every`` steps, ``rollout_batch_size`` dataset states
   are rolled ``rollout_horizon`` steps with the policy into a FIFO buffer of
   :math:`(s, a, \hat r, \hat c, o(s, a), \hat s', \hat d)`; batches mix ``real_ratio`` real rows
   (labelled by the guardian too) with buffer rows.
4. **SAC-Lagrangian**: reward, cost and OOD critic ensembles; the actor minimises
   :math:`\mathbb E[\alpha\log\pi - \min_i Q_{r,i} + \lambda_c \max_i Q_{c,i} + \lambda_o \max_i Q_{o,i}]`
   and each multiplier steps on :math:`\hat J_x - d_x`, :math:`\hat J_x` the max-ensemble critic at
   :math:`(s_0, a_0 \sim \pi(s_0))`.

**Why not CPO, as the paper.** CPO is on-policy: each update needs fresh full-episode returns from the
start distribution to estimate :math:`J_c` and cost advantages, then a conjugate-gradient trust-region
step. Offline, the only trajectories are model rollouts, and full-horizon ones compound the model's
error (why MBPO/MOPO branch short rollouts from data). Short branches give no episode returns, so the
constraint values must come from bootstrapped cost critics, and an off-policy Lagrangian actor-critic is
the optimiser that uses them.

Other departures (docs/algorithms/ogsrl.md): a learned ensemble by default (kNN as an option); plain
discounted thresholds, not the paper's tightened ones, so no high-probability guarantee; the KDE guardian
as tested, not the theory's sum-of-squares set; real transitions alongside model ones; rollouts go on
after an OOD step (the cost is the signal); β-NLL instead of NLL (plain NLL explained the point robot's
rare costly steps away as noise); constraint values measured at episode starts.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import nn

from saferl.algorithm import Algorithm, AlgorithmConfig, ObservationNormalizer, TaskContext
from saferl.constraints.cost_limits import per_step_cost_threshold
from saferl.constraints.critics import CriticEnsemble, ensemble_mse_loss, polyak_update, reduce_ensemble
from saferl.constraints.multipliers import make_multiplier
from saferl.constraints.ood import KernelDensityGuardian
from saferl.datasets import Batch, TransitionDataset
from saferl.networks.mlp import MLP, EnsembleMLP

ACTOR_CRITIC_LOGS = ("reward_q_loss", "cost_q_loss", "ood_q_loss", "actor_loss", "alpha", "q_cost", "q_ood",
                     "lambda_cost", "lambda_ood", "rollout_ood_rate")
MODEL_LOGS = ("model_nll", "model_mse", "model_done_bce")


@dataclass
class OGSRLConfig(AlgorithmConfig):
    """OGSRL (model-based, guarded, SAC-Lagrangian)."""

    batch_size: int = 256
    """Transitions per gradient step (real and model rows together)."""
    gamma: float = 0.99
    """Discount of all critics."""
    dynamics: Literal["ensemble", "knn"] = "ensemble"
    """'ensemble' (probabilistic ensemble) or 'knn' (the released code's 1-NN lookup of logged s')."""
    ensemble_size: int = 5
    """Members of the dynamics ensemble."""
    model_hidden: list[int] = field(default_factory=lambda: [200, 200, 200])
    """Hidden widths of each dynamics member."""
    model_lr: float = 1e-3
    """Adam learning rate of the dynamics ensemble."""
    nll_beta: float = 0.5
    """β of the β-NLL loss of the ensemble (0: plain Gaussian NLL as MBPO; 0.5: Seitzer et al., 2022)."""
    model_fraction: float = 0.2
    """Fraction of the run's steps spent fitting the ensemble before the policy trains (0 for 'knn')."""
    guardian_bandwidth: float = 0.535
    """KDE bandwidth in [-1, 1]-scaled (s, a) units (OGSRL: 0.535)."""
    guardian_percentile: float = 5.0
    """Percentile of training log densities below which a pair is OOD (OGSRL: 5)."""
    guardian_support: int = 5000
    """Support points of the KDE (uniform subsample of the data)."""
    rollout_horizon: int = 5
    """Steps H of each branched model rollout."""
    rollout_batch_size: int = 1000
    """Dataset states rolled out per rollout round."""
    rollout_every: int = 250
    """Gradient steps between rollout rounds."""
    rollout_retain: int = 5
    """Rollout rounds the FIFO buffer holds."""
    real_ratio: float = 0.5
    """Fraction of each batch taken from the dataset (the rest from model rollouts)."""
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of the actor and the critics."""
    num_critics: int = 2
    """Members of each critic ensemble (reward, cost, OOD)."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    alpha_lr: float = 3e-4
    """Adam learning rate of the entropy temperature."""
    initial_alpha: float = 0.1
    """Initial entropy temperature alpha."""
    polyak: float = 0.005
    """Target network update rate."""
    ood_constraint: bool = True
    """Constrain the OOD cost (false: the guardian only measures; the ablation of the demo)."""
    ood_rate_limit: float = 0.1
    """Allowed per-step OOD rate rho (the guardian flags about guardian_percentile % of the data itself)."""
    multiplier: str = "pid"
    """Multiplier kind of both constraints: 'pid' (damped; OSRL's gains by default), 'lagrange' or 'log_lagrange'."""
    multiplier_options: dict[str, float] = field(default_factory=dict)
    """Keyword options of the multiplier (e.g. {kp: 0.05} for pid, {lr: 0.01} for lagrange); empty: defaults."""
    normalize_obs: bool = True
    """z-normalise observations for the networks (the guardian keeps its own [-1, 1] scaling)."""


class GaussianEnsembleModel(nn.Module):
    """``n`` MLPs mapping ``[s̄, a]`` to a Gaussian over standardised ``(Δs, r, c)`` and a termination logit."""

    def __init__(self, n: int, in_dim: int, target_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.target_dim = target_dim
        self.net = EnsembleMLP(n, in_dim, 2 * target_dim + 1, hidden, activation="silu")
        self.max_logvar = nn.Parameter(torch.full((target_dim,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((target_dim,), -10.0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Means, soft-bounded log-variances ``(n, B, target_dim)`` and termination logits ``(n, B)``."""
        out = self.net(x)
        mean, raw_logvar, done_logit = out.split([self.target_dim, self.target_dim, 1], dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw_logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar, done_logit.squeeze(-1)


class TanhGaussianActor(nn.Module):
    """SAC's squashed Gaussian policy on normalised observations."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.net = MLP(obs_dim, 2 * act_dim, hidden)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of the pre-tanh Gaussian."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(-5.0, 2.0).exp()

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action in (-1, 1) and its log-probability (tanh change of variables)."""
        mean, std = self(obs)
        pre_tanh = mean + std * torch.randn_like(mean)
        log_prob = torch.distributions.Normal(mean, std).log_prob(pre_tanh)
        log_prob = log_prob - 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
        return torch.tanh(pre_tanh), log_prob.sum(-1)


class OGSRL(Algorithm):
    """Model-based safe offline RL whose rollouts are kept in distribution by an OOD-cost constraint."""

    name = "ogsrl"
    config_class = OGSRLConfig

    def __init__(self, config: OGSRLConfig, context: TaskContext) -> None:
        super().__init__(config, context)
        c, obs_dim, act_dim = config, context.obs_dim, context.act_dim
        hidden = tuple(c.hidden)
        self.normalizer = ObservationNormalizer(obs_dim, c.normalize_obs)
        self.model: GaussianEnsembleModel | None = None
        if c.dynamics == "ensemble":
            self.model = GaussianEnsembleModel(c.ensemble_size, obs_dim + act_dim, obs_dim + 2, tuple(c.model_hidden))
            self.add_optimizer("model", self.model.parameters(), lr=c.model_lr)
        elif c.dynamics != "knn":
            raise ValueError(f"dynamics must be 'ensemble' or 'knn', got {c.dynamics!r}")
        self.register_buffer("target_mean", torch.zeros(obs_dim + 2))
        self.register_buffer("target_std", torch.ones(obs_dim + 2))
        self.model_steps = int(c.model_fraction * context.total_steps) if self.model is not None else 0
        self.actor = TanhGaussianActor(obs_dim, act_dim, hidden)
        self.critics = nn.ModuleDict({k: CriticEnsemble(obs_dim, act_dim, c.num_critics, hidden)
                                      for k in ("reward", "cost", "ood")})
        self.targets = copy.deepcopy(self.critics).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(c.initial_alpha)))
        self.add_optimizer("actor", self.actor.parameters(), lr=c.actor_lr)
        self.add_optimizer("critics", self.critics.parameters(), lr=c.critic_lr)
        self.add_optimizer("alpha", [self.log_alpha], lr=c.alpha_lr)
        self.cost_multiplier = make_multiplier(c.multiplier, **c.multiplier_options)
        self.ood_multiplier = make_multiplier(c.multiplier, **c.multiplier_options)
        self.cost_threshold = per_step_cost_threshold(context.cost_limit, c.gamma, context.episode_len)
        self.ood_threshold = per_step_cost_threshold(c.ood_rate_limit * context.episode_len, c.gamma,
                                                     context.episode_len)
        # The rollout buffer is module state (buffers), so checkpoints and resumes carry it exactly.
        capacity = c.rollout_batch_size * c.rollout_horizon * c.rollout_retain
        for name, width in (("observations", obs_dim), ("actions", act_dim), ("next_observations", obs_dim)):
            self.register_buffer(f"rollout_{name}", torch.zeros(capacity, width))
        for name in ("rewards", "costs", "ood_costs", "terminals"):
            self.register_buffer(f"rollout_{name}", torch.zeros(capacity))
        self.register_buffer("rollout_written", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_rollout_ood_rate", torch.tensor(math.nan))
        self.guardian = KernelDensityGuardian(c.guardian_bandwidth, c.guardian_percentile, c.guardian_support,
                                              calibration_size=c.guardian_support)

    def setup(self, dataset: TransitionDataset) -> TransitionDataset:
        """Fit the normalisers and the guardian, label the data's OOD costs, build the kNN index if asked."""
        self.normalizer.fit(dataset.observations)
        targets = np.concatenate([dataset.next_observations - dataset.observations, dataset.rewards[:, None],
                                  dataset.costs[:, None]], axis=1)
        # A constant target (BallRun's last observation moves by 1e-14) gets scale 0: the model predicts it
        # exactly at its mean. Any model error there leaves the data's range on that axis, which the
        # observation normaliser (std + 1e-3) and the guardian's [-1, 1] scaling blow up.
        std = targets.std(0)
        self.target_mean.copy_(torch.as_tensor(targets.mean(0)))
        self.target_std.copy_(torch.as_tensor(np.where(std > 1e-6, std, 0.0)))
        self.guardian.to(self.device).fit(dataset.observations, dataset.actions)
        self.data_ood_costs = self.guardian.ood_cost(dataset.observations, dataset.actions)
        tensors = {k: v.to(self.device) for k, v in dataset.tensors().items()}
        self.data = tensors
        self.start_observations = tensors["observations"][torch.as_tensor(dataset.episode_starts, device=self.device)]
        if self.config.dynamics == "knn":
            keys = torch.cat([self.normalizer(tensors["observations"]), tensors["actions"]], dim=1)
            self.knn_tree = cKDTree(keys.cpu().numpy().astype(np.float64))
        return dataset

    # ------------------------------------------------------------------ ALGO LOGIC: the model
    def _model_inputs(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.normalizer(obs), act], dim=-1)

    def model_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Gaussian NLL of standardised ``(Δs, r, c)``, MSE of the means, termination BCE; ``loss`` is β-NLL + BCE.

        Each member fits its own bootstrap of the batch. β-NLL weighs each term by ``stop_grad(σ²)^β``: with
        plain NLL (β = 0) the ensemble learns a confident fit of the common zero-cost steps and explains the
        rare costly ones away as noise (on the point robot it predicted 0.06 for steps whose cost is 1).
        """
        x = self._model_inputs(batch.observations, batch.actions)
        y = torch.cat([batch.next_observations - batch.observations, batch.rewards[:, None],
                       batch.costs[:, None]], dim=1)
        y = (y - self.target_mean) / self.target_std.clamp_min(1e-6)
        rows = torch.randint(len(batch), (self.model.net.n_members, len(batch)), device=x.device)
        mean, logvar, done_logit = self.model(x[rows])
        nll = (mean - y[rows]).square() * torch.exp(-logvar) + logvar
        beta_nll = (nll * torch.exp(self.config.nll_beta * logvar.detach())).sum(-1).mean()
        bce = F.binary_cross_entropy_with_logits(done_logit, batch.terminals[rows])
        bounds = 0.01 * (self.model.max_logvar.sum() - self.model.min_logvar.sum())
        return {"nll": nll.sum(-1).mean(), "mse": (mean - y[rows]).square().mean(), "bce": bce,
                "loss": beta_nll + bce + bounds}

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Model step: ``(s', r, c, terminal)`` for raw observations and actions (one random member per row)."""
        if self.model is None:
            keys = self._model_inputs(obs, act).cpu().numpy().astype(np.float64)
            rows = torch.as_tensor(self.knn_tree.query(keys, k=1)[1], device=obs.device)
            return (self.data["next_observations"][rows], self.data["rewards"][rows], self.data["costs"][rows],
                    self.data["terminals"][rows])
        mean, logvar, done_logit = self.model(self._model_inputs(obs, act))
        member = torch.randint(mean.shape[0], (obs.shape[0],), device=obs.device)
        rows = torch.arange(obs.shape[0], device=obs.device)
        mean, std = mean[member, rows], (0.5 * logvar[member, rows]).exp()
        out = mean * self.target_std + self.target_mean
        delta = (mean + std * torch.randn_like(std))[:, :-2] * self.target_std[:-2] + self.target_mean[:-2]
        terminal = (done_logit[member, rows] > 0).float()
        return obs + delta, out[:, -2], out[:, -1].clamp_min(0.0), terminal

    @torch.no_grad()
    def rollout(self, start_observations: torch.Tensor, horizon: int) -> dict[str, torch.Tensor]:
        """Roll the current policy through the model; every entry is ``(horizon, B, ...)``.

        ``ood_costs`` is the guardian's verdict on each step's ``(s, a)``; ``alive`` is False after a
        predicted termination (those steps are not transitions).
        """
        obs, alive, steps = start_observations, torch.ones(len(start_observations), dtype=torch.bool,
                                                           device=start_observations.device), []
        for _ in range(horizon):
            act, _ = self.actor.sample(self.normalizer(obs))
            next_obs, reward, cost, terminal = self.predict(obs, act)
            steps.append({"observations": obs, "actions": act, "rewards": reward, "costs": cost,
                          "ood_costs": self.guardian.ood_cost(obs, act), "next_observations": next_obs,
                          "terminals": terminal, "alive": alive})
            alive, obs = alive & (terminal == 0), next_obs
        return {key: torch.stack([step[key] for step in steps]) for key in steps[0]}

    def _refill_buffer(self) -> None:
        c = self.config
        starts = self.data["observations"][torch.randint(self.data["observations"].shape[0],
                                                         (c.rollout_batch_size,), device=self.device)]
        rollout = self.rollout(starts, c.rollout_horizon)
        alive = rollout.pop("alive")
        self.last_rollout_ood_rate.copy_(rollout["ood_costs"][alive].mean())
        capacity = self.rollout_rewards.shape[0]
        slots = (self.rollout_written + torch.arange(int(alive.sum()), device=self.device)) % capacity
        for key, values in rollout.items():
            getattr(self, f"rollout_{key}")[slots] = values[alive]
        self.rollout_written += slots.numel()

    def _mixed_batch(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``real_ratio`` of the rows from the dataset (with guardian OOD labels), the rest from the buffer."""
        n_real = max(1, round(self.config.real_ratio * len(batch)))
        real = {"observations": batch.observations, "actions": batch.actions, "rewards": batch.rewards,
                "costs": batch.costs, "ood_costs": self.data_ood_costs[batch.indices],
                "next_observations": batch.next_observations, "terminals": batch.terminals}
        stored = min(int(self.rollout_written), self.rollout_rewards.shape[0])
        rows = torch.randint(stored, (len(batch) - n_real,), device=self.device)
        return {k: torch.cat([v[:n_real], getattr(self, f"rollout_{k}")[rows]]) for k, v in real.items()}

    # ------------------------------------------------------------------ ALGO LOGIC: SAC-Lagrangian
    def update(self, batch: Batch, step: int) -> dict[str, float]:
        """Fit the model during its phase; then roll out, and take critic, actor, alpha and multiplier steps."""
        if step < self.model_steps:
            losses = self.model_losses(batch)
            self.step_optimizer("model", losses["loss"])
            return {"model_nll": losses["nll"].item(), "model_mse": losses["mse"].item(),
                    "model_done_bce": losses["bce"].item(), **dict.fromkeys(ACTOR_CRITIC_LOGS, math.nan)}
        if (step - self.model_steps) % self.config.rollout_every == 0:
            self._refill_buffer()
        data = self._mixed_batch(batch)
        logs = dict.fromkeys(MODEL_LOGS, math.nan) | self._critic_update(data) | self._actor_update(data)
        return logs | {"rollout_ood_rate": self.last_rollout_ood_rate.item()}

    def _critic_update(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        c = self.config
        obs, next_obs = self.normalizer(data["observations"]), self.normalizer(data["next_observations"])
        with torch.no_grad():
            next_act, next_log_prob = self.actor.sample(next_obs)
            not_done = c.gamma * (1.0 - data["terminals"])
            soft_value = reduce_ensemble(self.targets["reward"](next_obs, next_act), "min")
            targets = {"reward": data["rewards"] + not_done * (soft_value - self.log_alpha.exp() * next_log_prob)}
            for key, signal in (("cost", "costs"), ("ood", "ood_costs")):
                targets[key] = data[signal] + not_done * reduce_ensemble(self.targets[key](next_obs, next_act), "mean")
        losses = {key: ensemble_mse_loss(self.critics[key](obs, data["actions"]), targets[key]) for key in targets}
        self.step_optimizer("critics", sum(losses.values()))
        polyak_update(self.targets, self.critics, c.polyak)
        return {f"{key}_q_loss": loss.item() for key, loss in losses.items()}

    def _actor_update(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        obs = self.normalizer(data["observations"])
        act, log_prob = self.actor.sample(obs)
        self.critics.requires_grad_(False)  # the actor's loss differentiates through the critics, not into them
        q_reward = reduce_ensemble(self.critics["reward"](obs, act), "min")
        q_cost = reduce_ensemble(self.critics["cost"](obs, act), "max")
        q_ood = reduce_ensemble(self.critics["ood"](obs, act), "max")
        lambda_cost = self.cost_multiplier.value
        lambda_ood = self.ood_multiplier.value if self.config.ood_constraint else 0.0
        alpha = self.log_alpha.exp()
        loss = (alpha.detach() * log_prob - q_reward + lambda_cost * q_cost + lambda_ood * q_ood).mean()
        self.step_optimizer("actor", loss)
        self.critics.requires_grad_(True)
        alpha_loss = -(self.log_alpha * (log_prob.detach() - self.context.act_dim).mean())
        self.step_optimizer("alpha", alpha_loss)
        j_cost, j_ood = self.constraint_values(len(obs))
        self.cost_multiplier.update(j_cost, self.cost_threshold)
        if self.config.ood_constraint:
            self.ood_multiplier.update(j_ood, self.ood_threshold)
        return {"actor_loss": loss.item(), "alpha": alpha.item(), "q_cost": j_cost, "q_ood": j_ood,
                "lambda_cost": lambda_cost, "lambda_ood": lambda_ood}

    @torch.no_grad()
    def constraint_values(self, n: int) -> tuple[float, float]:
        """``E_{s0}[max_i Q_x,i(s0, a)]``, ``a ~ pi(s0)``, for x = cost, OOD over ``n`` sampled episode starts."""
        starts = self.start_observations[torch.randint(len(self.start_observations), (n,), device=self.device)]
        obs = self.normalizer(starts)
        act, _ = self.actor.sample(obs)
        return tuple(reduce_ensemble(self.critics[k](obs, act), "max").mean().item() for k in ("cost", "ood"))

    def act_tensor(self, observations: torch.Tensor) -> torch.Tensor:
        """The policy's deterministic action ``tanh(mean)``."""
        return torch.tanh(self.actor(self.normalizer(observations))[0])

    def extra_state(self) -> dict[str, object]:
        """Both multipliers (optimiser moments or PID integrator)."""
        return {"cost_multiplier": self.cost_multiplier.state_dict(),
                "ood_multiplier": self.ood_multiplier.state_dict()}

    def load_extra_state(self, state: dict[str, object]) -> None:
        """Restore both multipliers."""
        self.cost_multiplier.load_state_dict(state["cost_multiplier"])
        self.ood_multiplier.load_state_dict(state["ood_multiplier"])


__all__ = ["OGSRLConfig", "OGSRL", "GaussianEnsembleModel", "TanhGaussianActor"]
