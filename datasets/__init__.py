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
from .registry import TASKS, TaskSpec, get_task, list_tasks
from .types import Batch, TransitionDataset

__all__ = [
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
