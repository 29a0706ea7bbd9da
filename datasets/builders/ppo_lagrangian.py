r"""PPO-Lagrangian: the online safe RL learner that makes the behaviour policies of saferl's datasets.

DSRL made its data with Lagrangian agents trained online while the episodic cost limit was annealed,
keeping what they did all along training. This module is a compact learner of that family, with the
limit annealed on a schedule and policy snapshots saved along the way (:class:`PPOLagrangian`).

**Problem.** A constrained MDP: maximise :math:`J_r(\pi) = \mathbb{E}[\sum_t r_t]` subject to
:math:`J_c(\pi) = \mathbb{E}[\sum_t c_t] \le d_k`, with the episodic (undiscounted) cost limit
:math:`d_k` changing with training progress :math:`p_k \in [0, 1]` (:class:`CostLimitSchedule`,
piecewise-linear, e.g. 5 -> 100 or 100 -> 5). It is solved as the saddle point of
:math:`L(\pi, \lambda) = J_r(\pi) - \lambda (J_c(\pi) - d_k)`, :math:`\lambda \ge 0`.

**Multiplier.** Projected gradient ascent on :math:`-L` in :math:`\lambda`, once per iteration, before the
policy step:

.. math::

    \lambda_{k+1} = \max\bigl(0,\; \lambda_k + \eta_\lambda\,(\hat J_c - d_k)\bigr),

where :math:`\hat J_c` is the mean cost return of the last ``cost_window`` finished episodes. So
:math:`\lambda` grows while episodes cost more than the limit and shrinks back to 0 when they cost less.

**Policy.** A Gaussian :math:`\pi(a|s) = \mathcal N(\mu_\theta(\bar s), \mathrm{diag}(\sigma^2))`, with
:math:`\mu_\theta` an MLP (tanh) of the normalised observation :math:`\bar s = \mathrm{clip}((s - m)/\sqrt{v + 10^{-8}}, \pm 10)`
(running mean :math:`m` and variance :math:`v`, frozen during a rollout) and a state-independent
:math:`\log\sigma`. Sampled actions are clipped to the box ``[-1, 1]`` before they reach the simulator; the
likelihoods use the unclipped samples.

**Critics and advantages.** Two MLP value functions :math:`V_r, V_c` fit the discounted returns of scaled
rewards :math:`r_t / \sigma_{G_r}` and costs :math:`c_t / \sigma_{G_c}` (:math:`\sigma_G` the running standard
deviation of the discounted return, as in reward scaling). Advantages come from
GAE(:math:`\gamma, \lambda_{GAE}`),

.. math::

    \delta_t = r_t + \gamma (1 - \mathrm{term}_t) V(s_{t+1}) - V(s_t), \qquad
    A_t = \delta_t + \gamma \lambda_{GAE} (1 - \mathrm{end}_t) A_{t+1},

separately for reward and cost, where :math:`\mathrm{term}_t` marks a true termination (no bootstrap)
and :math:`\mathrm{end}_t` any episode end: at a time-limit truncation :math:`V(s_{t+1})` is the value of
the episode's final state, so truncated episodes are bootstrapped. Each advantage is standardised over
the batch and the two are combined as

.. math::

    A^{\lambda}_t = \frac{\hat A^r_t - \lambda \hat A^c_t}{1 + \lambda},

the advantage of :math:`L` divided by :math:`1 + \lambda` so that its scale stays bounded as
:math:`\lambda` grows.

**Update.** ``update_epochs`` passes of minibatch Adam on

.. math::

    \mathcal L = -\mathbb E\bigl[\min(\rho_t A^\lambda_t,\ \mathrm{clip}(\rho_t, 1 \pm \epsilon) A^\lambda_t)\bigr]
    - \beta\, \mathcal H[\pi] + \tfrac12 \mathbb E\bigl[(V_r - \hat G^r)^2 + (V_c - \hat G^c)^2\bigr],
    \qquad \rho_t = \frac{\pi_\theta(a_t|s_t)}{\pi_{\text{old}}(a_t|s_t)},

with gradient-norm clipping, stopping the epochs early once the approximate KL to the rollout policy
exceeds ``1.5 * target_kl``.

**Snapshots.** The initial policy and one after each fraction ``snapshot_fractions`` of the run (the
last at the end; fractions that round to the same iteration give one snapshot) are kept as :class:`~saferl.datasets.builders.snapshots.PolicySnapshot` (normaliser + mean network +
:math:`\log\sigma`), each with the training statistics of its moment.

Deterministic by ``seed`` on one machine with ``torch.set_num_threads(1)`` (the scripts set it).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..envs import make_vector_env
from ..registry import TaskSpec, get_task
from .snapshots import PolicySnapshot, scale_to_box


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class CostLimitSchedule:
    """A piecewise-linear episodic cost limit ``d(p)`` over training progress ``p in [0, 1]``.

    ``points`` are ``(progress, limit)`` pairs with increasing progress; before the first and after
    the last point the limit stays constant. ``CostLimitSchedule(((0, 5), (1, 100)))`` anneals 5 -> 100.
    """

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a cost-limit schedule needs at least one (progress, limit) point")
        progress = [float(p) for p, _ in self.points]
        if any(b < a for a, b in zip(progress, progress[1:])):
            raise ValueError(f"schedule progress values must increase, got {progress}")
        if any(limit < 0 for _, limit in self.points):
            raise ValueError(f"cost limits must be >= 0, got {[limit for _, limit in self.points]}")

    def __call__(self, progress: float) -> float:
        """The limit at ``progress``."""
        xs = [float(p) for p, _ in self.points]
        ys = [float(limit) for _, limit in self.points]
        return float(np.interp(progress, xs, ys))

    @classmethod
    def linear(cls, start: float, end: float) -> "CostLimitSchedule":
        """From ``start`` at progress 0 to ``end`` at progress 1."""
        return cls(((0.0, float(start)), (1.0, float(end))))


@dataclass(frozen=True)
class PPOLagConfig:
    """Settings of one PPO-Lagrangian run (defaults suit the Bullet tasks)."""

    total_steps: int = 300_000
    """Environment steps of the whole run (all sub-environments together)."""
    num_envs: int = 8
    """Sub-environments stepped together in this process."""
    rollout_steps: int = 256
    """Steps per sub-environment per iteration (batch = num_envs * rollout_steps)."""
    gamma: float = 0.99
    """Discount of the reward and cost critics."""
    gae_lambda: float = 0.95
    """GAE's lambda (bias-variance trade-off of the advantages)."""
    clip_ratio: float = 0.2
    """PPO's epsilon: the policy ratio is clipped to [1 - eps, 1 + eps]."""
    update_epochs: int = 10
    """Passes over each batch."""
    minibatch_size: int = 256
    """Transitions per gradient step."""
    learning_rate: float = 3e-4
    """Adam step size of policy and critics."""
    entropy_coef: float = 0.0
    """Weight beta of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip of every step."""
    target_kl: float = 0.02
    """The epochs of an iteration stop once the approximate KL exceeds 1.5 times this."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layers of the policy mean and of each critic (tanh)."""
    init_log_std: float = -0.5
    """Initial log standard deviation of the Gaussian policy."""
    cost_limits: CostLimitSchedule = field(default_factory=lambda: CostLimitSchedule.linear(5.0, 100.0))
    """Episodic cost limit d over training progress (annealed)."""
    lagrange_lr: float = 0.05
    """Step eta of the multiplier's projected gradient ascent, per unit of episode cost."""
    lagrange_init: float = 0.0
    """Initial multiplier."""
    cost_window: int = 16
    """Finished episodes whose mean cost return is the multiplier's measured J_c."""
    snapshot_fractions: tuple[float, ...] = (0.04, 0.08, 1 / 6, 1 / 3, 1 / 2, 2 / 3, 5 / 6, 1.0)
    """Fractions of the run after which a snapshot is kept (besides the initial policy); denser early,
    where the policy changes fastest."""
    seed: int = 0
    """Seed of torch, of the action noise and of every episode's reset."""

    def __post_init__(self) -> None:
        positive = ("total_steps", "num_envs", "rollout_steps", "update_epochs", "minibatch_size", "cost_window")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"PPOLagConfig.{name} must be >= 1, got {getattr(self, name)}")
        fractions = self.snapshot_fractions
        if not fractions or any(not 0.0 < f <= 1.0 for f in fractions) or list(fractions) != sorted(set(fractions)):
            raise ValueError(f"PPOLagConfig.snapshot_fractions must increase within (0, 1], got {fractions}")
        if not 0.0 < self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"need 0 < gamma <= 1 and 0 <= gae_lambda <= 1, got {self.gamma}, {self.gae_lambda}")
        if self.lagrange_lr < 0 or self.lagrange_init < 0:
            raise ValueError("lagrange_lr and lagrange_init must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (the schedule as a list of [progress, limit] pairs)."""
        out = asdict(self)
        out["cost_limits"] = [list(point) for point in self.cost_limits.points]
        out["hidden_sizes"] = list(self.hidden_sizes)
        out["snapshot_fractions"] = list(self.snapshot_fractions)
        return out


# ---------------------------------------------------------------------------------------------- statistics
class RunningMeanStd:
    """Mean and variance of a stream of arrays (Chan et al.'s parallel update), in float64."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, batch: np.ndarray) -> None:
        """Fold in a batch of samples (first axis = samples)."""
        batch = np.asarray(batch, np.float64)
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean, batch_var = batch.mean(axis=0), batch.var(axis=0)
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total


class _ReturnScaler:
    """Divides step signals by the running std of their discounted return (one per sub-environment)."""

    def __init__(self, num_envs: int, gamma: float) -> None:
        self.returns = np.zeros(num_envs)
        self.stats = RunningMeanStd()
        self.gamma = gamma

    def __call__(self, values: np.ndarray, ended: np.ndarray) -> np.ndarray:
        self.returns = self.returns * self.gamma + values
        self.stats.update(self.returns)
        scaled = values / math.sqrt(self.stats.var + 1e-8)
        self.returns[ended] = 0.0
        return scaled


# ---------------------------------------------------------------------------------------------- networks
def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, out_gain: float) -> nn.Sequential:
    """Tanh MLP with orthogonal initialisation (gain sqrt 2 inside, ``out_gain`` on the last layer)."""
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden]
    for a, b in zip(sizes, sizes[1:]):
        linear = nn.Linear(a, b)
        nn.init.orthogonal_(linear.weight, math.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.Tanh()]
    last = nn.Linear(sizes[-1], out_dim)
    nn.init.orthogonal_(last.weight, out_gain)
    nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Gaussian policy (mean MLP + state-independent log std) and reward and cost value MLPs.

    Every network reads the *normalised* observation; normalisation lives outside (in the learner and
    in the snapshots) so that a rollout's stored inputs never change.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int], init_log_std: float) -> None:
        super().__init__()
        self.mean = mlp(obs_dim, hidden_sizes, act_dim, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))
        self.value_reward = mlp(obs_dim, hidden_sizes, 1, out_gain=1.0)
        self.value_cost = mlp(obs_dim, hidden_sizes, 1, out_gain=1.0)

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        """The policy's action distribution at normalised observations ``obs``."""
        return torch.distributions.Normal(self.mean(obs), self.log_std.exp(), validate_args=False)

    def values(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V_r, V_c)`` at normalised observations, each of shape ``(batch,)``."""
        return self.value_reward(obs).squeeze(-1), self.value_cost(obs).squeeze(-1)


# ---------------------------------------------------------------------------------------------- learner
@dataclass
class IterationLog:
    """What one iteration did (each field is logged by name)."""

    iteration: int
    steps: int
    cost_limit: float
    """Episodic cost limit d_k used by this iteration's multiplier step."""
    multiplier: float
    """lambda after this iteration's update."""
    episode_return: float
    """Mean reward return of the last ``cost_window`` finished episodes (NaN before the first)."""
    episode_cost: float
    """Mean cost return of the same episodes (the measured J_c)."""
    approx_kl: float
    """Mean of (log pi_old - log pi) over the last minibatch pass."""
    policy_loss: float
    """Clipped surrogate loss (with the entropy term) of the last minibatch."""
    value_loss: float
    """Half the sum of the reward and cost critics' squared errors, last minibatch (scaled units)."""
    seconds: float
    """Wall time of the iteration (rollout and update)."""

    def line(self) -> str:
        """One human-readable log line."""
        return (
            f"it {self.iteration:4d} steps {self.steps:8d} limit {self.cost_limit:6.1f} lambda {self.multiplier:6.2f} "
            f"return {self.episode_return:8.1f} cost {self.episode_cost:6.1f} kl {self.approx_kl:.4f} "
            f"({self.seconds:.2f} s)"
        )


def gae(
    rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, terminated: np.ndarray, ended: np.ndarray,
    gamma: float, lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimates and value targets over a ``(steps, envs)`` rollout.

    ``next_values`` is ``V(s_{t+1})`` (zeroed by ``terminated``); ``ended`` (termination or truncation)
    stops the recursion at episode boundaries. Returns ``(advantages, advantages + values)``.
    """
    steps = rewards.shape[0]
    advantages = np.zeros_like(rewards)
    running = np.zeros(rewards.shape[1])
    for t in reversed(range(steps)):
        delta = rewards[t] + gamma * (1.0 - terminated[t]) * next_values[t] - values[t]
        running = delta + gamma * lam * (1.0 - ended[t]) * running
        advantages[t] = running
    return advantages, advantages + values


class PPOLagrangian:
    """PPO with a Lagrange multiplier on the episodic cost, its limit annealed (see the module docstring).

    ``PPOLagrangian(task, config).train()`` runs the whole schedule and returns the snapshots; ``history``
    holds one :class:`IterationLog` per iteration.
    """

    def __init__(self, task: str | TaskSpec, config: PPOLagConfig = PPOLagConfig()) -> None:
        self.task = get_task(task) if isinstance(task, str) else task
        self.config = config
        self.env = make_vector_env(self.task, config.num_envs)
        obs_space, act_space = self.env.single_observation_space, self.env.single_action_space
        self.obs_dim, self.act_dim = int(np.prod(obs_space.shape)), int(np.prod(act_space.shape))
        self.action_low = np.asarray(act_space.low, np.float64).reshape(-1)
        self.action_high = np.asarray(act_space.high, np.float64).reshape(-1)
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.model = ActorCritic(self.obs_dim, self.act_dim, config.hidden_sizes, config.init_log_std)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate, eps=1e-5)
        self.obs_stats = RunningMeanStd((self.obs_dim,))
        self.reward_scaler = _ReturnScaler(config.num_envs, config.gamma)
        self.cost_scaler = _ReturnScaler(config.num_envs, config.gamma)
        self.multiplier = float(config.lagrange_init)
        self.recent_returns: deque[float] = deque(maxlen=config.cost_window)
        self.recent_costs: deque[float] = deque(maxlen=config.cost_window)
        self.history: list[IterationLog] = []
        self.snapshots: list[PolicySnapshot] = []
        self.steps = 0
        self._episode_seeds = np.random.SeedSequence([config.seed, 0x5AFE])
        self._episodes_started = 0

    # ------------------------------------------------------------------ helpers
    def _next_seeds(self, count: int) -> list[int]:
        """Reset seeds of the next ``count`` episodes (a pure function of the config seed and their rank)."""
        seeds = []
        for rank in range(self._episodes_started, self._episodes_started + count):
            seeds.append(int(np.random.SeedSequence([self.config.seed, 0x5AFE, rank]).generate_state(1)[0]))
        self._episodes_started += count
        return seeds

    def _normalise(self, obs: np.ndarray) -> np.ndarray:
        scaled = (obs - self.obs_stats.mean) / np.sqrt(self.obs_stats.var + 1e-8)
        return np.clip(scaled, -10.0, 10.0).astype(np.float32)

    def snapshot(self, note: str = "") -> PolicySnapshot:
        """The current policy as a :class:`PolicySnapshot`, with the latest training statistics."""
        last = self.history[-1] if self.history else None
        stats = {
            "steps": self.steps,
            "total_steps": self.config.total_steps,
            "multiplier": self.multiplier,
            "cost_limit": last.cost_limit if last else self.config.cost_limits(0.0),
            "episode_return": last.episode_return if last else float("nan"),
            "episode_cost": last.episode_cost if last else float("nan"),
        }
        if note:
            stats["note"] = note
        layers = [m for m in self.model.mean if isinstance(m, nn.Linear)]
        return PolicySnapshot(
            obs_mean=self.obs_stats.mean.astype(np.float32),
            obs_std=np.sqrt(self.obs_stats.var + 1e-8).astype(np.float32),
            weights=[layer.weight.detach().numpy().copy() for layer in layers],
            biases=[layer.bias.detach().numpy().copy() for layer in layers],
            log_std=self.model.log_std.detach().numpy().copy(),
            action_low=self.action_low.astype(np.float32),
            action_high=self.action_high.astype(np.float32),
            stats=stats,
        )

    # ------------------------------------------------------------------ training
    def train(self, progress: Callable[[IterationLog], None] | None = None) -> list[PolicySnapshot]:
        """Run ``total_steps`` environment steps; return the snapshots (initial policy first).

        ``progress`` is called after every iteration with its :class:`IterationLog`.
        """
        cfg = self.config
        n_envs, horizon = cfg.num_envs, cfg.rollout_steps
        batch = n_envs * horizon
        iterations = max(1, math.ceil(cfg.total_steps / batch))
        snapshot_at = {max(1, round(iterations * fraction)) for fraction in cfg.snapshot_fractions}
        self.snapshots = [self.snapshot("initial policy")]

        raw_obs = self.env.reset_envs(range(n_envs), self._next_seeds(n_envs)).astype(np.float64)
        self.obs_stats.update(raw_obs)
        episode_return, episode_cost = np.zeros(n_envs), np.zeros(n_envs)
        for iteration in range(1, iterations + 1):
            started = time.perf_counter()
            obs_buf = np.zeros((horizon, n_envs, self.obs_dim), np.float32)
            act_buf = np.zeros((horizon, n_envs, self.act_dim), np.float32)
            logp_buf = np.zeros((horizon, n_envs), np.float32)
            rew_buf, cost_buf = np.zeros((horizon, n_envs)), np.zeros((horizon, n_envs))
            next_obs_buf = np.zeros((horizon, n_envs, self.obs_dim), np.float32)
            vr_buf, vc_buf = np.zeros((horizon, n_envs)), np.zeros((horizon, n_envs))
            term_buf, end_buf = np.zeros((horizon, n_envs)), np.zeros((horizon, n_envs))
            seen_obs = [raw_obs]
            # ALGO LOGIC: rollout with the normaliser frozen.
            for t in range(horizon):
                obs = self._normalise(raw_obs)
                with torch.no_grad():
                    obs_t = torch.from_numpy(obs)
                    dist = self.model.distribution(obs_t)
                    action = dist.mean + dist.stddev * torch.randn(dist.mean.shape, generator=self.generator)
                    logp = dist.log_prob(action).sum(-1)
                    v_r, v_c = self.model.values(obs_t)
                step = self.env.step(scale_to_box(action.numpy().astype(np.float64), self.action_low, self.action_high))
                ended = step.terminated | step.truncated
                rewards = self.reward_scaler(step.rewards, ended)
                costs = self.cost_scaler(step.costs, ended)
                next_raw = step.observations.astype(np.float64)
                obs_buf[t], act_buf[t], logp_buf[t] = obs, action.numpy(), logp.numpy()
                next_obs_buf[t] = self._normalise(next_raw)
                rew_buf[t], cost_buf[t] = rewards, costs
                vr_buf[t], vc_buf[t] = v_r.numpy(), v_c.numpy()
                term_buf[t], end_buf[t] = step.terminated, ended
                episode_return += step.rewards
                episode_cost += step.costs
                done = np.flatnonzero(ended)
                for i in done:
                    self.recent_returns.append(float(episode_return[i]))
                    self.recent_costs.append(float(episode_cost[i]))
                episode_return[done] = 0.0
                episode_cost[done] = 0.0
                if done.size:
                    next_raw = next_raw.copy()
                    next_raw[done] = self.env.reset_envs(done, self._next_seeds(done.size))
                raw_obs = next_raw
                seen_obs.append(raw_obs)
            self.steps += batch
            # V(s_{t+1}) of the state each step reached (an episode's final state before its reset).
            with torch.no_grad():
                next_v = self.model.values(torch.from_numpy(next_obs_buf.reshape(batch, -1)))
            not_terminal = 1.0 - term_buf
            next_vr = next_v[0].numpy().reshape(horizon, n_envs) * not_terminal
            next_vc = next_v[1].numpy().reshape(horizon, n_envs) * not_terminal
            self.obs_stats.update(np.concatenate(seen_obs))

            # ALGO LOGIC: multiplier step on the measured episodic cost.
            limit = cfg.cost_limits(min(1.0, self.steps / cfg.total_steps))
            measured_cost = float(np.mean(self.recent_costs)) if self.recent_costs else float("nan")
            if self.recent_costs:
                self.multiplier = max(0.0, self.multiplier + cfg.lagrange_lr * (measured_cost - limit))

            adv_r, ret_r = gae(rew_buf, vr_buf, next_vr, term_buf, end_buf, cfg.gamma, cfg.gae_lambda)
            adv_c, ret_c = gae(cost_buf, vc_buf, next_vc, term_buf, end_buf, cfg.gamma, cfg.gae_lambda)
            policy_loss, value_loss, approx_kl = self._update(
                obs_buf.reshape(batch, -1), act_buf.reshape(batch, -1), logp_buf.reshape(batch),
                adv_r.reshape(batch), adv_c.reshape(batch), ret_r.reshape(batch), ret_c.reshape(batch),
            )
            log = IterationLog(
                iteration=iteration, steps=self.steps, cost_limit=limit, multiplier=self.multiplier,
                episode_return=float(np.mean(self.recent_returns)) if self.recent_returns else float("nan"),
                episode_cost=measured_cost, approx_kl=approx_kl, policy_loss=policy_loss, value_loss=value_loss,
                seconds=time.perf_counter() - started,
            )
            self.history.append(log)
            if progress is not None:
                progress(log)
            if iteration in snapshot_at:
                self.snapshots.append(self.snapshot())
        return self.snapshots

    def _update(
        self, obs: np.ndarray, actions: np.ndarray, logp_old: np.ndarray, adv_r: np.ndarray, adv_c: np.ndarray,
        ret_r: np.ndarray, ret_c: np.ndarray,
    ) -> tuple[float, float, float]:
        """PPO epochs on one batch; returns the last policy loss, value loss and approximate KL."""
        cfg = self.config
        adv_r = (adv_r - adv_r.mean()) / (adv_r.std() + 1e-8)
        adv_c = (adv_c - adv_c.mean()) / (adv_c.std() + 1e-8)
        advantages = (adv_r - self.multiplier * adv_c) / (1.0 + self.multiplier)
        tensors = [torch.as_tensor(x, dtype=torch.float32) for x in (obs, actions, logp_old, advantages, ret_r, ret_c)]
        n = obs.shape[0]
        policy_loss = value_loss = approx_kl = 0.0
        for _ in range(cfg.update_epochs):
            order = torch.randperm(n, generator=self.generator)
            kls = []
            for start in range(0, n, cfg.minibatch_size):
                index = order[start : start + cfg.minibatch_size]
                o, a, lp_old, adv, g_r, g_c = (x[index] for x in tensors)
                dist = self.model.distribution(o)
                logp = dist.log_prob(a).sum(-1)
                ratio = (logp - lp_old).exp()
                clipped = ratio.clamp(1.0 - cfg.clip_ratio, 1.0 + cfg.clip_ratio)
                loss_pi = -torch.min(ratio * adv, clipped * adv).mean() - cfg.entropy_coef * dist.entropy().sum(-1).mean()
                v_r, v_c = self.model.values(o)
                loss_v = 0.5 * ((v_r - g_r).pow(2).mean() + (v_c - g_c).pow(2).mean())
                self.optimizer.zero_grad()
                (loss_pi + loss_v).backward()
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                kls.append(float((lp_old - logp).mean().detach()))
                policy_loss, value_loss = float(loss_pi.detach()), float(loss_v.detach())
            approx_kl = float(np.mean(kls))
            if approx_kl > 1.5 * cfg.target_kl:
                break
        return policy_loss, value_loss, approx_kl

    def close(self) -> None:
        """Close the environments."""
        self.env.close()


__all__ = ["CostLimitSchedule", "PPOLagConfig", "PPOLagrangian", "ActorCritic", "IterationLog", "RunningMeanStd", "gae"]
