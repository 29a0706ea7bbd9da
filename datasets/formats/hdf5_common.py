"""HDF5 plumbing shared by the DSRL and D4RL formats.

Three jobs, each done once here:

- *Opening and checking* a file so that every failure (missing file, truncated or non-HDF5 file,
  missing key, wrong shape, unequal lengths, corrupt chunk) becomes one :class:`DatasetFormatError`
  that names the file, the problem and what to do, instead of an h5py traceback.
- *Reading* columns straight into preallocated float32 arrays. ``(N, 1)`` columns are squeezed to
  ``(N,)``; float64 sources are cast on the fly, so peak memory stays close to the float32 result.
  Gzip-compressed chunked datasets (what DSRL and saferl write) are inflated chunk by chunk in
  worker threads, since ``zlib`` releases the GIL while HDF5's own filter pipeline runs on one core.
- *Writing* atomically: the file is written under a temporary name in the destination folder and
  moved into place with :func:`os.replace`, so a reader never sees a half-written file, even when
  the writer dies or is interrupted.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping, Sequence

import h5py
import numpy as np

from ..errors import DatasetFormatError, DatasetNotFoundError

HDF5Format = Literal["dsrl", "d4rl"]

DSRL_KEYS = ("observations", "next_observations", "actions", "rewards", "costs", "terminals", "timeouts")
"""Datasets every DSRL file holds (DSRL's own reader asserts exactly these)."""

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
"""Datasets every D4RL v2 file holds; ``next_observations`` is optional."""

MATRIX_KEYS = ("observations", "next_observations", "actions")
"""Columns of shape ``(N, dim)``; every other column is ``(N,)`` or ``(N, 1)``."""

METADATA_ATTR = "saferl_metadata"
"""Root attribute where saferl keeps a dataset's JSON metadata (other readers ignore attributes)."""

GZIP_LEVEL = 4
"""h5py's default gzip level: higher levels write slower and inflate no faster."""

CHUNK_BYTES = 1 << 20
"""Target size of one HDF5 chunk: large enough for fast inflation, small enough for HDF5's cache."""

MAX_READ_THREADS = 8
"""Threads inflating chunks; more gain little, as HDF5 serialises the raw chunk reads between them."""

_DEFLATE = h5py.h5z.FILTER_DEFLATE
_SHUFFLE = h5py.h5z.FILTER_SHUFFLE


# ---------------------------------------------------------------------------------------------- opening
@contextlib.contextmanager
def open_hdf5(path: Path, what_to_do: str, shown_as: str | None = None) -> Iterator[h5py.File]:
    """Open ``path`` for reading; turn every h5py ``OSError`` (also while reading) into one clear error.

    ``what_to_do`` ends the message of a corrupt file, e.g. "delete it and download it again";
    ``shown_as`` names the file in messages instead of ``path`` (e.g. the URL of a download).
    Raises :class:`DatasetNotFoundError` if there is no such file and :class:`DatasetFormatError` if it
    is not a readable HDF5 file (truncated download, another format, a folder, ...).
    """
    name = shown_as or str(path)
    if not path.exists():
        raise DatasetNotFoundError(f"no dataset file at {path}; check the path or download the dataset first")
    if not path.is_file():
        raise DatasetFormatError(f"{path} is a folder, not an HDF5 dataset file; pass the .hdf5 file inside it")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetFormatError(
            f"{name} is not a readable HDF5 file ({exc}); it may be truncated or in another format: {what_to_do}"
        ) from exc
    with handle:
        try:
            yield handle
        except OSError as exc:
            raise DatasetFormatError(
                f"{name}: reading failed ({exc}); the file is corrupt: {what_to_do}"
            ) from exc


def detect_format(path: Path) -> HDF5Format:
    """``"dsrl"`` if the file has a ``costs`` dataset, ``"d4rl"`` if it has D4RL's keys; else an error."""
    with open_hdf5(path, "check that it is a DSRL or D4RL dataset") as handle:
        keys = set(handle.keys())
    if "costs" in keys:
        return "dsrl"
    if set(D4RL_KEYS) <= keys:
        return "d4rl"
    raise DatasetFormatError(
        f"{path} is neither a DSRL dataset (needs {', '.join(DSRL_KEYS)}) nor a D4RL dataset "
        f"(needs {', '.join(D4RL_KEYS)}); it holds {', '.join(sorted(keys)) or 'no datasets'}"
    )


def require_keys(handle: h5py.File, keys: Sequence[str], source: Path | str, format_name: str) -> None:
    """Raise :class:`DatasetFormatError` naming every key of ``keys`` missing from ``handle`` (file ``source``)."""
    missing = [key for key in keys if not isinstance(handle.get(key), h5py.Dataset)]
    if missing:
        found = ", ".join(sorted(handle.keys())) or "nothing"
        raise DatasetFormatError(
            f"{source}: missing {', '.join(repr(k) for k in missing)}; a {format_name} file needs "
            f"{', '.join(keys)} (found {found}). The file is incomplete or of another format: "
            "re-download or rebuild it"
        )


def check_columns(handle: h5py.File, keys: Sequence[str], path: Path) -> int:
    """Check dtype, rank and length of the columns ``keys`` before reading them; return the row count N.

    ``observations`` fixes N. Matrix columns (:data:`MATRIX_KEYS`) must be ``(N, dim)`` with
    ``next_observations`` shaped like ``observations``; the others ``(N,)`` or ``(N, 1)``.
    """
    n = None
    for key in keys:
        column = handle[key]
        if column.dtype.kind not in "fiub":
            raise DatasetFormatError(
                f"{path}: '{key}' holds {column.dtype} values, not numbers; the file is not a transition dataset"
            )
        shape = column.shape
        if key in MATRIX_KEYS:
            if len(shape) != 2:
                raise DatasetFormatError(f"{path}: '{key}' must be 2-D (N, dim) but has shape {shape}; rebuild it")
        elif not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise DatasetFormatError(f"{path}: '{key}' must have shape (N,) or (N, 1) but has {shape}; rebuild it")
        if n is None:
            n = shape[0]
        elif shape[0] != n:
            raise DatasetFormatError(
                f"{path}: length mismatch: '{key}' has {shape[0]} rows but '{keys[0]}' has {n}; "
                "the file was cut or assembled wrongly: rebuild it"
            )
    if "next_observations" in keys and handle["next_observations"].shape != handle["observations"].shape:
        raise DatasetFormatError(
            f"{path}: 'next_observations' has shape {handle['next_observations'].shape} but 'observations' "
            f"has {handle['observations'].shape}; rebuild the file"
        )
    if not n:
        raise DatasetFormatError(f"{path}: the dataset is empty (0 transitions)")
    return int(n)


def read_metadata(handle: h5py.File) -> dict[str, Any]:
    """The JSON metadata saferl stored in the file's root attribute.

    Empty for files of other writers, and for an attribute that does not hold a JSON object: the
    metadata is informative only, so a damaged one does not stop the data from loading.
    """
    raw = handle.attrs.get(METADATA_ATTR)
    if raw is None:
        return {}
    try:
        return dict(json.loads(raw))
    except (TypeError, ValueError):
        return {}


# ---------------------------------------------------------------------------------------------- reading
def read_float32(column: h5py.Dataset) -> np.ndarray:
    """Read a numeric column into a new float32 array of the column's shape.

    The result is allocated once at its final size and filled in place (no float64 or full-size
    intermediate copy): by parallel chunk inflation where the layout allows (see
    :func:`_read_gzip_chunks`), else by HDF5's own type conversion through ``read_direct``.
    """
    out = np.empty(column.shape, dtype=np.float32)
    if column.size and not _read_gzip_chunks(column, out):
        column.read_direct(out)
    return out


def read_vector(column: h5py.Dataset) -> np.ndarray:
    """Read an ``(N,)`` or ``(N, 1)`` numeric column as a float32 ``(N,)`` array."""
    return read_float32(column).reshape(column.shape[0])


def read_flags(column: h5py.Dataset, path: Path) -> np.ndarray:
    """Read a 0/1 column (bool, int or float) as a bool ``(N,)`` array; other values are an error."""
    values = column[()].reshape(column.shape[0])
    if values.dtype != np.bool_:
        bad = ~np.isin(values, (0, 1))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DatasetFormatError(
                f"{path}: '{column.name.lstrip('/')}' must hold only 0/1 flags but row {row} is {values[row]!r}; "
                "the column is not a done flag: rebuild the file"
            )
    return values.astype(bool, copy=False)


def _inflate_filters(column: h5py.Dataset) -> tuple[int, int] | None:
    """Filter-mask bits ``(shuffle_bit, deflate_bit)`` if the pipeline is only [shuffle,] deflate, else ``None``.

    Bit ``i`` of a chunk's filter mask is set when pipeline filter ``i`` was skipped for that chunk;
    ``shuffle_bit`` is 0 when the pipeline has no shuffle filter.
    """
    plist = column.id.get_create_plist()
    codes = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if codes == [_DEFLATE]:
        return 0, 0b1
    if codes == [_SHUFFLE, _DEFLATE]:
        return 0b01, 0b10
    return None


def _read_gzip_chunks(column: h5py.Dataset, out: np.ndarray) -> bool:
    """Fill ``out`` by inflating the column's gzip chunks in threads; ``False`` if the layout does not fit.

    Fits: chunked little-endian float32/float64 data, chunks spanning whole rows, every chunk written,
    filters exactly deflate or shuffle + deflate. Each chunk is stored at full chunk size (HDF5 pads
    the last one), inflated with ``zlib`` (which releases the GIL), un-shuffled (the shuffle filter
    stores byte ``b`` of every element together, as plane ``b``: plane ``b`` is copied back into byte
    ``b`` of each element) and its valid rows copied into ``out``. A chunk that does not
    inflate raises ``OSError``, which :func:`open_hdf5` reports as a corrupt file.
    """
    chunks = column.chunks
    dtype = column.dtype
    if chunks is None or tuple(chunks[1:]) != tuple(column.shape[1:]) or dtype.byteorder == ">":
        return False
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        return False
    filter_bits = _inflate_filters(column)
    if filter_bits is None:
        return False
    shuffle_bit, deflate_bit = filter_bits
    rows_per_chunk = chunks[0]
    n_rows = column.shape[0]
    n_chunks = math.ceil(n_rows / rows_per_chunk)
    if column.id.get_num_chunks() != n_chunks:
        return False
    row_elements = int(np.prod(column.shape[1:], dtype=np.int64))
    chunk_elements = rows_per_chunk * row_elements
    chunk_bytes = chunk_elements * dtype.itemsize
    flat_out = out.reshape(n_rows, row_elements)

    def inflate(chunk_index: int) -> None:
        start = chunk_index * rows_per_chunk
        stop = min(start + rows_per_chunk, n_rows)
        mask, raw = column.id.read_direct_chunk((start,) + (0,) * (column.ndim - 1))
        try:
            if not mask & deflate_bit:
                raw = zlib.decompress(raw, bufsize=chunk_bytes)  # one output allocation, no regrowth
            stored = np.frombuffer(raw, dtype=np.uint8).reshape(chunk_elements, dtype.itemsize)
        except (zlib.error, ValueError) as exc:
            raise OSError(f"the chunk of '{column.name}' at row {start} does not inflate ({exc})") from exc
        valid = (stop - start) * row_elements
        if shuffle_bit and not mask & shuffle_bit:
            planes = stored.reshape(dtype.itemsize, chunk_elements)
            direct = dtype == out.dtype
            target = flat_out[start:stop] if direct else np.empty((stop - start, row_elements), dtype)
            target_bytes = target.reshape(valid).view(np.uint8).reshape(valid, dtype.itemsize)
            for byte in range(dtype.itemsize):  # one strided copy per byte plane: faster than a transpose
                target_bytes[:, byte] = planes[byte, :valid]
            if not direct:
                flat_out[start:stop] = target
        else:
            flat_out[start:stop] = stored[:valid].view(dtype).reshape(stop - start, row_elements)

    with ThreadPoolExecutor(max_workers=read_thread_count()) as pool:
        list(pool.map(inflate, range(n_chunks)))
    return True


def read_thread_count() -> int:
    """CPUs this process may run on (not the machine's total), at most :data:`MAX_READ_THREADS`."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        available = os.cpu_count() or 1
    return max(1, min(available, MAX_READ_THREADS))


# ---------------------------------------------------------------------------------------------- writing
@contextlib.contextmanager
def atomic_output(dest: Path) -> Iterator[Path]:
    """Yield a fresh temporary path in ``dest``'s folder; on success fsync it and move it onto ``dest``.

    The caller creates the file (with the usual permissions, as for ``dest`` itself). On any
    exception (``KeyboardInterrupt`` included) the temporary file is removed and ``dest`` is left as
    it was: a reader never sees a partial file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.part"
    try:
        yield temp
        with open(temp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temp, dest)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_columns(dest: Path, columns: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> None:
    """Write ``columns`` as gzip-compressed, shuffled, chunked datasets into ``dest``, atomically.

    Chunks hold whole rows, about :data:`CHUNK_BYTES` each. ``metadata`` goes into the root
    attribute :data:`METADATA_ATTR` as JSON (it must be JSON-serialisable).
    """
    try:
        metadata_json = json.dumps(dict(metadata))
    except (TypeError, ValueError) as exc:
        raise DatasetFormatError(
            f"cannot write {dest}: the dataset metadata is not JSON-serialisable ({exc}); "
            "keep only plain numbers, strings, lists and dicts in TransitionDataset.metadata"
        ) from exc
    with atomic_output(dest) as temp:
        with h5py.File(temp, "x") as handle:
            for key, values in columns.items():
                row_bytes = max(1, values.nbytes // max(1, values.shape[0]))
                rows = int(min(values.shape[0], max(1, CHUNK_BYTES // row_bytes)))
                handle.create_dataset(
                    key, data=values, chunks=(rows, *values.shape[1:]), compression="gzip",
                    compression_opts=GZIP_LEVEL, shuffle=True,
                )
            handle.attrs[METADATA_ATTR] = metadata_json


__all__ = [
    "DSRL_KEYS",
    "D4RL_KEYS",
    "HDF5Format",
    "atomic_output",
    "check_columns",
    "detect_format",
    "open_hdf5",
    "read_flags",
    "read_float32",
    "read_metadata",
    "read_thread_count",
    "read_vector",
    "require_keys",
    "write_columns",
]
