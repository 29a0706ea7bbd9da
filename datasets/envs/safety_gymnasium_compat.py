"""Import safety-gymnasium 0.4.0 on Python 3.11+.

safety-gymnasium's config dataclasses (``Apples``, ``Hazards``, ...) give numpy arrays as field defaults
(``color: np.array = COLOR['apple']``). Since Python 3.11, :mod:`dataclasses` rejects every unhashable
default at class creation ("mutable default <class 'numpy.ndarray'> for field color is not allowed"), so
``import safety_gymnasium`` fails before any environment can be built.

The fix: while (and only while) safety-gymnasium is being imported, :mod:`dataclasses` turns a numpy-array
default into ``field(default_factory=...)`` that hands each instance its own copy of the array. Field
values are the same as on Python 3.10; the one difference is that instances no longer share one array
object, which safety-gymnasium never relies on. The original ``dataclasses`` hook is restored as soon as
the import finishes, whether it succeeded or not, so no other dataclass is ever affected.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np

_PATCH_LOCK = threading.Lock()


def _array_factory(default: np.ndarray) -> Callable[[], np.ndarray]:
    """A ``default_factory`` that returns a fresh copy of ``default`` for every instance."""
    return default.copy


@contextmanager
def numpy_array_dataclass_defaults() -> Iterator[None]:
    """Within the block, dataclasses accept numpy arrays as field defaults (as copies per instance).

    Wraps the private ``dataclasses._get_field`` (stable from Python 3.8 to 3.13), which reads a field's
    default from the class body: an ``np.ndarray`` found there is replaced by a ``dataclasses.field`` with a
    copying ``default_factory`` before the usual processing (and its mutable-default check) runs.
    """
    original_get_field = dataclasses._get_field  # type: ignore[attr-defined]

    def get_field(cls: type, a_name: str, *args: Any, **kwargs: Any) -> dataclasses.Field:
        default = getattr(cls, a_name, dataclasses.MISSING)
        if isinstance(default, np.ndarray):
            setattr(cls, a_name, dataclasses.field(default_factory=_array_factory(default)))
        return original_get_field(cls, a_name, *args, **kwargs)

    with _PATCH_LOCK:
        dataclasses._get_field = get_field  # type: ignore[attr-defined]
        try:
            yield
        finally:
            dataclasses._get_field = original_get_field  # type: ignore[attr-defined]


def import_safety_gymnasium() -> ModuleType:
    """Import and return ``safety_gymnasium``, applying the Python 3.11 dataclass fix during the import.

    Raises ``ImportError`` (or ``ModuleNotFoundError``) when safety-gymnasium or one of its runtime
    dependencies is not installed; callers turn that into an install hint.
    """
    already_imported = sys.modules.get("safety_gymnasium")
    if already_imported is not None:
        return already_imported
    with numpy_array_dataclass_defaults():
        module = importlib.import_module("safety_gymnasium")
        # The package imports its world builder lazily, at the first `make`; import it here, under the fix.
        importlib.import_module("safety_gymnasium.builder")
    return module


__all__ = ["import_safety_gymnasium", "numpy_array_dataclass_defaults"]
