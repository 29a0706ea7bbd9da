"""Environments of every task: :func:`make_env` (one gymnasium env, cost in ``info["cost"]``) and
:func:`make_vector_env` (a :class:`VectorSafetyEnv`), over Bullet-Safety-Gym, Safety-Gymnasium, MuJoCo and
the built-in point robot.

``PointRobotEnv`` and ``PointRobotVectorEnv`` are re-exported lazily (on first access), so that importing
this package never imports more than it needs.
"""

from __future__ import annotations

from typing import Any

from .base import VectorSafetyEnv, VectorStep
from .make import INSTALL_COMMANDS, make_env, make_vector_env, simulator_available
from .vector import SyncVectorSafetyEnv

_LAZY_POINT_ROBOT = ("PointRobotEnv", "PointRobotVectorEnv")


def __getattr__(name: str) -> Any:
    """Load the point robot's classes on first access."""
    if name in _LAZY_POINT_ROBOT:
        from . import point_robot

        return getattr(point_robot, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "make_env",
    "make_vector_env",
    "simulator_available",
    "INSTALL_COMMANDS",
    "SyncVectorSafetyEnv",
    "VectorSafetyEnv",
    "VectorStep",
    "PointRobotEnv",
    "PointRobotVectorEnv",
]
