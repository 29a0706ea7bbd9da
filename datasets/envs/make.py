"""Build any registered task's environment behind one interface.

:func:`make_env` returns a gymnasium environment with 5-tuple steps, the step cost as a Python float in
``info["cost"]`` and a time limit of the task's ``episode_len``, whichever simulator runs the task:

* ``bullet``: Bullet-Safety-Gym 1.4.0 (already on gymnasium's 5-tuple API; its integer cost becomes a
  float). It draws its randomness from numpy's and Python's *global* generators and ignores
  ``reset(seed=...)``; each environment here gets its own copy of those generators, seeded by ``reset`` and
  swapped in around construction and ``reset``, so a seed fixes the episode and the caller's global random
  state is left untouched (construction starts the generators from seed 0, which an unseeded first
  ``reset`` continues). Steps run without the swap (it costs about as much as a step): the registered
  Run and Circle tasks draw random numbers only when they reset.
* ``safety_gymnasium``: Safety-Gymnasium 0.4.0 (imported with :mod:`.safety_gymnasium_compat`); its
  6-tuple ``(obs, reward, cost, terminated, truncated, info)`` becomes the 5-tuple.
* ``mujoco``: gymnasium's MuJoCo v4 environments (D4RL tasks), cost 0.0.
* ``builtin``: the point robot (:mod:`.point_robot`), which needs no simulator package.
* ``toy_dosing``: saferl's toy dosing simulator (:mod:`.toy_dosing`), numpy only (synthetic, not clinical).

MetaDrive tasks (and any task with an ``unavailable_reason``) raise :class:`TaskUnavailableError`; a
missing simulator package raises :class:`SimulatorMissingError` naming the pip command that installs it.
"""

from __future__ import annotations

import importlib
import importlib.util
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from ..errors import SimulatorMissingError, TaskUnavailableError
from ..registry import TaskSpec, get_task
from .base import VectorSafetyEnv
from .safety_gymnasium_compat import import_safety_gymnasium
from .vector import SyncVectorSafetyEnv

# Modules each simulator needs at run time, and the name users know it by.
_SIMULATOR_MODULES: dict[str, tuple[str, ...]] = {
    "bullet": ("bullet_safety_gym", "pybullet"),
    "safety_gymnasium": ("safety_gymnasium", "mujoco", "xmltodict", "imageio"),
    "mujoco": ("mujoco",),
    "builtin": (),
    "toy_dosing": (),
    "metadrive": (),
}
_SIMULATOR_NAMES = {
    "bullet": "Bullet-Safety-Gym",
    "safety_gymnasium": "Safety-Gymnasium",
    "mujoco": "MuJoCo",
}
# Simulators saferl writes itself, stepped as one numpy batch: simulator -> (module, single env, batched env).
NUMPY_BATCHED: dict[str, tuple[str, str, str]] = {
    "builtin": ("point_robot", "PointRobotEnv", "PointRobotVectorEnv"),
    "toy_dosing": ("toy_dosing", "ToyDosingEnv", "ToyDosingVectorEnv"),
}
"""Simulators whose whole batch steps in one numpy call: evaluation runs all its episodes at once on them."""


def _numpy_batched_class(simulator: str, batched: bool) -> type:
    """The single or batched environment class of a :data:`NUMPY_BATCHED` simulator (imported on demand)."""
    import importlib

    module, single, vector = NUMPY_BATCHED[simulator]
    return getattr(importlib.import_module(f".{module}", __package__), vector if batched else single)


# The pip command that installs each optional simulator (shown by errors and by `saferl data list`).
INSTALL_COMMANDS: dict[str, str] = {
    "bullet": 'pip install "saferl[bullet]"',
    "safety_gymnasium": 'pip install "saferl[safety-gymnasium]" && pip install --no-deps safety-gymnasium==0.4.0',
    "mujoco": 'pip install "saferl[mujoco]"',
}


