"""D4RL's HDF5 format (reward-only offline RL), read with h5py, and its normalised score.

Keys ``observations``, ``actions``, ``rewards``, ``terminals``, ``timeouts``; most v2 files also hold
``next_observations``. Other keys (``infos/...``, ``metadata/...``) are ignored. D4RL has no cost
signal: ``costs`` are zeros.

Without ``next_observations`` the next observation of row ``i`` is row ``i + 1``'s observation, as
d4rl's ``qlearning_dataset`` derives it, and a row with no successor in its trajectory (a
``timeouts`` row, whose following row starts another episode, or the file's last row) is dropped
unless it is terminal. A terminal row keeps the following row's observation (the file's last row:
its own), exactly as d4rl does; the terminal flag masks it out of every TD target. Where dropping a
row leaves its predecessor as the trajectory's last row, that predecessor is marked ``timeouts``:
the episode was cut there, and its next observation is still a true one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DatasetFormatError
from ..registry import TaskSpec, get_task
from ..types import TransitionDataset
from .hdf5_common import (
    D4RL_KEYS,
    check_columns,
    open_hdf5,
    read_flags,
    read_float32,
    read_metadata,
    read_vector,
    require_keys,
    write_columns,
)

_FIX = "delete it and download it again"


def read_d4rl(path: str | os.PathLike[str]) -> TransitionDataset:
    """Read a D4RL HDF5 file, with or without ``next_observations``, into a :class:`TransitionDataset`.

    ``costs`` are zeros; ``metadata`` holds ``source`` (the path) and ``format`` (``"d4rl"``). Errors
    as :func:`saferl.datasets.formats.read_dsrl`.
    """
    path = Path(path)
    with open_hdf5(path, _FIX) as handle:
        require_keys(handle, D4RL_KEYS, path, "D4RL")
        has_next = "next_observations" in handle
        check_columns(handle, D4RL_KEYS + (("next_observations",) if has_next else ()), path)
        metadata = read_metadata(handle)
        observations = read_float32(handle["observations"])
        actions = read_float32(handle["actions"])
        rewards = read_vector(handle["rewards"])
        terminals = read_flags(handle["terminals"], path)
        timeouts = read_flags(handle["timeouts"], path)
        next_observations = read_float32(handle["next_observations"]) if has_next else None
    metadata.update(source=str(path), format="d4rl")
    if next_observations is None:
        return _with_derived_next_observations(observations, actions, rewards, terminals, timeouts, metadata)
    return TransitionDataset(
        observations=observations, actions=actions, rewards=rewards, costs=np.zeros_like(rewards),
        next_observations=next_observations, terminals=terminals, timeouts=timeouts, metadata=metadata,
    )


def _with_derived_next_observations(
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminals: np.ndarray,
    timeouts: np.ndarray,
    metadata: dict,
) -> TransitionDataset:
    """Pair each row with the next row's observation and drop rows without a successor (module doc)."""
    n = observations.shape[0]
    successor = np.minimum(np.arange(n) + 1, n - 1)
    has_successor = ~timeouts
    has_successor[-1] = False
    keep = has_successor | terminals
    if not keep.any():
        raise DatasetFormatError(
            f"{metadata['source']}: no transition has a next observation (every row is a time-out); "
            "the file needs 'next_observations' or trajectories longer than one step"
        )
    cut_here = keep & ~terminals & ~np.append(keep[1:], False)
    return TransitionDataset(
        observations=observations[keep], actions=actions[keep], rewards=rewards[keep],
        costs=np.zeros(int(keep.sum()), dtype=np.float32), next_observations=observations[successor[keep]],
        terminals=terminals[keep], timeouts=(timeouts | cut_here)[keep], metadata=metadata,
    )


def write_d4rl(
    dataset: TransitionDataset, path: str | os.PathLike[str], *, next_observations: bool = True
) -> Path:
    """Write ``dataset`` as a D4RL HDF5 file (atomically, like ``write_dsrl``); costs are not stored.

    ``next_observations=False`` leaves that key out, as older D4RL files do.
    """
    keys = D4RL_KEYS + (("next_observations",) if next_observations else ())
    arrays = dataset.arrays()
    path = Path(path)
    write_columns(path, {key: np.asarray(arrays[key], dtype=np.float32) for key in keys}, dataset.metadata)
    return path


def d4rl_normalized_score(task: TaskSpec | str, returns: float | np.ndarray) -> float | np.ndarray:
    """D4RL's normalised score ``100 * (R - ref_min) / (ref_max - ref_min)`` of episode return(s) ``R``.

    ``ref_min``/``ref_max`` are the task's ``reward_min``/``reward_max`` in the registry (d4rl's
    random and expert reference scores). 0 is a random policy, 100 an expert one.
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    if spec.format != "d4rl":
        raise ValueError(
            f"'{spec.name}' is a {spec.format} task, not a D4RL one; D4RL's score applies only to D4RL tasks "
            "(safe tasks are scored by normalised reward and cost)"
        )
    scores = 100.0 * (np.asarray(returns, dtype=np.float64) - spec.reward_min) / (spec.reward_max - spec.reward_min)
    return float(scores) if scores.ndim == 0 else scores


__all__ = ["read_d4rl", "write_d4rl", "d4rl_normalized_score"]
