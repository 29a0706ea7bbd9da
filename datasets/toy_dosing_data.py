"""The toy dosing dataset: scripted dosing behaviours from reckless to cautious on saferl's toy simulator.

The data are synthetic: simulated patients of :mod:`.envs.toy_dosing`, a toy written by saferl, dosed by
scripted rules. They are not patient data and carry no clinical meaning. ``build_toy_dosing_dataset``
rolls every behaviour out at once as one numpy batch and returns a :class:`TransitionDataset`
(deterministic by seed, about a second for the default 1000 trajectories).
"""

from __future__ import annotations

import numpy as np

from .envs.toy_dosing import DosingBehaviourFamily, ToyDosingParams, ToyDosingVectorEnv, scripted_doses
from .types import TransitionDataset


def build_toy_dosing_dataset(
    num_trajectories: int = 1000,
    seed: int = 0,
    params: ToyDosingParams = ToyDosingParams(),
    family: DosingBehaviourFamily = DosingBehaviourFamily(),
) -> TransitionDataset:
    """Roll out ``num_trajectories`` scripted behaviours (one patient each) and return their transitions.

    Deterministic by ``seed``: behaviours, episode seeds (hence patients and simulator noise) and action
    noise all come from one ``numpy.random.Generator(seed)``. Every trajectory lasts ``episode_len`` steps.
    """
    if num_trajectories < 1:
        raise ValueError(f"num_trajectories must be >= 1, got {num_trajectories}")
    rng = np.random.default_rng(seed)
    behaviour = family.sample(num_trajectories, rng)
    env = ToyDosingVectorEnv(num_trajectories, params)
    episode_seeds = rng.integers(0, 2**31 - 1, size=num_trajectories)
    obs = env.reset_envs(np.arange(num_trajectories), episode_seeds.tolist())

    shape = (params.episode_len, num_trajectories)
    observations = np.zeros(shape + (2,), np.float32)
    next_observations = np.zeros(shape + (2,), np.float32)
    actions = np.zeros(shape + (1,), np.float32)
    rewards, costs = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    timeouts = np.zeros(shape, bool)
    for t in range(params.episode_len):
        action = scripted_doses(obs, behaviour, params, rng)
        step = env.step(action)
        observations[t], actions[t], next_observations[t] = obs, action, step.observations
        rewards[t], costs[t], timeouts[t] = step.rewards, step.costs, step.truncated
        obs = step.observations

    def flat(arr: np.ndarray) -> np.ndarray:
        """Time-major ``(T, n, ...)`` to trajectory-major ``(n * T, ...)``."""
        return np.swapaxes(arr, 0, 1).reshape((-1,) + arr.shape[2:])

    return TransitionDataset(
        observations=flat(observations),
        actions=flat(actions),
        rewards=flat(rewards),
        costs=flat(costs),
        next_observations=flat(next_observations),
        terminals=np.zeros(num_trajectories * params.episode_len, bool),
        timeouts=flat(timeouts),
        metadata={"task": "ToyDosing", "source": f"saferl toy dosing simulator, synthetic (seed {seed})",
                  "format": "dsrl"},
    )


__all__ = ["build_toy_dosing_dataset"]