def simulator_available(simulator: str) -> bool:
    """Whether ``simulator``'s packages are installed (found on the path, not imported: no side effects).

    ``"builtin"`` and ``"toy_dosing"`` are always available; ``"metadrive"`` never is (see the registry's
    ``METADRIVE_REASON``).
    """
    if simulator not in _SIMULATOR_MODULES:
        raise ValueError(f"unknown simulator '{simulator}'; known simulators: {', '.join(_SIMULATOR_MODULES)}")
    if simulator == "metadrive":
        return False
    return all(importlib.util.find_spec(module) is not None for module in _SIMULATOR_MODULES[simulator])


def _missing_simulator(spec: TaskSpec, error: ImportError) -> SimulatorMissingError:
    name = _SIMULATOR_NAMES[spec.simulator]
    return SimulatorMissingError(
        f"task '{spec.name}' runs on {name}, which is not installed ({error}); "
        f"install it with: {INSTALL_COMMANDS[spec.simulator]}"
    )


class _GlobalRandomState:
    """Private copies of numpy's and Python's global random generators, made current by :meth:`active`."""

    def __init__(self, seed: int | None) -> None:
        self._numpy_state = np.random.RandomState(seed).get_state()
        self._python_state = random.Random(seed).getstate()

    @contextmanager
    def active(self) -> Iterator[None]:
        """Within the block the global generators continue this copy's stream; outside, the caller's."""
        outer_numpy, outer_python = np.random.get_state(), random.getstate()
        np.random.set_state(self._numpy_state)
        random.setstate(self._python_state)
        try:
            yield
        finally:
            self._numpy_state, self._python_state = np.random.get_state(), random.getstate()
            np.random.set_state(outer_numpy)
            random.setstate(outer_python)


class _SeededGlobalRandomness(gym.Wrapper):
    """Give a simulator that draws from the global generators at reset its own generators, seeded by ``reset``."""

    def __init__(self, env: gym.Env, rng: _GlobalRandomState) -> None:
        super().__init__(env)
        self._rng = rng

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Reset; a ``seed`` restarts this environment's generators from it."""
        if seed is not None:
            self._rng = _GlobalRandomState(seed)
        with self._rng.active():
            return self.env.reset(seed=seed, options=options)


_CostSource = Literal["info", "six_tuple", "none"]


class _StepCostInInfo(gym.Wrapper):
    """5-tuple steps with a float reward and a float ``info["cost"]``, whatever the simulator returns.

    ``cost_source``: ``"info"`` (the simulator already puts a number in ``info["cost"]``), ``"six_tuple"``
    (Safety-Gymnasium's ``(obs, reward, cost, terminated, truncated, info)``) or ``"none"`` (no cost
    signal: cost 0.0).
    """

    def __init__(self, env: gym.Env, cost_source: _CostSource) -> None:
        super().__init__(env)
        self._cost_source = cost_source

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        """One step; ``info["cost"]`` is a float."""
        # np.asarray: Safety-Gymnasium calls np.array(action, copy=False), which numpy 2 refuses for lists.
        result = self.env.step(np.asarray(action))
        if self._cost_source == "six_tuple":
            obs, reward, cost, terminated, truncated, info = result
        else:
            obs, reward, terminated, truncated, info = result
            cost = info["cost"] if self._cost_source == "info" else 0.0
        info = dict(info, cost=float(cost))
        return obs, float(reward), bool(terminated), bool(truncated), info


@contextmanager
def _process_std_streams() -> Iterator[None]:
    """Within the block ``sys.stdout``/``sys.stderr`` are the process's own streams (when they exist).

    Bullet-Safety-Gym silences pybullet (at import and when it builds a world) by flushing the C stream
    named after ``sys.stdout.name``/``sys.stderr.name``; when those have been replaced (pytest's capture,
    notebooks, log redirection) the name is no C symbol and it fails with a ValueError.
    """
    replaced = sys.stdout, sys.stderr
    sys.stdout = sys.__stdout__ or replaced[0]
    sys.stderr = sys.__stderr__ or replaced[1]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = replaced


