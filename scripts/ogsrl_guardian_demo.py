"""Does OGSRL's guardian keep model rollouts in distribution? Train with and without the OOD constraint.

Trains OGSRL on the built-in point robot twice from ``configs/point_robot/ogsrl.yaml``: once as shipped
(``ood_constraint=true``) and once with the guardian only measuring (``ood_constraint=false``). For each
run it reports the OOD rate of the policy's model rollouts (fraction of rollout steps ``(s, a)`` the
kernel-density guardian flags; the data themselves score about 5 %) during training and, at the end, per
rollout step over a horizon longer than the training one, plus the real-environment normalised reward and
cost. Prints one ``RESULT {json}`` line and saves ``docs/figures/ogsrl_guardian.png``.

    python scripts/ogsrl_guardian_demo.py                 # the shipped budget (two runs of a few minutes)
    python scripts/ogsrl_guardian_demo.py --steps 3000    # quicker
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from saferl.config import load_config
from saferl.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "point_robot" / "ogsrl.yaml"
VARIANTS = {"guardian constraint": True, "no guardian constraint": False}


def read_metrics(path: Path) -> dict[str, np.ndarray]:
    """Columns of a run's metrics.csv as float arrays."""
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return {key: np.array([float(row[key]) for row in rows]) for key in rows[0]}


@torch.no_grad()
def rollout_ood_by_step(algorithm: torch.nn.Module, horizon: int, starts: int, seed: int) -> tuple[np.ndarray, dict]:
    """OOD rate at each step of ``horizon``-step model rollouts from ``starts`` dataset states, and the rollout."""
    torch.manual_seed(seed)
    observations = algorithm.data["observations"]
    rows = torch.randint(len(observations), (starts,))
    rollout = algorithm.rollout(observations[rows], horizon)
    alive = rollout["alive"].float()
    rate = (rollout["ood_costs"] * alive).sum(1) / alive.sum(1).clamp_min(1)
    return rate.numpy(), rollout


def run_variant(guarded: bool, args: argparse.Namespace, out_dir: Path) -> dict:
    """Train one variant and measure its rollouts; returns curves and summary numbers."""
    overrides = [f"algo.ood_constraint={str(guarded).lower()}", f"out_dir={out_dir}", f"seed={args.seed}",
                 "progress=false", "torch_threads=1", "eval_every=0", f"eval_episodes={args.episodes}"]
    if args.steps is not None:
        overrides.append(f"steps={args.steps}")
    config = load_config(CONFIG, overrides)
    trainer = Trainer(config)
    result = trainer.run()
    algorithm = trainer.algorithm
    by_step, rollout = rollout_ood_by_step(algorithm, args.horizon, args.starts, args.seed)
    train_horizon = algorithm.config.rollout_horizon
    metrics = read_metrics(out_dir / "metrics.csv")
    active = ~np.isnan(metrics["rollout_ood_rate"])
    return {
        "ood_rate_train_horizon": float(by_step[:train_horizon].mean()),
        "ood_rate_long_horizon": float(by_step.mean()),
        "ood_rate_by_step": by_step.round(4).tolist(),
        "data_ood_rate": float(algorithm.data_ood_costs.mean()),
        "final_lambda_ood": float(metrics["lambda_ood"][active][-1]),
        "final_lambda_cost": float(metrics["lambda_cost"][active][-1]),
        "normalized_reward": result.final.normalized_reward,
        "normalized_cost": result.final.limit(config.cost_limit).normalized_cost,
        "cost_limit": config.cost_limit,
        "ood_rate_limit": algorithm.config.ood_rate_limit,
        "curves": {key: metrics[key][active].tolist() for key in ("step", "rollout_ood_rate", "lambda_ood")},
        "episodes": result.records.observations[:10],
        "data_states": algorithm.data["observations"].numpy(),
    }


