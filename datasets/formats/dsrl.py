"""DSRL's HDF5 format: one file per task, seven gzip-compressed columns.

Keys ``observations``, ``next_observations``, ``actions`` (``(N, dim)``), ``rewards``, ``costs``,
``terminals``, ``timeouts`` (``(N,)``; DSRL's own files may store them as ``(N, 1)``). ``terminals``
marks true terminations, ``timeouts`` time-limit truncations. Other keys (DSRL files carry a few)
are ignored.

saferl writes float32 columns (flags as 0.0/1.0 float32, which numerical code like ``1 - done``
can use directly), gzip level 4 with the shuffle filter, so that DSRL's reader
(``h5py`` + a check of the seven keys) and ours both read it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..types import TransitionDataset
from .hdf5_common import (
    DSRL_KEYS,
    check_columns,
    open_hdf5,
    read_flags,
    read_float32,
    read_metadata,
    read_vector,
    require_keys,
    write_columns,
)

_FIX = "delete it and download or rebuild it"


def read_dsrl(path: str | os.PathLike[str]) -> TransitionDataset:
    """Read a DSRL HDF5 file into a :class:`TransitionDataset` (float32 arrays, bool flags).

    Accepts float64 columns, ``(N, 1)`` reward/cost/flag columns and extra keys. ``metadata`` holds
    what saferl stored in the file (if it wrote it), then ``source`` (the path) and ``format``
    (``"dsrl"``). Any problem (missing file or key, wrong shape, unequal lengths, NaN/inf, corrupt
    or non-HDF5 file) raises one :class:`DatasetFormatError` or :class:`DatasetNotFoundError` naming
    the file.
    """
    path = Path(path)
    with open_hdf5(path, _FIX) as handle:
        require_keys(handle, DSRL_KEYS, path, "DSRL")
        check_columns(handle, DSRL_KEYS, path)
        metadata = read_metadata(handle)
        arrays = {key: read_float32(handle[key]) for key in ("observations", "next_observations", "actions")}
        arrays.update({key: read_vector(handle[key]) for key in ("rewards", "costs")})
        arrays.update({key: read_flags(handle[key], path) for key in ("terminals", "timeouts")})
    metadata.update(source=str(path), format="dsrl")
    return TransitionDataset(**arrays, metadata=metadata)


def write_dsrl(dataset: TransitionDataset, path: str | os.PathLike[str]) -> Path:
    """Write ``dataset`` as a DSRL HDF5 file at ``path``, atomically; return the path.

    The file is written under a temporary name in the same folder and renamed into place, so
    ``path`` is either the complete new file or untouched, also on errors or ``KeyboardInterrupt``.
    ``dataset.metadata`` (JSON-able) is kept in a root attribute that DSRL's reader ignores.
    """
    path = Path(path)
    columns = {key: np.asarray(value, dtype=np.float32) for key, value in dataset.arrays().items()}
    write_columns(path, {key: columns[key] for key in DSRL_KEYS}, dataset.metadata)
    return path


__all__ = ["read_dsrl", "write_dsrl"]