def _make_bullet(spec: TaskSpec, **kwargs: Any) -> gym.Env:
    # Construction may draw from the global generators too (obstacle layouts): seed 0 makes it repeatable.
    rng = _GlobalRandomState(0)
    with _process_std_streams():
        try:
            importlib.import_module("bullet_safety_gym")
        except ImportError as error:
            raise _missing_simulator(spec, error) from error
        with rng.active():
            env = gym.make(spec.env_id, max_episode_steps=spec.episode_len, **kwargs)
    return _StepCostInInfo(_SeededGlobalRandomness(env, rng), "info")


def _make_safety_gymnasium(spec: TaskSpec, **kwargs: Any) -> gym.Env:
    try:
        safety_gymnasium = import_safety_gymnasium()
    except ImportError as error:
        raise _missing_simulator(spec, error) from error
    env = safety_gymnasium.make(spec.env_id, max_episode_steps=spec.episode_len, **kwargs)
    return _StepCostInInfo(env, "six_tuple")


def _make_mujoco(spec: TaskSpec, **kwargs: Any) -> gym.Env:
    try:
        importlib.import_module("mujoco")
    except ImportError as error:
        raise _missing_simulator(spec, error) from error
    env = gym.make(spec.env_id, max_episode_steps=spec.episode_len, **kwargs)
    return _StepCostInInfo(env, "none")


def _resolve(task: str | TaskSpec) -> TaskSpec:
    spec = get_task(task) if isinstance(task, str) else task
    if spec.unavailable_reason is not None:
        raise TaskUnavailableError(f"task '{spec.name}' cannot run here: {spec.unavailable_reason}")
    return spec


def make_env(task: str | TaskSpec, **kwargs: Any) -> gym.Env:
    """The environment of ``task`` (a registry name/id or a :class:`TaskSpec`), see the module docstring.

    ``kwargs`` go to the simulator's constructor (for example ``render_mode="rgb_array"``; for the
    built-in task, ``params=PointRobotParams(...)``; for the toy dosing task, ``params=ToyDosingParams(...)``).
    """
    spec = _resolve(task)
    if spec.simulator == "bullet":
        return _make_bullet(spec, **kwargs)
    if spec.simulator == "safety_gymnasium":
        return _make_safety_gymnasium(spec, **kwargs)
    if spec.simulator == "mujoco":
        return _make_mujoco(spec, **kwargs)
    if spec.simulator in NUMPY_BATCHED:
        return _numpy_batched_class(spec.simulator, batched=False)(**kwargs)
    raise TaskUnavailableError(f"task '{spec.name}' uses simulator '{spec.simulator}', which make_env cannot build")


def make_vector_env(task: str | TaskSpec, num_envs: int, **kwargs: Any) -> VectorSafetyEnv:
    """``num_envs`` environments of ``task`` behind :class:`VectorSafetyEnv` (``kwargs`` as in :func:`make_env`).

    The built-in task and the toy dosing task step as one numpy batch (``PointRobotVectorEnv``,
    ``ToyDosingVectorEnv``); simulators step one environment after another in this process
    (:class:`SyncVectorSafetyEnv`).
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    spec = _resolve(task)
    if spec.simulator in NUMPY_BATCHED:
        return _numpy_batched_class(spec.simulator, batched=True)(num_envs, **kwargs)
    envs: list[gym.Env] = []
    try:
        for _ in range(num_envs):
            envs.append(make_env(spec, **kwargs))
    except BaseException:
        for env in envs:
            env.close()
        raise
    return SyncVectorSafetyEnv(envs)


__all__ = ["make_env", "make_vector_env", "simulator_available", "INSTALL_COMMANDS", "NUMPY_BATCHED"]
