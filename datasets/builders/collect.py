"""Roll behaviour policies out in a task's simulator and keep whole trajectories.

:func:`collect_episodes` runs a list of episodes, each given by a :class:`EpisodeSpec` (which snapshot,
which action noise, which reset seed), on a *fresh* vector environment, and returns their transitions in
episode order. A fresh environment per call makes the result a pure function of its arguments:
Bullet-Safety-Gym carries physics state from one episode to the next in the same world, so an episode's
outcome depends on what that world ran before. The build runs one call per chunk, which is what makes
an interrupted build resume to the very same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..envs import VectorSafetyEnv, make_vector_env
from ..registry import TaskSpec
from ..types import TransitionDataset
from .snapshots import PolicySnapshot


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to collect: policy ``snapshot`` (index) with Gaussian ``action_noise``, reset by ``seed``."""

    snapshot: int
    action_noise: float
    seed: int


def collect_episodes(
    task: TaskSpec,
    snapshots: Sequence[PolicySnapshot],
    episodes: Sequence[EpisodeSpec],
    *,
    num_envs: int,
    noise_seed: int,
) -> TransitionDataset:
    """Collect ``episodes`` with ``num_envs`` environments stepped together; return their transitions.

    Free environments take the next episode of the list; the action noise of every step comes from one
    ``numpy.random.Generator(noise_seed)``, drawn for all running environments at once. Each stored
    action is the one the simulator received (clipped to its box). Trajectory ``i`` of the returned
    dataset is ``episodes[i]``, closed by its ``terminals``/``timeouts`` flag.
    """
    if not episodes:
        raise ValueError("collect_episodes needs at least one episode")
    for spec in episodes:
        if not 0 <= spec.snapshot < len(snapshots):
            raise IndexError(f"episode asks for snapshot {spec.snapshot}, but there are {len(snapshots)}")
    num_envs = max(1, min(num_envs, len(episodes)))
    rng = np.random.default_rng(noise_seed)
    env = make_vector_env(task, num_envs)
    try:
        return _run(env, snapshots, episodes, num_envs, rng)
    finally:
        env.close()


def _run(
    env: VectorSafetyEnv, snapshots: Sequence[PolicySnapshot], episodes: Sequence[EpisodeSpec], num_envs: int, rng: np.random.Generator,
) -> TransitionDataset:
    buffers: list[dict[str, list] | None] = [None] * len(episodes)
    slot_episode = np.full(num_envs, -1)
    next_episode = 0
    obs = np.zeros((num_envs,) + env.single_observation_space.shape)

    def start(slots: np.ndarray) -> None:
        nonlocal next_episode
        take = slots[: max(0, len(episodes) - next_episode)]
        if take.size == 0:
            return
        ids = np.arange(next_episode, next_episode + take.size)
        next_episode += take.size
        obs[take] = env.reset_envs(take, [episodes[i].seed for i in ids])
        slot_episode[take] = ids
        for i in ids:
            buffers[i] = {key: [] for key in ("obs", "act", "rew", "cost", "next", "term", "trunc")}

    start(np.arange(num_envs))
    act_dim = int(np.prod(env.single_action_space.shape))
    while (slot_episode >= 0).any():
        running = np.flatnonzero(slot_episode >= 0)
        actions = np.zeros((num_envs, act_dim))
        # One noise draw for all running slots, then each snapshot acts on its own slots.
        noise = rng.standard_normal((running.size, act_dim))
        for snapshot_id in np.unique([episodes[slot_episode[s]].snapshot for s in running]):
            rows = [k for k, s in enumerate(running) if episodes[slot_episode[s]].snapshot == snapshot_id]
            slots = running[rows]
            snapshot = snapshots[snapshot_id]
            sigma = np.array([episodes[slot_episode[s]].action_noise for s in slots])[:, None]
            actions[slots] = snapshot.act(obs[slots], sigma * noise[rows])
        step = env.step(actions.reshape((num_envs,) + env.single_action_space.shape))
        for s in running:
            buf = buffers[slot_episode[s]]
            buf["obs"].append(obs[s].copy())
            buf["act"].append(actions[s].copy())
            buf["rew"].append(step.rewards[s])
            buf["cost"].append(step.costs[s])
            buf["next"].append(step.observations[s].copy())
            buf["term"].append(bool(step.terminated[s]))
            buf["trunc"].append(bool(step.truncated[s]))
        obs[running] = step.observations[running]
        ended = running[(step.terminated | step.truncated)[running]]
        slot_episode[ended] = -1
        start(ended)

    parts = [buffers[i] for i in range(len(episodes))]
    dataset = TransitionDataset(
        observations=np.concatenate([np.asarray(p["obs"]) for p in parts]),
        actions=np.concatenate([np.asarray(p["act"]) for p in parts]),
        rewards=np.concatenate([np.asarray(p["rew"]) for p in parts]),
        costs=np.concatenate([np.asarray(p["cost"]) for p in parts]),
        next_observations=np.concatenate([np.asarray(p["next"]) for p in parts]),
        terminals=np.concatenate([np.asarray(p["term"]) for p in parts]),
        timeouts=np.concatenate([np.asarray(p["trunc"]) for p in parts]),
    )
    return dataset


__all__ = ["EpisodeSpec", "collect_episodes"]
