"""Feasibility critics on a chain MDP whose feasible states and actions are known in closed form.

The chain has states ``0..N-1`` and actions ``{-1, 0, +1}``; ``x' = clip(x + a - drift(x), 0, N-1)``.
States ``0`` and ``N-1`` are hazards (cost 1, absorbing). A current of strength 2 pushes left on
``1..K`` and right on ``N-1-K2..N-2``, so there even the best action still moves one step towards the
hazard: those states are infeasible, and a state ``k`` steps from the hazard has
``V_h = -1 + (cost_scale + 1) gamma^k``. Every other state can stay put forever: ``V_h = -1``.
A feasible action is one from a feasible state into a feasible state.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from saferl.constraints.feasibility import (
    FeasibilityCritic,
    constraint_signal,
    hj_q_target,
    tabular_hj_values,
)
from saferl.datasets.types import Batch

N, K, K2 = 41, 8, 5
ACTIONS = np.array([-1, 0, 1])
STATES = np.arange(N)
DRIFT = np.where((STATES >= 1) & (STATES <= K), 2, np.where((STATES >= N - 1 - K2) & (STATES <= N - 2), -2, 0))
NEXT = np.clip(STATES[:, None] + ACTIONS[None, :] - DRIFT[:, None], 0, N - 1)
HAZARD = (STATES == 0) | (STATES == N - 1)
FEASIBLE_STATES = (STATES > K) & (STATES < N - 1 - K2)
FEASIBLE_ACTIONS = FEASIBLE_STATES[:, None] & FEASIBLE_STATES[NEXT]
STEPS_TO_HAZARD = np.where(STATES <= K, STATES, N - 1 - STATES)
GAMMA, COST_SCALE = 0.9, 25.0


def chain_batch() -> Batch:
    """Every transition of the chain once; states and actions one-hot encoded."""
    s, a = np.repeat(STATES, len(ACTIONS)), np.tile(np.arange(len(ACTIONS)), N)
    one_hot = torch.nn.functional.one_hot
    rows = len(s)
    return Batch(
        observations=one_hot(torch.as_tensor(s), N).float(),
        actions=one_hot(torch.as_tensor(a), len(ACTIONS)).float(),
        rewards=torch.zeros(rows),
        costs=torch.as_tensor(HAZARD[s], dtype=torch.float32),
        next_observations=one_hot(torch.as_tensor(NEXT.reshape(-1)), N).float(),
        terminals=torch.zeros(rows),
        timeouts=torch.zeros(rows),
        indices=torch.arange(rows),
    )


def train(critic: FeasibilityCritic, steps: int, lr: float = 3e-3) -> None:
    """Full-batch training on every transition of the chain."""
    batch = chain_batch()
    optimiser = torch.optim.Adam(critic.trainable_parameters(), lr=lr)
    for _ in range(steps):
        losses = critic.losses(batch)
        optimiser.zero_grad()
        (losses["q_loss"] + losses["v_loss"]).backward()
        optimiser.step()
        critic.update_target()


def agreement(critic: FeasibilityCritic) -> tuple[float, float]:
    """Fraction of states and of state-action pairs the critic classifies as the closed form does."""
    batch = chain_batch()
    states = critic.feasible_state(torch.eye(N)).numpy()
    actions = critic.feasible_action(batch.observations, batch.actions).numpy().reshape(N, len(ACTIONS))
    return float((states == FEASIBLE_STATES).mean()), float((actions == FEASIBLE_ACTIONS).mean())


# ---------------------------------------------------------------------------- targets
def test_constraint_signal() -> None:
    costs = torch.tensor([0.0, 0.5, 2.0, 0.0])
    torch.testing.assert_close(constraint_signal(costs, 25.0), torch.tensor([-1.0, 25.0, 25.0, -1.0]))
    with pytest.raises(ValueError, match="cost_scale"):
        constraint_signal(costs, 0.0)


def test_hj_q_target_closed_form() -> None:
    h = torch.tensor([-1.0, 25.0, -1.0, -1.0])
    v_next = torch.tensor([3.0, -1.0, -2.0, 7.0])
    terminals = torch.tensor([0.0, 0.0, 0.0, 1.0])
    expected = torch.tensor([0.1 * -1 + 0.9 * 3, 25.0, 0.1 * -1 + 0.9 * -1, -1.0])
    torch.testing.assert_close(hj_q_target(h, v_next, 0.9, terminals), expected)
    with pytest.raises(ValueError, match="gamma"):
        hj_q_target(h, v_next, 1.0, terminals)
    with pytest.raises(ValueError, match="same shape"):
        hj_q_target(h, v_next[:2], 0.9, terminals)


def test_tabular_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="state indices"):
        tabular_hj_values(np.array([[0], [2]]), np.array([-1.0, 1.0]), GAMMA)
    with pytest.raises(ValueError, match="expectile"):
        tabular_hj_values(np.array([[0], [1]]), np.array([-1.0, 1.0]), GAMMA, expectile=1.0)


# ---------------------------------------------------------------------------- tabular
def test_tabular_hj_recovers_the_closed_form_sets_exactly() -> None:
    h = np.where(HAZARD, COST_SCALE, -1.0)
    q, v = tabular_hj_values(NEXT, h, GAMMA)
    assert np.array_equal(v <= 0, FEASIBLE_STATES)
    assert np.array_equal(q <= 0, FEASIBLE_ACTIONS)
    expected_v = np.where(FEASIBLE_STATES, -1.0, -1.0 + (COST_SCALE + 1) * GAMMA**STEPS_TO_HAZARD)
    np.testing.assert_allclose(v, expected_v, atol=1e-8)


def test_tabular_terminals_stop_the_backup() -> None:
    # State 0 (safe) steps into the absorbing hazard 1; if that step ends the episode the hazard never counts.
    next_states, h = np.array([[1], [1]]), np.array([-1.0, COST_SCALE])
    q_open, _ = tabular_hj_values(next_states, h, GAMMA)
    q_ended, _ = tabular_hj_values(next_states, h, GAMMA, terminals=np.array([[True], [False]]))
    assert q_open[0, 0] == pytest.approx(0.1 * -1 + 0.9 * COST_SCALE)
    assert q_ended[0, 0] == pytest.approx(-1.0)


# ---------------------------------------------------------------------------- learned critics
def test_learned_hj_critic_matches_the_closed_form_sets() -> None:
    torch.manual_seed(0)
    # expectile 0.99: with FISOR's 0.9, V_h of the first feasible state sits above 0 here (docs explain why).
    critic = FeasibilityCritic(
        N, len(ACTIONS), hidden=(32, 32), gamma=GAMMA, expectile=0.99, cost_scale=COST_SCALE, target_update_rate=0.1
    )
    train(critic, steps=700)
    state_agreement, action_agreement = agreement(critic)
    assert state_agreement >= 0.99 and action_agreement >= 0.99


def test_learned_discounted_cost_critic_matches_the_closed_form_sets() -> None:
    torch.manual_seed(0)
    # V_c is 0 on feasible states and gamma^k / (1 - gamma) >= 4.3 on infeasible ones: threshold 1 separates them.
    critic = FeasibilityCritic(
        N, len(ACTIONS), mode="discounted_cost", threshold=1.0, hidden=(32, 32), gamma=GAMMA, expectile=0.99,
        target_update_rate=0.1,
    )
    train(critic, steps=700)
    state_agreement, action_agreement = agreement(critic)
    assert state_agreement >= 0.99 and action_agreement >= 0.99


def test_learned_critic_with_fisor_expectile_reaches_the_tabular_expectile_fixed_point() -> None:
    # With tau = 0.9 the reversed expectile is biased upwards where unsafe actions are in the data:
    # the first feasible state on each side gets V_h > 0. The learned critic lands on the same values
    # as the tabular expectile backup, so the bias belongs to the objective, not to the training.
    h = np.where(HAZARD, COST_SCALE, -1.0)
    _, v_expectile = tabular_hj_values(NEXT, h, GAMMA, expectile=0.9)
    assert v_expectile[K + 1] > 0 and v_expectile[N - 2 - K2] > 0  # exact HJ: -1 (feasible)
    torch.manual_seed(0)
    critic = FeasibilityCritic(N, len(ACTIONS), hidden=(32, 32), gamma=GAMMA, expectile=0.9, target_update_rate=0.1)
    train(critic, steps=700)
    with torch.no_grad():
        learned = critic.state_value(torch.eye(N)).numpy()
    np.testing.assert_allclose(learned, v_expectile, atol=0.1)


# ---------------------------------------------------------------------------- module contract
def test_timeouts_still_bootstrap() -> None:
    torch.manual_seed(0)
    critic = FeasibilityCritic(2, 1, hidden=(8,), gamma=GAMMA)
    obs, act, next_obs = torch.randn(4, 2), torch.randn(4, 1), torch.randn(4, 2)
    costs = torch.tensor([0.0, 1.0, 0.0, 0.0])
    terminals, timeouts = torch.tensor([0.0, 0.0, 1.0, 0.0]), torch.tensor([1.0, 0.0, 0.0, 1.0])
    batch = Batch(obs, act, torch.zeros(4), costs, next_obs, terminals, timeouts, torch.arange(4))
    with torch.no_grad():
        h = torch.tensor([-1.0, COST_SCALE, -1.0, -1.0])
        backup = 0.1 * h + 0.9 * torch.maximum(h, critic.value(next_obs))
        target = torch.where(terminals > 0, h, backup)  # rows 0 and 3 time out and still bootstrap
        expected = (critic.critics(obs, act) - target).square().mean(dim=1).sum()
    torch.testing.assert_close(critic.losses(batch)["q_loss"], expected)


def test_feasibility_critic_state_dict_round_trip_and_target() -> None:
    torch.manual_seed(0)
    critic = FeasibilityCritic(N, len(ACTIONS), hidden=(16,), gamma=GAMMA, target_update_rate=0.5)
    train(critic, steps=5)
    target_ids = {id(p) for p in critic.target_critics.parameters()}
    assert not target_ids & {id(p) for p in critic.trainable_parameters()}
    assert not torch.equal(critic.target_critics.net.layers[0].weight, critic.critics.net.layers[0].weight)

    buffer = io.BytesIO()
    torch.save(critic.state_dict(), buffer)
    buffer.seek(0)
    restored = FeasibilityCritic(N, len(ACTIONS), hidden=(16,), gamma=GAMMA, target_update_rate=0.5)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    batch = chain_batch()
    for name, value in critic.losses(batch).items():
        torch.testing.assert_close(restored.losses(batch)[name], value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "lyapunov"}, "unknown feasibility mode"),
        ({"mode": "discounted_cost"}, "needs a threshold"),
        ({"gamma": 1.0}, "gamma"),
        ({"expectile": 1.0}, "expectile"),
    ],
)
def test_feasibility_critic_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeasibilityCritic(2, 1, **kwargs)
