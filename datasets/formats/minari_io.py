"""Minari datasets (Farama's offline RL format), both directions, fully offline.

A Minari episode of ``T`` steps stores ``T + 1`` observations (the reset observation, then one per
step), ``T`` actions, rewards, terminations and truncations, and ``infos`` aligned with the
observations (entry 0 from the reset, entry ``t + 1`` from step ``t``), as Minari's DataCollector
records them. saferl keeps the step cost in ``infos["cost"]`` (``T + 1`` entries, the reset one 0);
when reading, a ``cost`` info of ``T`` entries is taken as per-step too, and a dataset without one
gets zero costs (a reward-only dataset).

Minari stores one observation sequence per episode, so a transition's ``next_observations`` must be
the next row's ``observations`` inside each trajectory: :func:`write_minari` refuses a dataset where
it is not, rather than silently change it. Datasets live under ``$MINARI_DATASETS_PATH`` (default
``~/.minari/datasets``); writing goes through ``minari.create_dataset_from_buffers``, which needs
neither jax nor the environment.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import DatasetFormatError, DatasetNotFoundError, SaferlDataError, SimulatorMissingError
from ..types import TransitionDataset


def _minari() -> ModuleType:
    """Import the optional ``minari`` package, or say how to install it."""
    try:
        import minari
    except ImportError as exc:
        raise SimulatorMissingError(
            "reading or writing Minari datasets needs the minari package: pip install 'saferl[minari]'"
        ) from exc
    return minari


def _dataset_dir(dataset_id: str) -> Path:
    """The folder Minari keeps ``dataset_id`` in (under ``$MINARI_DATASETS_PATH``)."""
    from minari.storage.datasets_root_dir import get_dataset_path

    return Path(get_dataset_path(dataset_id))


def write_minari(dataset: TransitionDataset, dataset_id: str) -> Path:
    """Write ``dataset`` as the local Minari dataset ``dataset_id``; return its folder.

    ``dataset_id`` follows Minari's ``(namespace/)name-v<version>``. One Minari episode per trajectory;
    costs go into ``infos["cost"]``; observation and action spaces are unbounded float32 boxes of the
    dataset's dimensions (the data fixes no bounds). An existing dataset of that id is an error; a
    failed write removes the folder it started, so a retry starts clean.
    """
    minari = _minari()
    from gymnasium.spaces import Box
    from minari.data_collector import EpisodeBuffer

    _check_next_observations_chain(dataset)
    target = _dataset_dir(dataset_id)
    if target.exists():
        raise SaferlDataError(
            f"a Minari dataset '{dataset_id}' already exists at {target}; pick another id or version, "
            "or delete it first (minari.delete_dataset)"
        )
    buffers = []
    for episode, (start, end) in enumerate(zip(dataset.episode_starts, dataset.episode_ends)):
        observations = np.concatenate([dataset.observations[start:end], dataset.next_observations[end - 1 : end]])
        buffers.append(
            EpisodeBuffer(
                id=episode,
                observations=observations,
                actions=dataset.actions[start:end],
                rewards=dataset.rewards[start:end],
                terminations=dataset.terminals[start:end],
                truncations=dataset.timeouts[start:end],
                infos={"cost": np.concatenate([[0.0], dataset.costs[start:end]]).astype(np.float32)},
            )
        )
    unbounded = np.float32(np.inf)
    try:
        with warnings.catch_warnings():  # Minari nags about unset author/permalink/env: not ours to know
            warnings.filterwarnings("ignore", category=UserWarning, module="minari")
            minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                observation_space=Box(-unbounded, unbounded, (dataset.obs_dim,), np.float32),
                action_space=Box(-unbounded, unbounded, (dataset.act_dim,), np.float32),
                description=str(dataset.metadata.get("task", "saferl dataset")),
            )
    except BaseException as exc:
        shutil.rmtree(target, ignore_errors=True)
        if isinstance(exc, Exception):
            raise DatasetFormatError(f"could not write Minari dataset '{dataset_id}' to {target}: {exc}") from exc
        raise
    return target


def _check_next_observations_chain(dataset: TransitionDataset) -> None:
    """Raise if some ``next_observations[i]`` differs from ``observations[i + 1]`` in one trajectory."""
    inside = np.ones(len(dataset) - 1, dtype=bool)
    inside[dataset.episode_ends[:-1] - 1] = False
    broken = inside & np.any(dataset.next_observations[:-1] != dataset.observations[1:], axis=1)
    if broken.any():
        row = int(np.flatnonzero(broken)[0])
        raise DatasetFormatError(
            f"cannot write {dataset.metadata.get('source', 'the dataset')} as Minari: next_observations[{row}] "
            f"differs from observations[{row + 1}] inside one trajectory ({int(broken.sum())} such rows), "
            "and Minari stores one observation sequence per episode; mark the trajectory ends "
            "(terminals/timeouts) or write DSRL instead"
        )


def read_minari(dataset_id: str) -> TransitionDataset:
    """Read the local Minari dataset ``dataset_id`` (never downloads) into a :class:`TransitionDataset`.

    Needs flat (Box) observations and actions. An episode that ends with neither termination nor
    truncation is marked ``timeouts`` at its last step (except the last episode) so that trajectory
    boundaries survive. ``metadata``: ``source`` (the dataset folder), ``task`` (the id),
    ``format`` (``"minari"``).
    """
    minari = _minari()
    folder = _dataset_dir(dataset_id)
    try:
        data = minari.load_dataset(dataset_id)
    except FileNotFoundError as exc:
        raise DatasetNotFoundError(
            f"no local Minari dataset '{dataset_id}' at {folder}; saferl does not download Minari datasets: "
            "run `minari download` yourself or set MINARI_DATASETS_PATH to the folder that holds it"
        ) from exc
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetFormatError(f"Minari dataset '{dataset_id}' at {folder} does not load: {exc}") from exc
    episodes = list(data.iterate_episodes())
    if not episodes:
        raise DatasetFormatError(f"Minari dataset '{dataset_id}' at {folder} holds no episode")
    columns: dict[str, list[np.ndarray]] = {key: [] for key in
                                            ("observations", "next_observations", "actions", "rewards", "costs",
                                             "terminals", "timeouts")}
    for number, episode in enumerate(episodes):
        steps = len(episode)
        observations = episode.observations
        if not isinstance(observations, np.ndarray) or not isinstance(episode.actions, np.ndarray):
            raise DatasetFormatError(
                f"Minari dataset '{dataset_id}': episode {episode.id} has structured (dict/tuple) observations "
                "or actions; saferl reads only flat Box spaces: flatten them first"
            )
        if observations.shape[0] != steps + 1:
            raise DatasetFormatError(
                f"Minari dataset '{dataset_id}': episode {episode.id} has {observations.shape[0]} observations "
                f"for {steps} steps (expected {steps + 1}); the dataset is malformed"
            )
        timeouts = np.asarray(episode.truncations, dtype=bool).copy()
        terminals = np.asarray(episode.terminations, dtype=bool)
        if steps and not (terminals[-1] or timeouts[-1]) and number < len(episodes) - 1:
            timeouts[-1] = True
        columns["observations"].append(observations[:-1].reshape(steps, -1))
        columns["next_observations"].append(observations[1:].reshape(steps, -1))
        columns["actions"].append(episode.actions.reshape(steps, -1))
        columns["rewards"].append(np.asarray(episode.rewards))
        columns["costs"].append(_episode_costs(episode.infos or {}, steps, dataset_id, episode.id))
        columns["terminals"].append(terminals)
        columns["timeouts"].append(timeouts)
    arrays = {key: np.concatenate(parts) for key, parts in columns.items()}
    metadata = {"source": str(folder), "task": dataset_id, "format": "minari"}
    return TransitionDataset(**arrays, metadata=metadata)


def _episode_costs(infos: dict, steps: int, dataset_id: str, episode_id: int) -> np.ndarray:
    """Per-step costs from ``infos["cost"]`` (``T + 1`` entries with the reset first, or ``T``); else zeros."""
    if "cost" not in infos:
        return np.zeros(steps, dtype=np.float32)
    cost = np.asarray(infos["cost"], dtype=np.float32).reshape(-1)
    if cost.shape[0] == steps + 1:
        return cost[1:]
    if cost.shape[0] == steps:
        return cost
    raise DatasetFormatError(
        f"Minari dataset '{dataset_id}': episode {episode_id} has {cost.shape[0]} 'cost' infos for {steps} steps "
        f"(expected {steps + 1}, reset included, or {steps})"
    )


__all__ = ["read_minari", "write_minari"]
