"""Reports of finished runs: reward-cost tables (markdown and CSV) and figures.

A run folder holds ``final_metrics.json`` (written by the trainer, or by ``saferl eval``). ``report``
gathers one row per (run, cost limit): raw and normalised reward and cost, violation rate, kappa, and
which checkpoint was evaluated (always the last one). Runs of the same algorithm and task with different
seeds are also aggregated (mean +- std over seeds).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from saferl.datasets.envs.point_robot import PointRobotParams, true_feasible_mask
from saferl.evaluation import EpisodeRecords

COLUMNS = [
    "run", "variant", "algorithm", "task", "seed", "checkpoint", "episodes", "cost_limit", "return", "cost",
    "normalized_reward", "normalized_cost", "violation_rate", "zero_cost_rate", "cost_cvar_10", "safe",
]


class ReportError(ValueError):
    """A run folder without the files a report needs."""


def _run_rows(run_dir: Path, metrics_file: str) -> list[dict[str, Any]]:
    path = run_dir / metrics_file
    if not path.is_file():
        raise ReportError(f"'{run_dir}' has no {metrics_file}: train it (saferl train) or evaluate it (saferl eval)")
    metrics = json.loads(path.read_text())
    config_path = run_dir / "config.yaml"
    algorithm, seed = "?", "?"
    if config_path.is_file():
        from omegaconf import OmegaConf

        config = OmegaConf.load(config_path)
        algorithm, seed = str(config.get("algorithm")), str(config.get("seed"))
    rows = []
    for limit in metrics["per_limit"]:
        rows.append(
            {
                "run": run_dir.name,
                "variant": re.sub(r"-seed\d+$", "", run_dir.name),
                "algorithm": algorithm,
                "task": metrics["task"],
                "seed": seed,
                "checkpoint": f"{metrics.get('checkpoint', '?')}@{metrics.get('checkpoint_step', '?')} ({metrics.get('selection', 'last')})",
                "episodes": metrics["episodes"],
                "cost_limit": limit["cost_limit"],
                "return": metrics["mean_return"],
                "cost": metrics["mean_cost"],
                "normalized_reward": metrics["normalized_reward"],
                "normalized_cost": limit["normalized_cost"],
                "violation_rate": limit["violation_rate"],
                "zero_cost_rate": metrics["zero_cost_rate"],
                "cost_cvar_10": metrics["cost_cvar_10"],
                "safe": limit["safe"],
            }
        )
    return rows


def collect(run_dirs: Sequence[str | Path], metrics_file: str = "final_metrics.json") -> list[dict[str, Any]]:
    """One row per (run, cost limit) from each run folder's metrics file."""
    rows: list[dict[str, Any]] = []
    for run_dir in run_dirs:
        rows += _run_rows(Path(run_dir), metrics_file)
    return rows


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds for each (variant, task, cost limit).

    A variant is a run folder's name without its ``-seedN`` suffix (e.g. ``fisor_reward_aware``).
    """
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["variant"], row["task"], row["cost_limit"]), []).append(row)
    out = []
    for (variant, task, limit), members in groups.items():
        entry: dict[str, Any] = {"variant": variant, "algorithm": members[0]["algorithm"], "task": task,
                                 "cost_limit": limit, "seeds": len(members)}
        for key in ("normalized_reward", "normalized_cost", "violation_rate", "return", "cost"):
            values = np.array([m[key] for m in members], dtype=float)
            entry[key] = float(values.mean())
            entry[f"{key}_std"] = float(values.std())
        entry["safe"] = entry["normalized_cost"] <= 1.0
        out.append(entry)
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def to_markdown(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A markdown table of ``rows``."""
    if not rows:
        return "(no rows)\n"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV text of ``rows``."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(columns or rows[0].keys()), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def aggregate_columns() -> list[str]:
    """Columns of the aggregated table."""
    return ["variant", "algorithm", "task", "cost_limit", "seeds", "normalized_reward", "normalized_reward_std",
            "normalized_cost", "normalized_cost_std", "violation_rate", "safe"]


