"""Train a task's behaviour agents (every run of its recipe) and save their snapshots in one file."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

import torch

from ..registry import TaskSpec, get_task
from .build import behaviour_policy_path, package_versions
from .ppo_lagrangian import IterationLog, PPOLagrangian
from .recipes import Recipe, get_recipe
from .snapshots import PolicySnapshot, save_snapshots


def _train_one_run(
    spec: TaskSpec,
    recipe: Recipe,
    index: int,
    log: Callable[[str, IterationLog], None] | None,
) -> tuple[list[PolicySnapshot], dict[str, Any]]:
    """Train run ``index`` of ``recipe`` with one torch thread; its snapshots and its metadata entry."""
    torch.set_num_threads(1)
    run = recipe.runs[index]
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
    last = learner.history[-1]
    return run_snapshots, {
        **run.to_dict(), "config": config.to_dict(), "seconds": round(seconds, 1),
        "final_episode_return": last.episode_return, "final_episode_cost": last.episode_cost,
        "final_multiplier": last.multiplier,
    }


def print_iteration(task: str, run: str, entry: IterationLog, every: int = 20) -> None:
    """Print one line of a behaviour run's progress every ``every`` iterations (the scripts' and workers' log)."""
    if entry.iteration % every == 0:
        print(f"{task} {run:>8} {entry.line()}", flush=True)


def _train_one_run_in_worker(task: str, recipe: Recipe, index: int) -> tuple[list[PolicySnapshot], dict[str, Any]]:
    """:func:`_train_one_run` in a worker process (callbacks do not cross processes: the worker prints)."""
    spec = get_task(task)
    return _train_one_run(spec, recipe, index, lambda run, entry: print_iteration(spec.name, run, entry))


def train_behaviour_policies(
    task: str | TaskSpec,
    *,
    recipe: Recipe | None = None,
    output: str | os.PathLike[str] | None = None,
    log: Callable[[str, IterationLog], None] | None = None,
    jobs: int = 1,
) -> Path:
    """Run every :class:`~saferl.datasets.builders.recipes.TrainingRun` of the recipe, save all snapshots.

    Snapshots keep their run's name in ``stats["run"]``; the file's metadata records the task, the recipe,
    the learner configs, the training time of each run and in total, and the package versions. ``log`` is
    called after every iteration with the run's name and its :class:`IterationLog`. Each run trains with one
    torch thread. ``jobs > 1`` trains up to that many runs at once in worker processes (spawned, one core
    each); every run is seeded by itself, so the snapshots are the same as with ``jobs=1`` and are saved in
    the recipe's order. Workers print their own progress (every 20th iteration) instead of calling ``log``.
    """
    spec = get_task(task) if isinstance(task, str) else task
    recipe = recipe or get_recipe(spec)
    output = Path(output) if output is not None else behaviour_policy_path(spec)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    torch.set_num_threads(1)
    snapshots: list[PolicySnapshot] = []
    runs = []
    started_all = time.perf_counter()
    if jobs == 1 or len(recipe.runs) == 1:
        results = [_train_one_run(spec, recipe, index, log) for index in range(len(recipe.runs))]
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(recipe.runs)), mp_context=context) as pool:
            futures = [pool.submit(_train_one_run_in_worker, spec.name, recipe, index)
                       for index in range(len(recipe.runs))]
            results = [future.result() for future in futures]
    for run_snapshots, run_meta in results:
        snapshots.extend(run_snapshots)
        runs.append(run_meta)
    metadata = {
        "task": spec.name,
        "learner": "PPO-Lagrangian (saferl.datasets.builders.ppo_lagrangian)",
        "runs": runs,
        "training_seconds": round(time.perf_counter() - started_all, 1),
        "packages": package_versions(),
    }
    return save_snapshots(output, snapshots, metadata)


__all__ = ["print_iteration", "train_behaviour_policies"]
