"""Dataset file formats: DSRL and D4RL HDF5 files, and Minari datasets.

Every reader returns a :class:`~saferl.datasets.types.TransitionDataset` and reports any problem
with the input as one :class:`~saferl.datasets.errors.DatasetFormatError` (or
:class:`~saferl.datasets.errors.DatasetNotFoundError`) naming the file; every HDF5 writer writes
atomically.
"""

from .d4rl import d4rl_normalized_score, read_d4rl, write_d4rl
from .dsrl import read_dsrl, write_dsrl
from .hdf5_common import D4RL_KEYS, DSRL_KEYS, detect_format
from .minari_io import read_minari, write_minari

__all__ = [
    "DSRL_KEYS",
    "D4RL_KEYS",
    "detect_format",
    "read_dsrl",
    "write_dsrl",
    "read_d4rl",
    "write_d4rl",
    "d4rl_normalized_score",
    "read_minari",
    "write_minari",
]
