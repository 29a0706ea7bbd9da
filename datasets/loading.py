"""One entry point to get a dataset: ``load_dataset(task_or_path)``.

A path is read as DSRL if the file has ``costs``, else as D4RL. A task id goes through the registry:
a built-in task's file is built into the DSRL cache if missing, any other task's file is taken from
its cache or downloaded into it. Tasks whose simulator cannot run here (MetaDrive) still load: the
data needs no simulator.
"""

from __future__ import annotations

import os
from pathlib import Path

from .download import cache_env_var, dataset_path, download_task
from .errors import DatasetNotFoundError
from .formats.d4rl import read_d4rl
from .formats.dsrl import read_dsrl
from .formats.hdf5_common import detect_format
from .registry import TASKS, TaskSpec, get_task
from .types import TransitionDataset

_HDF5_SUFFIXES = (".hdf5", ".h5")


def load_dataset(task_or_path: str | os.PathLike[str] | TaskSpec, *, download: bool = True) -> TransitionDataset:
    """Load a task's dataset (by task id or :class:`TaskSpec`) or a DSRL/D4RL HDF5 file (by path).

    ``metadata`` gets ``source`` (the file), ``format`` (``dsrl``/``d4rl``) and ``task`` (the task's
    short name; for a path, the task whose registered file name it carries, if any). With
    ``download=False`` a task that is not cached raises :class:`DatasetNotFoundError` saying where to
    put the file. A string that is neither an existing file nor a task id raises
    :class:`UnknownTaskError` (or :class:`DatasetNotFoundError` if it looks like a path).
    """
    if isinstance(task_or_path, TaskSpec):
        return _load_task(task_or_path, download)
    path = Path(task_or_path)
    if path.is_file():
        return _read_file(path, _task_of_file(path))
    if not isinstance(task_or_path, str) or _looks_like_path(task_or_path):
        raise DatasetNotFoundError(f"no dataset file at {path}; check the path (or pass a task id instead)")
    return _load_task(get_task(task_or_path), download)


def _load_task(spec: TaskSpec, download: bool) -> TransitionDataset:
    """Load ``spec``'s dataset from its cache, building or downloading it if missing."""
    if spec.format == "builtin":
        from .point_robot_data import ensure_builtin_dataset

        return _read_file(ensure_builtin_dataset(spec), spec)
    path = dataset_path(spec)
    if not path.is_file():
        if not download:
            raise DatasetNotFoundError(
                f"the dataset of '{spec.name}' is not cached at {path}; load it with download=True, or fetch "
                f"{spec.url} by hand and put it there (${cache_env_var(spec)} moves the folder)"
            )
        download_task(spec)
    return _read_file(path, spec)


def _read_file(path: Path, spec: TaskSpec | None) -> TransitionDataset:
    """Read a DSRL or D4RL file (told apart by its keys) and record the task in its metadata."""
    reader = read_dsrl if detect_format(path) == "dsrl" else read_d4rl
    dataset = reader(path)
    if spec is not None:
        dataset.metadata["task"] = spec.name
    return dataset


def _looks_like_path(name: str) -> bool:
    """Whether ``name`` is meant as a file path rather than a task id (task ids hold no separator)."""
    return Path(name).suffix in _HDF5_SUFFIXES or "/" in name or os.sep in name


def _task_of_file(path: Path) -> TaskSpec | None:
    """The registered task whose dataset file name ``path`` carries, if exactly one does."""
    matches = [spec for spec in TASKS.values() if spec.file_name == path.name]
    return matches[0] if len(matches) == 1 else None


__all__ = ["load_dataset"]
