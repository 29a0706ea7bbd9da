r"""Diffusion policies: a discrete VP noise schedule, DDPM sampling, and FISOR's LN-ResNet denoiser.

**Schedule** (the discrete variance-preserving schedule of IDQL/FISOR, ``T`` steps): for
``t = 1..T``

.. math::

    \alpha_t = \exp\Big(-\frac{\beta_{\min}}{T} - \frac{\beta_{\max} - \beta_{\min}}{2}\,\frac{2t - 1}{T^2}\Big),
    \qquad \beta_t = 1 - \alpha_t, \qquad \bar\alpha_t = \prod_{k \le t} \alpha_k .

**Training** (epsilon prediction): ``a_t = sqrt(abar_t) a + sqrt(1 - abar_t) eps`` and the loss
``|| eps_theta(a_t, s, t) - eps ||^2`` (per-sample, so that it can be weighted).

**Sampling** (DDPM ancestral, ``a_T ~ N(0, I)``):

.. math::

    a_{t-1} = \mathrm{clip}\Big(\frac{1}{\sqrt{\alpha_t}}\big(a_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}
    \epsilon_\theta(a_t, s, t)\big) + \sigma_t z,\ -1, 1\Big), \qquad
    \sigma_t^2 = \beta_t \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}, \quad \sigma_1 = 0 .

Why not diffusers' ``DDPMScheduler``: its ``step`` is the same update (``tests/constraints/
test_diffusion.py`` checks our coefficients and noiseless step against it with ``trained_betas``), but it
runs per call in Python on one tensor with checks and indexing that cost more than the 5-step network
itself at FISOR's sizes on a CPU, and it clips the predicted ``a_0`` rather than ``a_{t-1}`` as FISOR does.
Our sampler keeps the whole loop in a few fused tensor ops for any batch of states and candidates.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F


def vp_beta_schedule(steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> torch.Tensor:
    """``beta_t`` for ``t = 1..steps`` of the discrete VP schedule (float64 for exact products)."""
    if steps < 1:
        raise ValueError(f"diffusion steps must be >= 1, got {steps}")
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    alphas = torch.exp(-beta_min / steps - 0.5 * (beta_max - beta_min) * (2 * t - 1) / steps**2)
    return 1.0 - alphas


class DiffusionSchedule(nn.Module):
    """Precomputed coefficients of a DDPM schedule (buffers, so they move with the module)."""

    def __init__(self, steps: int = 5, beta_min: float = 0.1, beta_max: float = 10.0) -> None:
        super().__init__()
        self.steps = steps
        betas = vp_beta_schedule(steps, beta_min, beta_max)
        alphas = 1.0 - betas
        alpha_bars = torch.cumprod(alphas, 0)
        alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
        posterior_var = betas * (1.0 - alpha_bars_prev) / (1.0 - alpha_bars)
        for name, value in {
            "betas": betas,
            "alphas": alphas,
            "alpha_bars": alpha_bars,
            "sqrt_alpha_bars": alpha_bars.sqrt(),
            "sqrt_one_minus_alpha_bars": (1.0 - alpha_bars).sqrt(),
            "step_scale": 1.0 / alphas.sqrt(),
            "eps_coef": betas / (1.0 - alpha_bars).sqrt(),
            "posterior_std": posterior_var.clamp(min=0).sqrt(),
        }.items():
            self.register_buffer(name, value.float(), persistent=False)

    def add_noise(self, actions: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``a_t = sqrt(abar_t) a + sqrt(1 - abar_t) eps`` for 0-based step indices ``t`` ``(B,)``."""
        return self.sqrt_alpha_bars[t, None] * actions + self.sqrt_one_minus_alpha_bars[t, None] * noise


class FourierTimeEmbedding(nn.Module):
    """Learnable Fourier features of the diffusion step: ``[cos(2 pi w t), sin(2 pi w t)]``."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"Fourier feature size must be even, got {dim}")
        self.weight = nn.Parameter(torch.randn(dim // 2))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Features ``(B, dim)`` of float steps ``(B,)``."""
        angles = 2 * math.pi * t[:, None] * self.weight[None]
        return torch.cat([angles.cos(), angles.sin()], dim=-1)


class ResidualBlock(nn.Module):
    """``x + Dense(mish(Dense_4x(LayerNorm(Dropout(x)))))`` as in FISOR's LN-ResNet."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 4 * width)
        self.down = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The residual update."""
        return x + self.down(F.mish(self.up(self.norm(self.dropout(x)))))


