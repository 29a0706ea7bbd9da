"""Several simulator environments stepped one after the other behind the :class:`VectorSafetyEnv` interface."""

from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np

from .base import VectorStep


class SyncVectorSafetyEnv:
    """``num_envs`` gymnasium environments (5-tuple steps, cost in ``info["cost"]``) in one process.

    Implements :class:`~saferl.datasets.envs.base.VectorSafetyEnv`. Nothing resets by itself: a
    sub-environment runs from ``reset_envs`` until a step reports ``terminated`` or ``truncated``, and is
    then *idle* until the next ``reset_envs`` (as is one never reset). ``step`` does not touch an idle
    sub-environment (simulators such as Safety-Gymnasium refuse a step after the end of an episode); its row
    of the result holds its last observation (zeros before its first reset), reward 0, cost 0 and
    ``terminated = truncated = False``, so that an episode's end is reported exactly once.
    Observations keep the simulator's dtype; rewards and costs are float64 arrays.
    """

    def __init__(self, envs: Sequence[gym.Env]) -> None:
        """Take ownership of ``envs`` (closed by :meth:`close`); they must share their spaces' shapes."""
        if len(envs) == 0:
            raise ValueError("SyncVectorSafetyEnv needs at least one environment")
        first = envs[0]
        for i, env in enumerate(envs[1:], start=1):
            if (env.observation_space.shape, env.action_space.shape) != (
                first.observation_space.shape,
                first.action_space.shape,
            ):
                raise ValueError(
                    f"environment {i} has observation/action shapes {env.observation_space.shape}/"
                    f"{env.action_space.shape}, environment 0 has {first.observation_space.shape}/"
                    f"{first.action_space.shape}: build every sub-environment from the same task"
                )
        self.envs = list(envs)
        self.num_envs = len(self.envs)
        self.single_observation_space: gym.spaces.Box = first.observation_space
        self.single_action_space: gym.spaces.Box = first.action_space
        obs_space = self.single_observation_space
        self._observations = np.zeros((self.num_envs,) + obs_space.shape, dtype=obs_space.dtype)
        self._running = np.zeros(self.num_envs, dtype=bool)

    def reset_envs(self, indices: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
        """Reset sub-environment ``indices[k]`` with seed ``seeds[k]``; return their first observations."""
        indices = [int(i) for i in indices]
        if len(indices) != len(seeds):
            raise ValueError(f"reset_envs got {len(indices)} indices but {len(seeds)} seeds: pass one seed per index")
        if len(set(indices)) != len(indices):
            raise ValueError(f"reset_envs got repeated indices {indices}: reset each sub-environment once")
        bad = [i for i in indices if not 0 <= i < self.num_envs]
        if bad:
            raise IndexError(f"sub-environment indices {bad} out of range for num_envs={self.num_envs}")
        for i, seed in zip(indices, seeds):
            obs, _ = self.envs[i].reset(seed=int(seed))
            self._observations[i] = obs
            self._running[i] = True
        return self._observations[indices]

    def step(self, actions: np.ndarray) -> VectorStep:
        """Step every running sub-environment with its row of ``actions`` ``(num_envs, act_dim)``."""
        actions = np.asarray(actions)
        expected = (self.num_envs,) + self.single_action_space.shape
        if actions.shape != expected:
            raise ValueError(f"actions have shape {actions.shape}, expected {expected} (one row per sub-environment)")
        rewards = np.zeros(self.num_envs)
        costs = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        for i in np.flatnonzero(self._running):
            obs, rewards[i], terminated[i], truncated[i], info = self.envs[i].step(actions[i])
            costs[i] = info["cost"]
            self._observations[i] = obs
        self._running &= ~(terminated | truncated)
        return VectorStep(self._observations.copy(), rewards, costs, terminated, truncated)

    def close(self) -> None:
        """Close every sub-environment."""
        for env in self.envs:
            env.close()


__all__ = ["SyncVectorSafetyEnv"]
