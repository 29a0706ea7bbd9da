"""saferl.datasets: the tasks of saferl.

Dataset formats (DSRL, D4RL, Minari), the task registry, transforms, each task's environment and
the built-in point robot. This package imports nothing from the rest of saferl.
"""

from .errors import (
    DatasetFormatError,
    DatasetNotFoundError,
    SaferlDataError,
    SimulatorMissingError,
    TaskUnavailableError,
    UnknownTaskError,
)
from .download import d4rl_cache_dir, dataset_path, dsrl_cache_dir, is_cached
from .formats import (
    d4rl_normalized_score,
    read_d4rl,
    read_dsrl,
    read_minari,
    write_d4rl,
    write_dsrl,
    write_minari,
)
from .loading import load_dataset
from .registry import TASKS, TaskSpec, get_task, list_tasks
from .types import Batch, TransitionDataset

__all__ = [
    "load_dataset",
    "read_dsrl",
    "write_dsrl",
    "read_d4rl",
    "write_d4rl",
    "read_minari",
    "write_minari",
    "d4rl_normalized_score",
    "dsrl_cache_dir",
    "d4rl_cache_dir",
    "dataset_path",
    "is_cached",
    "Batch",
    "TransitionDataset",
    "TaskSpec",
    "TASKS",
    "get_task",
    "list_tasks",
    "SaferlDataError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "UnknownTaskError",
    "TaskUnavailableError",
    "SimulatorMissingError",
]
