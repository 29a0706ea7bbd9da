"""FISOR speed: training steps/s at the paper's batch sizes, and acting time per state (N=16, T=5).

Two network sizes are measured: the paper's (critics 256x256, LN-ResNet width 256 with 3 blocks) and the
point-robot config's (critics 128x128, width 128, 2 blocks). Training uses FISOR's batch sizes (2048 per
step: critics on 256 rows, the actor in 2 updates of 1024). Acting samples 16 candidates per state with 5
DDPM steps from the EMA actor and scores them with the feasibility critic; it is timed for one state (one
environment) and per state when many environments act in one batch.

Prints a table and a last line ``RESULT {json}`` (``act_ms_per_state`` is the paper network, one state;
target <= 2 ms). Run alone: a second busy process on the 2 cores slows torch 8-16x.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from saferl.algorithm import TaskContext
from saferl.algorithms.fisor import FISOR, FISORConfig
from saferl.datasets.point_robot_data import build_point_robot_dataset

NETWORKS = {
    "paper": {},
    "point_robot": {"critic_hidden": [128, 128], "actor_width": 128, "actor_blocks": 2},
}


def time_call(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of ``fn()`` over ``repeats`` calls after two warm-ups."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> dict:
    """Measure and print; return the result dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (under a minute)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true",
                        help="also print torch.profiler's operator table for 20 one-state acts of the paper network")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = build_point_robot_dataset(100, seed=0)
    # Observation size of a Safety-Gymnasium navigation task (CarGoal1: 72) so the input layer is realistic.
    obs_dim = 72
    rng = np.random.default_rng(0)
    train_repeats, act_repeats = (3, 10) if args.quick else (10, 50)
    rows: dict[str, dict[str, float]] = {}
    for name, sizes in NETWORKS.items():
        config = FISORConfig(**sizes)
        context = TaskContext(obs_dim, 2, 1000, 10.0, 40.0, 0.0, 1_000_000)
        algo = FISOR(config, context)
        padded = data.replace(
            observations=np.concatenate([data.observations, rng.normal(size=(len(data), obs_dim - 2))], 1),
            next_observations=np.concatenate([data.next_observations, rng.normal(size=(len(data), obs_dim - 2))], 1),
        )
        algo.setup(padded)
        generator = torch.Generator().manual_seed(0)
        step = [0]

        def train_step() -> None:
            algo.update(padded.sample(config.batch_size, generator), step[0])
            step[0] += 1

        train_s = time_call(train_step, train_repeats)
        row = {"train_steps_per_s": 1.0 / train_s}
        for states in (1, 10, 100):
            obs = padded.observations[:states]
            row[f"act_ms_per_state_{states}"] = 1e3 * time_call(lambda: algo.act(obs), act_repeats) / states
        rows[name] = row
        if args.profile and name == "paper":
            from torch.profiler import ProfilerActivity, profile

            one = torch.as_tensor(padded.observations[:1], dtype=torch.float32)
            with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(20):
                    algo.act_tensor(one)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
    print(f"FISOR, obs 72 / act 2, N=16 candidates, T=5 steps, {args.threads} torch threads")
    print(f"{'network':<12} {'train steps/s':>14} {'act ms/state (1)':>17} {'(10 envs)':>10} {'(100 envs)':>11}")
    for name, row in rows.items():
        print(f"{name:<12} {row['train_steps_per_s']:>14.2f} {row['act_ms_per_state_1']:>17.2f} "
              f"{row['act_ms_per_state_10']:>10.2f} {row['act_ms_per_state_100']:>11.2f}")
    result = {
        "train_steps_per_s": round(rows["paper"]["train_steps_per_s"], 3),
        "act_ms_per_state": round(rows["paper"]["act_ms_per_state_1"], 3),
        "act_ms_per_state_batched_100": round(rows["paper"]["act_ms_per_state_100"], 3),
        "point_robot_train_steps_per_s": round(rows["point_robot"]["train_steps_per_s"], 3),
        "point_robot_act_ms_per_state": round(rows["point_robot"]["act_ms_per_state_1"], 3),
        "threads": args.threads,
        "quick": args.quick,
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
