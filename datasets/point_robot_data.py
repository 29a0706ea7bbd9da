"""The built-in point-robot dataset: scripted behaviours from reckless to cautious, built in seconds.

``build_point_robot_dataset`` rolls every behaviour out at once as one numpy batch (no simulator, no
per-step Python over episodes) and returns a :class:`TransitionDataset`; ``ensure_builtin_dataset``
writes it once into the DSRL cache in DSRL's format, so it loads like any downloaded benchmark file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .envs.point_robot import BehaviourFamily, PointRobotParams, PointRobotVectorEnv, scripted_actions
from .registry import TaskSpec
from .scripted import scripted_rollouts
from .types import TransitionDataset


def build_point_robot_dataset(
    num_trajectories: int = 1000,
    seed: int = 0,
    params: PointRobotParams = PointRobotParams(),
    family: BehaviourFamily = BehaviourFamily(),
) -> TransitionDataset:
    """Roll out ``num_trajectories`` scripted behaviours (one each) and return their transitions.

    Deterministic by ``seed``: the behaviour parameters, start positions and action noise all come
    from one ``numpy.random.Generator(seed)``.
    """
    if num_trajectories < 1:
        raise ValueError(f"num_trajectories must be >= 1, got {num_trajectories}")
    rng = np.random.default_rng(seed)
    behaviour = family.sample(num_trajectories, rng)
    env = PointRobotVectorEnv(num_trajectories, params)
    return scripted_rollouts(
        env, lambda obs: scripted_actions(env.positions, behaviour, params, rng), num_trajectories,
        params.episode_len, rng,
        {"task": "PointRobot", "source": f"built-in point robot (seed {seed})", "format": "dsrl"},
    )


def ensure_builtin_dataset(task: TaskSpec, seed: int = 0) -> Path:
    """Build a task's DSRL-format file into the DSRL cache if it is missing; return its path.

    The tasks saferl builds itself: the point robot, and the toy dosing simulator (:mod:`.toy_dosing_data`).
    """
    from .download import dataset_path
    from .formats import write_dsrl

    if task.name == "PointRobot":
        build = build_point_robot_dataset
    elif task.name == "ToyDosing":
        from .toy_dosing_data import build_toy_dosing_dataset as build
    else:
        raise ValueError(f"'{task.name}' is not a built-in task")
    path = dataset_path(task)
    if not path.exists():
        write_dsrl(build(task.num_trajectories, seed=seed), path)
    return path


__all__ = ["build_point_robot_dataset", "ensure_builtin_dataset"]