class DiffusionDenoiser(nn.Module):
    """``eps_theta(a_t, s, t)``: Fourier time features -> MLP(128, 128, mish); ``[a_t, s, time]`` ->
    Dense(width) -> ``blocks`` residual blocks -> mish -> Dense(act_dim)."""

    def __init__(
        self, obs_dim: int, act_dim: int, width: int = 256, blocks: int = 3, dropout: float = 0.1, time_dim: int = 64
    ) -> None:
        super().__init__()
        self.act_dim, self.obs_dim = act_dim, obs_dim
        self.time = nn.Sequential(FourierTimeEmbedding(time_dim), nn.Linear(time_dim, 128), nn.Mish(), nn.Linear(128, 128))
        self.inp = nn.Linear(act_dim + obs_dim + 128, width)
        self.blocks = nn.Sequential(*[ResidualBlock(width, dropout) for _ in range(blocks)])
        self.out = nn.Linear(width, act_dim)

    def forward(self, noisy_actions: torch.Tensor, obs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predicted noise ``(B, act_dim)`` for noisy actions, (normalised) observations and steps."""
        h = self.inp(torch.cat([noisy_actions, obs, self.time(t.float())], dim=-1))
        return self.out(F.mish(self.blocks(h)))

    def sampling_context(self, obs: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The parts of the input layer that do not change during sampling, computed once.

        The input layer is linear in ``[a_t, s, time]``, so ``inp([a, s, e_t]) = W_a a + (W_s s + b) + W_t e_t``:
        returns ``(W_s s + b)`` per state ``(B, width)`` and ``W_t e_t`` per step ``(steps, width)``.
        """
        a, o = self.act_dim, self.obs_dim
        weight = self.inp.weight
        cond_obs = F.linear(obs, weight[:, a : a + o], self.inp.bias)
        times = torch.arange(steps, device=obs.device, dtype=torch.float32)
        cond_time = F.linear(self.time(times), weight[:, a + o :])
        return cond_obs, cond_time

    def denoise(self, noisy_actions: torch.Tensor, cond_obs: torch.Tensor, cond_time: torch.Tensor) -> torch.Tensor:
        """``eps_theta`` from precomputed conditioning (same value as ``forward``)."""
        h = F.linear(noisy_actions, self.inp.weight[:, : self.act_dim]) + cond_obs + cond_time
        return self.out(F.mish(self.blocks(h)))


def diffusion_loss(
    denoiser: DiffusionDenoiser, schedule: DiffusionSchedule, obs: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """Per-sample epsilon-prediction loss ``mean_dims (eps_theta - eps)^2``, shape ``(B,)``."""
    t = torch.randint(0, schedule.steps, (obs.shape[0],), device=obs.device)
    noise = torch.randn_like(actions)
    predicted = denoiser(schedule.add_noise(actions, noise, t), obs, t)
    return (predicted - noise).square().mean(dim=-1)


@torch.inference_mode()
def ddpm_sample(
    denoiser: DiffusionDenoiser,
    schedule: DiffusionSchedule,
    obs: torch.Tensor,
    act_dim: int,
    clip: float = 1.0,
    samples_per_state: int = 1,
) -> torch.Tensor:
    """Ancestral DDPM samples, clipped at every step: ``(B * samples_per_state, act_dim)`` for
    observations ``(B, obs_dim)``, the samples of each state contiguous.

    The observation and time parts of the denoiser's input layer are computed once per state and per
    step (:meth:`DiffusionDenoiser.sampling_context`), not once per candidate and step.
    """
    cond_obs, cond_time = denoiser.sampling_context(obs, schedule.steps)
    cond_obs = cond_obs.repeat_interleave(samples_per_state, dim=0)
    x = torch.randn(cond_obs.shape[0], act_dim, device=obs.device)
    for t in reversed(range(schedule.steps)):
        eps = denoiser.denoise(x, cond_obs, cond_time[t])
        x = schedule.step_scale[t] * (x - schedule.eps_coef[t] * eps)
        if t > 0:
            x = x + schedule.posterior_std[t] * torch.randn_like(x)
        x = x.clamp(-clip, clip)
    return x


__all__ = [
    "vp_beta_schedule",
    "DiffusionSchedule",
    "FourierTimeEmbedding",
    "DiffusionDenoiser",
    "diffusion_loss",
    "ddpm_sample",
]
