"""FISOR's toy, reproduced: learn the feasible region of the point robot offline and compare it with the truth.

Builds the built-in point-robot dataset (scripted behaviours from reckless to cautious), trains a
:class:`saferl.constraints.feasibility.FeasibilityCritic` (HJ reachability, FISOR's settings unless told
otherwise) on it, and evaluates ``V_h(x, y) <= 0`` on a grid against the closed-form feasible set
``true_feasible_mask``. Saves the two regions side by side (PNG) and prints a last line
``RESULT {"iou": ..., ...}`` where ``iou`` is the intersection over union of the feasible sets on the grid
(the data's bounding box) and ``iou_infeasible`` that of their complements (the smaller, harder set).

Two defaults depart from FISOR, on measurements (``docs/constraints/feasibility.md``): the reversed
expectile is 0.99, not 0.9, because about half of this dataset's behaviours drive through the hazard and
with 0.9 the bias of the expectile towards those actions makes the whole region upstream of the hazard look
infeasible (IoU 0.90 instead of 0.95 after 20k steps); the learning rate is 1e-3, not 3e-4, so that a few
thousand steps suffice.

    python scripts/feasibility_point_robot.py --steps 5000 --out runs/feasibility_point_robot.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from saferl.constraints.feasibility import FeasibilityCritic
from saferl.datasets.point_robot_data import build_point_robot_dataset
from saferl.report import feasible_region_figure


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-trajectories", type=int, default=1000, help="trajectories in the dataset")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dataset and of the networks")
    parser.add_argument("--steps", type=int, default=5000, help="gradient steps of the feasibility critic")
    parser.add_argument("--batch-size", type=int, default=256, help="transitions per step (FISOR: 256)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="hidden layer widths")
    parser.add_argument("--gamma", type=float, default=0.99, help="discount")
    parser.add_argument("--expectile", type=float, default=0.99, help="reversed expectile of V_h (FISOR: 0.9)")
    parser.add_argument("--device", default="cpu", help="torch device for training, e.g. cuda")
    parser.add_argument("--grid", type=int, default=200, help="grid points per axis for the IoU")
    parser.add_argument("--out", type=Path, default=Path("runs/feasibility_point_robot.png"), help="PNG path")
    return parser.parse_args()


def train_critic(args: argparse.Namespace) -> tuple[FeasibilityCritic, np.ndarray]:
    """Train the critic on the dataset; return it and the dataset's observations (for the plot)."""
    dataset = build_point_robot_dataset(args.num_trajectories, seed=args.seed)
    torch.manual_seed(args.seed)
    critic = FeasibilityCritic(
        dataset.obs_dim, dataset.act_dim, hidden=tuple(args.hidden), gamma=args.gamma, expectile=args.expectile
    ).to(args.device)
    optimiser = torch.optim.Adam(critic.trainable_parameters(), lr=args.lr)
    generator = torch.Generator().manual_seed(args.seed)
    for step in range(1, args.steps + 1):
        losses = critic.losses(dataset.sample(args.batch_size, generator).to(args.device))
        optimiser.zero_grad(set_to_none=True)
        (losses["q_loss"] + losses["v_loss"]).backward()
        optimiser.step()
        critic.update_target()
        if step % 1000 == 0 or step == args.steps:
            print(f"step {step}: " + ", ".join(f"{k} {v.item():.4f}" for k, v in losses.items()), flush=True)
    return critic.cpu(), dataset.observations


def main() -> None:
    torch.set_num_threads(1)
    args = parse_args()
    start = time.perf_counter()
    critic, observations = train_critic(args)
    train_s = time.perf_counter() - start

    def margin(points: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return (critic.state_value(torch.as_tensor(points)) - critic.threshold).numpy()

    bounds = (observations.min(axis=0), observations.max(axis=0))
    scores = feasible_region_figure(margin, args.out, bounds, observations=observations, grid=args.grid,
                                    title="learned V_h <= 0")
    iou, iou_infeasible, agreement = scores["iou"], scores["iou_infeasible"], scores["agreement"]
    print(f"saved {args.out}")
    result = {"iou": round(iou, 4), "iou_infeasible": round(iou_infeasible, 4), "agreement": round(agreement, 4),
              "steps": args.steps, "train_seconds": round(train_s, 1)}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