def plot_point_robot_rollouts(
    records: EpisodeRecords,
    path: str | Path,
    params: PointRobotParams = PointRobotParams(),
    title: str = "",
    max_episodes: int = 20,
) -> Path:
    """Draw evaluation rollouts over the point robot's hazard, true infeasible region and goal (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if records.observations is None:
        raise ReportError("these records have no observations: evaluate with record_observations=True")
    xs, ys = np.meshgrid(np.linspace(-3.0, 3.5, 261), np.linspace(-2.0, 2.0, 161))
    feasible = true_feasible_mask(np.stack([xs, ys], axis=-1), params)
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    ax.contourf(xs, ys, (~feasible).astype(float), levels=[0.5, 1.5], colors=["#f4c7c3"])
    ax.add_patch(plt.Circle(params.hazard_center, params.hazard_radius, color="#d93025", alpha=0.6, label="hazard"))
    ax.add_patch(plt.Circle(params.goal, params.goal_radius, color="#188038", alpha=0.5, label="goal"))
    for i, obs in enumerate(records.observations[:max_episodes]):
        colour = "#d93025" if records.costs[i] > 0 else "#1a73e8"
        ax.plot(obs[:, 0], obs[:, 1], color=colour, lw=1.0, alpha=0.8)
    ax.plot([], [], color="#1a73e8", label="cost-free episode")
    ax.plot([], [], color="#d93025", label="episode with cost")
    ax.fill_between([], [], color="#f4c7c3", label="true infeasible region")
    ax.set_aspect("equal")
    ax.set_xlim(-3.0, 3.5)
    ax.set_ylim(-2.0, 2.0)
    ax.legend(loc="lower left", fontsize=7)
    ax.set_title(title or "point robot rollouts")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def feasible_region_figure(
    margin_fn: Callable[[np.ndarray], np.ndarray],
    path: str | Path,
    bounds: tuple[np.ndarray, np.ndarray],
    params: PointRobotParams = PointRobotParams(),
    observations: np.ndarray | None = None,
    grid: int = 200,
    title: str = "learned",
) -> dict[str, float]:
    """Draw a learned feasible region (``margin_fn(xy) <= 0``) beside the point robot's true one.

    Scores both on a ``grid x grid`` lattice over ``bounds`` (low, high corners; e.g. the dataset's
    bounding box) and returns ``iou`` (feasible sets), ``iou_infeasible`` (their complements, the smaller
    and harder set) and ``agreement`` (fraction of grid points classified alike).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low, high = bounds
    xs, ys = np.linspace(low[0], high[0], grid), np.linspace(low[1], high[1], grid)
    points = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    true = true_feasible_mask(points, params)
    learned = np.asarray(margin_fn(points.astype(np.float32))) <= 0
    scores = {
        "iou": float((true & learned).sum() / max(1, (true | learned).sum())),
        "iou_infeasible": float((~true & ~learned).sum() / max(1, (~true | ~learned).sum())),
        "agreement": float((true == learned).mean()),
    }
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    extent = (xs[0], xs[-1], ys[0], ys[-1])
    for ax, mask, name in [(axes[0], true, "true feasible region"),
                           (axes[1], learned, f"{title} (IoU {scores['iou']:.3f})")]:
        ax.imshow(mask.reshape(grid, grid), origin="lower", extent=extent, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
        ax.add_patch(plt.Circle(params.hazard_center, params.hazard_radius, fill=False, color="black", lw=1.5))
        ax.set_title(name)
        ax.set_xlabel("x")
    if observations is not None:
        axes[1].scatter(observations[::50, 0], observations[::50, 1], s=0.5, c="black", alpha=0.3)
    axes[0].set_ylabel("y")
    fig.suptitle("point robot: feasible (green) and infeasible (red) states")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return scores


__all__ = ["feasible_region_figure", "collect", "aggregate", "to_markdown", "to_csv", "plot_point_robot_rollouts", "COLUMNS", "ReportError"]