def plot(results: dict[str, dict], path: Path) -> None:
    """Four panels: OOD rate during training, OOD multiplier, OOD rate by rollout step, real episodes."""
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    colours = {"guardian constraint": "tab:blue", "no guardian constraint": "tab:red"}
    any_result = next(iter(results.values()))
    for label, res in results.items():
        curves, colour = res["curves"], colours[label]
        axes[0].plot(curves["step"], curves["rollout_ood_rate"], color=colour, label=label)
        axes[1].plot(curves["step"], curves["lambda_ood"], color=colour, label=label)
        steps = np.arange(1, len(res["ood_rate_by_step"]) + 1)
        axes[2].plot(steps, res["ood_rate_by_step"], "o-", color=colour, ms=3,
                     label=f"{label} (reward {res['normalized_reward']:.2f}, cost {res['normalized_cost']:.2f})")
    for ax in (axes[0], axes[2]):
        ax.axhline(any_result["ood_rate_limit"], color="k", ls="--", lw=1, label="OOD rate limit rho")
        ax.axhline(any_result["data_ood_rate"], color="grey", ls=":", lw=1, label="rate on the data")
        ax.set_ylabel("OOD rate of model rollout steps")
    axes[0].set(xlabel="gradient step", title="rollouts during training (H = training horizon)")
    axes[1].set(xlabel="gradient step", ylabel="lambda_ood", title="OOD multiplier")
    axes[2].axvline(any_result["train_horizon"], color="k", lw=0.5)
    axes[2].set(xlabel="rollout step h", title="final policy, longer rollouts than in training")
    data = any_result["data_states"]
    axes[3].scatter(data[::10, 0], data[::10, 1], s=1, c="lightgrey", label="dataset states")
    axes[3].add_patch(plt.Circle((0.0, 0.0), 0.8, color="k", alpha=0.25, label="hazard"))
    axes[3].add_patch(plt.Circle((2.5, 0.0), 0.4, color="tab:green", alpha=0.4, label="goal"))
    for label, res in results.items():
        for i, xy in enumerate(res["episodes"]):
            axes[3].plot(xy[:, 0], xy[:, 1], color=colours[label], lw=1, alpha=0.7, label=label if i == 0 else None)
    axes[3].set(xlabel="x", ylabel="y", title="real-environment episodes of the final policies", aspect="equal",
                xlim=(-3.0, 4.0), ylim=(-2.2, 2.2))
    for ax in axes:
        ax.legend(fontsize=7, markerscale=3)
    fig.suptitle("OGSRL on the point robot: the guardian's OOD-cost constraint keeps model rollouts near the data")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="gradient steps per run (default: the config's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--horizon", type=int, default=20, help="steps of the final measuring rollouts")
    parser.add_argument("--starts", type=int, default=2000, help="dataset states the final rollouts start from")
    parser.add_argument("--episodes", type=int, default=20, help="real-environment evaluation episodes")
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "figures" / "ogsrl_guardian.png")
    parser.add_argument("--runs-dir", type=Path, default=None, help="keep the two run folders here (default: temp)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, guarded in VARIANTS.items():
            results[label] = run_variant(guarded, args, Path(args.runs_dir or tmp) / label.replace(" ", "_"))
            results[label]["train_horizon"] = load_config(CONFIG).algo.rollout_horizon
            summary = {k: v for k, v in results[label].items() if not isinstance(v, (dict, list, np.ndarray))}
            print(f"{label}: {json.dumps(summary)}", flush=True)
    plot(results, args.figure)
    keep = ("ood_rate_train_horizon", "ood_rate_long_horizon", "ood_rate_by_step", "data_ood_rate",
            "final_lambda_ood", "final_lambda_cost", "normalized_reward", "normalized_cost", "cost_limit",
            "ood_rate_limit")
    report = {label: {k: res[k] for k in keep} for label, res in results.items()}
    print("RESULT " + json.dumps({"figure": str(args.figure), **report}))


if __name__ == "__main__":
    main()
