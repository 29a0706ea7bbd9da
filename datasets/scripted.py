"""Roll out scripted behaviours on a numpy-batched simulator: one episode per environment, all at once.

The built-in datasets (the point robot's and the toy dosing simulator's) are made this way: every
behaviour runs in its own slot of one vector environment, so a dataset of a thousand trajectories takes
one Python loop over time steps, not over episodes.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .envs.base import VectorSafetyEnv
from .types import TransitionDataset


def scripted_rollouts(
    env: VectorSafetyEnv,
    policy: Callable[[np.ndarray], np.ndarray],
    num_trajectories: int,
    episode_len: int,
    rng: np.random.Generator,
    metadata: dict[str, Any],
) -> TransitionDataset:
    """One episode in each of the ``num_trajectories`` slots of ``env``, acting with ``policy(obs)``.

    Episode seeds are drawn from ``rng`` (after whatever the caller drew from it, before the policy's own
    draws), so a builder that seeds one generator is deterministic. A slot whose episode ends early keeps
    only the steps it took; the loop stops when every episode has ended or after ``episode_len`` steps.
    Returns the transitions in trajectory-major order (DSRL's layout).
    """
    episode_seeds = rng.integers(0, 2**31 - 1, size=num_trajectories)
    obs = env.reset_envs(np.arange(num_trajectories), episode_seeds.tolist())
    columns: dict[str, list[np.ndarray]] = {k: [] for k in ("observations", "actions", "rewards", "costs",
                                                             "next_observations", "terminals", "timeouts", "alive")}
    running = np.ones(num_trajectories, bool)
    for _ in range(episode_len):
        action = policy(obs)
        step = env.step(action)
        for key, value in (("observations", obs), ("actions", action), ("rewards", step.rewards),
                           ("costs", step.costs), ("next_observations", step.observations),
                           ("terminals", step.terminated), ("timeouts", step.truncated), ("alive", running.copy())):
            columns[key].append(np.asarray(value))
        running &= ~(step.terminated | step.truncated)
        obs = step.observations
        if not running.any():
            break
    alive = np.stack(columns.pop("alive"))
    keep = alive.T.reshape(-1)

    def flat(key: str, dtype: type) -> np.ndarray:
        """Time-major ``(T, n, ...)`` to trajectory-major ``(n * T, ...)``, steps taken only."""
        arr = np.stack(columns[key]).astype(dtype, copy=False)
        return np.swapaxes(arr, 0, 1).reshape((-1,) + arr.shape[2:])[keep]

    return TransitionDataset(
        observations=flat("observations", np.float32),
        actions=flat("actions", np.float32),
        rewards=flat("rewards", np.float32),
        costs=flat("costs", np.float32),
        next_observations=flat("next_observations", np.float32),
        terminals=flat("terminals", bool),
        timeouts=flat("timeouts", bool),
        metadata=metadata,
    )


__all__ = ["scripted_rollouts"]
