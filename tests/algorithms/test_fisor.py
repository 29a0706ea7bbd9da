"""FISOR: weights and clips on hand-made critic values, the diffusion schedule, selection, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from saferl.algorithm import TaskContext
from saferl.algorithms.fisor import FISOR, FISORConfig
from saferl.networks.diffusion import DiffusionSchedule, vp_beta_schedule

CONTEXT = TaskContext(obs_dim=3, act_dim=2, episode_len=100, cost_limit=10.0, reward_max=10.0, reward_min=0.0,
                      total_steps=100)


class Const(torch.nn.Module):
    """A stand-in critic returning chosen values."""

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__()
        self.values = values

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.values


def make(**overrides: object) -> FISOR:
    torch.manual_seed(0)
    return FISOR(FISORConfig(actor_width=32, actor_blocks=1, critic_hidden=[16], **overrides), CONTEXT)


def test_weights_and_clips_follow_the_three_cases() -> None:
    algo = make()
    # Rows: feasible state+action (small and large advantage), feasible state+infeasible action,
    # infeasible state (small and large V_h - Q_h).
    v_h = torch.tensor([-1.0, -1.0, -1.0, 2.0, 30.0])
    q_h = torch.tensor([-0.5, -0.5, 0.5, 1.8, 0.0])
    q_r = torch.tensor([1.2, 5.0, 9.0, 0.0, 0.0])
    v_r = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])
    algo.feasibility.state_value = lambda obs: v_h  # type: ignore[method-assign]
    algo.feasibility.action_value = lambda obs, act: q_h  # type: ignore[method-assign]
    algo.reward_target = Const(torch.stack([q_r, q_r + 1.0]))  # min over the ensemble is q_r
    algo.reward_value = Const(v_r)
    weight, feasible = algo.weights(torch.zeros(5, 3), torch.zeros(5, 2))
    expected = [math.exp(3 * 0.2), 100.0, 0.0, math.exp(5 * 0.2), 150.0]
    np.testing.assert_allclose(weight.numpy(), expected, rtol=1e-5)
    assert feasible.tolist() == [True, True, True, False, False]


def test_vp_schedule_matches_formula_and_diffusers() -> None:
    betas = vp_beta_schedule(5, 0.1, 10.0)
    t = np.arange(1, 6)
    expected = 1 - np.exp(-0.1 / 5 - 0.5 * 9.9 * (2 * t - 1) / 25)
    np.testing.assert_allclose(betas.numpy(), expected, rtol=1e-12)
    schedule = DiffusionSchedule(5)
    np.testing.assert_allclose(schedule.alpha_bars.numpy(), np.cumprod(1 - expected), rtol=1e-6)
    assert schedule.posterior_std[0] == 0.0  # the last step adds no noise

    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=5, trained_betas=expected.tolist(), clip_sample=False,
                                  variance_type="fixed_small")
    np.testing.assert_allclose(ref.alphas_cumprod.numpy(), schedule.alpha_bars.numpy(), rtol=1e-6)
    x_t, eps = torch.randn(4, 2), torch.randn(4, 2)
    ours = schedule.step_scale[0] * (x_t - schedule.eps_coef[0] * eps)  # t = 0: noiseless
    theirs = ref.step(eps, 0, x_t).prev_sample
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_fast_sampler_equals_the_plain_ddpm_loop() -> None:
    from saferl.networks.diffusion import DiffusionDenoiser, ddpm_sample

    torch.manual_seed(0)
    denoiser, schedule = DiffusionDenoiser(3, 2, width=16, blocks=1, dropout=0.0).eval(), DiffusionSchedule(5)
    obs = torch.randn(4, 3)
    torch.manual_seed(7)
    fast = ddpm_sample(denoiser, schedule, obs, 2, samples_per_state=3)
    torch.manual_seed(7)
    repeated = obs.repeat_interleave(3, dim=0)
    x = torch.randn(12, 2)
    with torch.no_grad():
        for t in reversed(range(5)):
            eps = denoiser(x, repeated, torch.full((12,), t))
            mean = (x - schedule.betas[t] / schedule.sqrt_one_minus_alpha_bars[t] * eps) / schedule.alphas[t].sqrt()
            x = (mean + (schedule.posterior_std[t] * torch.randn_like(x) if t > 0 else 0)).clamp(-1, 1)
    torch.testing.assert_close(fast, x, rtol=1e-5, atol=1e-5)


def test_safest_and_reward_aware_selection() -> None:
    algo = make(num_candidates=4)
    candidates = torch.tensor([[0.1, 0.0], [0.2, 0.0], [0.3, 0.0], [0.4, 0.0]])
    q_h = torch.tensor([0.5, -2.0, -1.0, 3.0])
    q_r = torch.tensor([9.0, 1.0, 5.0, 20.0])
    import saferl.algorithms.fisor as fisor_module

    original = fisor_module.ddpm_sample
    fisor_module.ddpm_sample = lambda *args, **kw: candidates.clone()  # type: ignore[assignment]
    try:
        algo.feasibility.action_value = lambda obs, act: q_h  # type: ignore[method-assign]
        algo.reward_target = Const(torch.stack([q_r, q_r]))
        safest = algo.act_tensor(torch.zeros(1, 3))
        algo.config.selection = "reward_aware"
        reward_aware = algo.act_tensor(torch.zeros(1, 3))
    finally:
        fisor_module.ddpm_sample = original
    assert safest[0, 0].item() == pytest.approx(0.2)  # argmin Q_h
    assert reward_aware[0, 0].item() == pytest.approx(0.3)  # max Q_r among Q_h <= 0


def test_sampled_actions_are_clipped_and_deterministic_by_seed() -> None:
    algo = make(num_candidates=8)
    obs = torch.randn(5, 3)
    torch.manual_seed(1)
    a = algo.act_tensor(obs)
    torch.manual_seed(1)
    b = algo.act_tensor(obs)
    assert torch.equal(a, b) and a.shape == (5, 2) and a.abs().max() <= 1.0


def test_staged_phases_partition_the_run() -> None:
    algo = make(staged=True, stage_fractions=[0.3, 0.3])
    phases = [algo._phases(step) for step in (0, 29, 30, 59, 60, 99)]
    assert phases == [(True, False, False), (True, False, False), (False, True, False), (False, True, False),
                      (False, False, True), (False, False, True)]
