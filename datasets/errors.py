"""Errors raised by the dataset layer.

Every error says what is wrong and what to do about it, in one message, so that the CLI can print it
as a single line instead of a traceback.
"""

from __future__ import annotations


class SaferlDataError(Exception):
    """Base class of every error the dataset layer raises on purpose."""


class DatasetFormatError(SaferlDataError):
    """A dataset file or array set is malformed: missing key, wrong shape, NaN, truncated file, ..."""


class DatasetNotFoundError(SaferlDataError):
    """A dataset is neither cached nor downloadable (for example offline)."""


class UnknownTaskError(SaferlDataError, KeyError):
    """A task id that the registry does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TaskUnavailableError(SaferlDataError):
    """A registered task whose simulator cannot run on this installation (for example MetaDrive)."""


class SimulatorMissingError(SaferlDataError, ImportError):
    """An optional simulator package is not installed; the message names the pip command."""
