"""The vectorised environment interface that evaluation and data collection use.

Single environments follow gymnasium's 5-tuple API with the step cost in ``info["cost"]``
(:func:`saferl.datasets.envs.make_env`). Batches of environments follow :class:`VectorSafetyEnv`:
no automatic reset, so that an evaluation loop decides which sub-environment starts which seeded
episode, and the cost is a first-class array instead of a dict entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import gymnasium as gym
import numpy as np


@dataclass
class VectorStep:
    """Result of one step of every sub-environment (arrays of length ``num_envs``)."""

    observations: np.ndarray
    rewards: np.ndarray
    costs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray


@runtime_checkable
class VectorSafetyEnv(Protocol):
    """``num_envs`` environments stepped together, each reset on demand with its own seed.

    ``step`` takes actions for every sub-environment; a sub-environment whose episode ended must be
    reset (``reset_envs``) before its results mean anything again: callers mask finished ones.
    """

    num_envs: int
    single_observation_space: gym.spaces.Box
    single_action_space: gym.spaces.Box

    def reset_envs(self, indices: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
        """Reset the sub-environments ``indices`` with ``seeds``; return their observations."""
        ...

    def step(self, actions: np.ndarray) -> VectorStep:
        """Step every sub-environment with ``actions`` of shape ``(num_envs, act_dim)``."""
        ...

    def close(self) -> None:
        """Release simulator resources."""
        ...


def step_first_env(batch: VectorSafetyEnv, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
    """Step a one-environment batch with one action: gymnasium's 5-tuple, the step cost in ``info["cost"]``.

    The single-environment wrappers of saferl's numpy-batched simulators step through this.
    """
    result = batch.step(np.asarray(action).reshape(1, -1))
    return (result.observations[0], float(result.rewards[0]), bool(result.terminated[0]),
            bool(result.truncated[0]), {"cost": float(result.costs[0])})
