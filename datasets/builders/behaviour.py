"""Train a task's behaviour agents (every run of its recipe) and save their snapshots in one file."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import torch

from ..registry import TaskSpec, get_task
from .build import behaviour_policy_path, package_versions
from .ppo_lagrangian import IterationLog, PPOLagrangian
from .recipes import Recipe, get_recipe
from .snapshots import PolicySnapshot, save_snapshots


def train_behaviour_policies(
    task: str | TaskSpec,
    *,
    recipe: Recipe | None = None,
    output: str | os.PathLike[str] | None = None,
    log: Callable[[str, IterationLog], None] | None = None,
) -> Path:
    """Run every :class:`~saferl.datasets.builders.recipes.TrainingRun` of the recipe, save all snapshots.

    Snapshots keep their run's name in ``stats["run"]``; the file's metadata records the task, the recipe,
    the learner configs, the training time of each run and in total, and the package versions. ``log`` is
    called after every iteration with the run's name and its :class:`IterationLog`. Runs with one torch
    thread (set here: the machine's cores are shared).
    """
    spec = get_task(task) if isinstance(task, str) else task
    recipe = recipe or get_recipe(spec)
    output = Path(output) if output is not None else behaviour_policy_path(spec)
    torch.set_num_threads(1)
    snapshots: list[PolicySnapshot] = []
    runs = []
    started_all = time.perf_counter()
    for run in recipe.runs:
        config = recipe.ppo_config(run)
        learner = PPOLagrangian(spec, config)
        started = time.perf_counter()
        try:
            run_snapshots = learner.train(None if log is None else (lambda entry, name=run.name: log(name, entry)))
        finally:
            learner.close()
        seconds = time.perf_counter() - started
        for snapshot in run_snapshots:
            snapshot.stats["run"] = run.name
        snapshots.extend(run_snapshots)
        last = learner.history[-1]
        runs.append({
            **run.to_dict(), "config": config.to_dict(), "seconds": round(seconds, 1),
            "final_episode_return": last.episode_return, "final_episode_cost": last.episode_cost,
            "final_multiplier": last.multiplier,
        })
    metadata = {
        "task": spec.name,
        "learner": "PPO-Lagrangian (saferl.datasets.builders.ppo_lagrangian)",
        "runs": runs,
        "training_seconds": round(time.perf_counter() - started_all, 1),
        "packages": package_versions(),
    }
    return save_snapshots(output, snapshots, metadata)


__all__ = ["train_behaviour_policies"]
