"""saferl: safe offline reinforcement learning.

Layers (each imports only those before it): ``saferl.datasets`` (tasks, formats, environments) ->
the core (``saferl.constraints``, ``saferl.networks``, ``saferl.algorithm``) -> ``saferl.algorithms`` ->
the app (``saferl.config``, ``saferl.trainer``, ``saferl.evaluation``, ``saferl.report``, ``saferl.cli``,
``saferl.api``). ``Agent`` is loaded lazily so that importing the core stays light.
"""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Agent":
        from saferl.api import Agent

        return Agent
    raise AttributeError(f"module 'saferl' has no attribute {name!r}")


__all__ = ["Agent", "__version__"]
