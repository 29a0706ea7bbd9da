"""Text for ``saferl data list|info|build``: what the dataset layer can tell a user about tasks and files."""

from __future__ import annotations

from pathlib import Path

from .envs import simulator_available
from .download import dataset_path, is_cached
from .loading import load_dataset
from .registry import TASKS, get_task
from .types import TransitionDataset

INFO_COST_LIMITS = (10.0, 20.0, 40.0)


def data_list() -> str:
    """One line per task id: simulator, availability, cached or not."""
    lines = [f"{'task':<24} {'dataset id':<42} {'simulator':<17} {'environment':<13} {'dataset'}"]
    for task in TASKS.values():
        if not task.available:
            env_state = "unavailable"
        else:
            env_state = "installed" if simulator_available(task.simulator) else "not installed"
        if task.format == "builtin":
            data_state = "cached" if is_cached(task) else "built on first use"
        else:
            data_state = "cached" if is_cached(task) else "not cached"
        lines.append(f"{task.name:<24} {task.dataset_id:<42} {task.simulator:<17} {env_state:<13} {data_state}")
    return "\n".join(lines)


def describe_dataset(dataset: TransitionDataset, cost_limits: tuple[float, ...] = INFO_COST_LIMITS) -> str:
    """Transitions, trajectories, return and cost ranges, safe fraction at each cost limit."""
    returns, costs = dataset.trajectory_returns(), dataset.trajectory_cost_returns()
    lengths = dataset.trajectory_lengths()
    lines = [
        f"source:        {dataset.metadata.get('source', '?')}",
        f"transitions:   {len(dataset)}  (obs {dataset.obs_dim}, act {dataset.act_dim})",
        f"trajectories:  {dataset.num_trajectories}  (length {lengths.min()}-{lengths.max()}, "
        f"terminals {int(dataset.terminals.sum())}, timeouts {int(dataset.timeouts.sum())})",
        f"return:        min {returns.min():.3f}  mean {returns.mean():.3f}  max {returns.max():.3f}",
        f"cost return:   min {costs.min():.3f}  mean {costs.mean():.3f}  max {costs.max():.3f}",
    ]
    for kappa in cost_limits:
        safe = costs <= kappa
        best = f", best safe return {returns[safe].max():.3f}" if safe.any() else ""
        lines.append(f"safe at {kappa:>4g}:   {safe.mean():.1%} of trajectories{best}")
    return "\n".join(lines)


def data_info(target: str) -> str:
    """Statistics of a task's dataset (loaded from the cache, downloaded or built) or of a file."""
    if Path(target).exists():
        dataset = load_dataset(target)
    else:
        dataset = load_dataset(get_task(target).name)
    return describe_dataset(dataset)


def data_build(task_name: str, seed: int = 0, force: bool = False) -> str:
    """Build a task's dataset into the cache and describe it.

    The built-in point robot comes from its scripted behaviours; a simulator task is rebuilt from its
    committed behaviour policies (:func:`saferl.datasets.builders.build_dataset`: resumable, deterministic
    by ``seed``, with a dataset card and a reward-cost scatter plot). An existing file is kept unless
    ``force``.
    """
    task = get_task(task_name)
    path = dataset_path(task)
    if task.format == "builtin":  # tasks saferl makes itself (point robot, toy dosing)
        from .point_robot_data import ensure_builtin_dataset

        if force and path.exists():
            path.unlink()
        path = ensure_builtin_dataset(task, seed=seed)
        return f"built {path}\n" + describe_dataset(load_dataset(path))
    from .builders import build_dataset

    result = build_dataset(task, seed=seed, force=force)
    if result.reused:
        head = f"{result.path} already exists (pass --force to rebuild it)"
    else:
        head = f"built {result.path}\ncard:   {result.card_path}\nfigure: {result.figure_path}"
    return head + "\n" + describe_dataset(load_dataset(result.path))


__all__ = ["data_list", "data_info", "data_build", "describe_dataset"]
