"""Dataset caches and a careful downloader.

Caches: DSRL files (and the built-in tasks' files) in ``$DSRL_DATASET_DIR`` (default
``~/.dsrl/datasets``), D4RL files in ``$D4RL_DATASET_DIR`` (default ``~/.d4rl/datasets``), under each
task's registered file name: the same places and names DSRL and d4rl use, so their caches are shared.

:func:`download` does what DSRL's downloader does not: a timeout and retries, an integrity check
(the file opens as HDF5 with the format's keys, optionally a SHA-256), and an atomic rename, so a
cache never holds a partial file. Offline it raises :class:`DatasetNotFoundError` saying which file
to fetch from where by hand, and which folder to put it in.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from .errors import DatasetFormatError, DatasetNotFoundError
from .formats.hdf5_common import D4RL_KEYS, DSRL_KEYS, atomic_output, open_hdf5, require_keys
from .registry import TaskSpec, get_task

DSRL_DIR_ENV = "DSRL_DATASET_DIR"
D4RL_DIR_ENV = "D4RL_DATASET_DIR"
_BLOCK_BYTES = 1 << 20
RETRY_DELAY_S = 2.0
"""Seconds before the first retry of a download (the n-th retry waits n times as long)."""


def dsrl_cache_dir() -> Path:
    """Folder of DSRL (and built-in) dataset files: ``$DSRL_DATASET_DIR`` or ``~/.dsrl/datasets``."""
    return Path(os.environ.get(DSRL_DIR_ENV) or "~/.dsrl/datasets").expanduser()


def d4rl_cache_dir() -> Path:
    """Folder of D4RL dataset files: ``$D4RL_DATASET_DIR`` or ``~/.d4rl/datasets``."""
    return Path(os.environ.get(D4RL_DIR_ENV) or "~/.d4rl/datasets").expanduser()


def _spec(task: TaskSpec | str) -> TaskSpec:
    return task if isinstance(task, TaskSpec) else get_task(task)


def cache_env_var(task: TaskSpec | str) -> str:
    """The environment variable that moves ``task``'s cache folder."""
    return D4RL_DIR_ENV if _spec(task).format == "d4rl" else DSRL_DIR_ENV


def dataset_path(task: TaskSpec | str) -> Path:
    """Where ``task``'s dataset file lives in its cache (whether or not it is there)."""
    spec = _spec(task)
    folder = d4rl_cache_dir() if spec.format == "d4rl" else dsrl_cache_dir()
    return folder / spec.file_name


def is_cached(task: TaskSpec | str) -> bool:
    """Whether ``task``'s dataset file is in its cache."""
    return dataset_path(task).is_file()


def _format_keys(task: TaskSpec | str) -> tuple[str, ...]:
    """HDF5 keys every file of ``task``'s format must hold."""
    return D4RL_KEYS if _spec(task).format == "d4rl" else DSRL_KEYS


def download_task(task: TaskSpec | str, *, timeout_s: float = 60.0, retries: int = 2) -> Path:
    """Download ``task``'s dataset into its cache (see :func:`download`) and return the path."""
    spec = _spec(task)
    dest = dataset_path(spec)
    if spec.url is None:
        raise DatasetNotFoundError(
            f"task '{spec.name}' has no download URL and {dest} does not exist; build its dataset first"
        )
    return download(
        spec.url, dest, required_keys=_format_keys(spec), timeout_s=timeout_s, retries=retries,
        env_var=cache_env_var(spec),
    )


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    required_keys: Sequence[str] = DSRL_KEYS,
    sha256: str | None = None,
    timeout_s: float = 60.0,
    retries: int = 2,
    retry_delay_s: float | None = None,
    env_var: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` safely; return ``dest``.

    The body goes to a temporary file in ``dest``'s folder; a connection error, a time-out
    (``timeout_s`` per socket operation), a server error (5xx) or a body shorter than announced is
    retried ``retries`` more times, ``retry_delay_s * attempt`` seconds apart (default
    :data:`RETRY_DELAY_S`). The file must then open as HDF5 with ``required_keys`` (and match
    ``sha256`` if given) before it is renamed onto ``dest``. Nothing is left behind on failure.

    Raises :class:`DatasetNotFoundError` when the file cannot be fetched (offline, unknown host,
    HTTP error): the message names the URL, the file and the folder to put it in by hand (and
    ``env_var``, the variable that moves that folder). Raises :class:`DatasetFormatError` when what
    arrived is not a valid dataset.
    """
    dest = Path(dest)
    delay_s = RETRY_DELAY_S if retry_delay_s is None else retry_delay_s
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(delay_s * attempt)
        try:
            with atomic_output(dest) as temp:
                digest = _fetch(url, temp, timeout_s, dest.name)
                _check_download(temp, url, dest, required_keys, sha256, digest)
            return dest
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code} {exc.reason}"
            if exc.code < 500:
                break
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError) as exc:
            last_error = str(getattr(exc, "reason", exc)) or type(exc).__name__
    where = f"{dest.parent}" + (f" (or the folder named by ${env_var})" if env_var else "")
    raise DatasetNotFoundError(
        f"could not download {dest.name} from {url}: {last_error}. To install it by hand, fetch that URL on a "
        f"machine with network access and put the file at {dest}, i.e. in {where}"
    )


def _fetch(url: str, temp: Path, timeout_s: float, label: str) -> str:
    """Stream ``url`` into ``temp``; return the body's SHA-256. A short body raises ``IncompleteRead``."""
    digest = hashlib.sha256()
    received = 0
    with urllib.request.urlopen(url, timeout=timeout_s) as response, open(temp, "xb") as out:
        announced = response.headers.get("Content-Length")
        total = int(announced) if announced is not None else None
        with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=None, leave=False) as progress:
            while block := response.read(_BLOCK_BYTES):
                out.write(block)
                digest.update(block)
                received += len(block)
                progress.update(len(block))
    if total is not None and received != total:
        raise http.client.IncompleteRead(b"", total - received)
    return digest.hexdigest()


def _check_download(
    temp: Path, url: str, dest: Path, keys: Sequence[str], sha256: str | None, digest: str
) -> None:
    """Raise :class:`DatasetFormatError` unless the downloaded file is an HDF5 dataset with ``keys``."""
    if sha256 is not None and digest.lower() != sha256.lower():
        raise DatasetFormatError(
            f"the download of {dest.name} from {url} has SHA-256 {digest}, expected {sha256}; "
            "the server sent another file or it was corrupted: try again later"
        )
    fix = f"the server did not send a dataset file; nothing was saved to {dest}"
    with open_hdf5(temp, fix, shown_as=url) as handle:
        require_keys(handle, keys, url, "dataset")


__all__ = [
    "dsrl_cache_dir",
    "d4rl_cache_dir",
    "cache_env_var",
    "dataset_path",
    "is_cached",
    "download",
    "download_task",
]
