"""PRDC training speed per neighbour-index backend, and the share of a step spent in the search.

A synthetic dataset with trajectory structure (random-walk states of dimension 17, actions a smooth
function of the state plus noise, trajectories of 1000 steps: D4RL-locomotion-like) of N transitions is
built once; for each backend PRDC is set up (index build timed) and trained for a number of steps with
the paper's sizes (batch 256, 256x256 networks). The search runs on actor steps only (every
``policy_delay`` = 2 steps, as in PRDC). ``search_share`` is the fraction of the training time the update
waits for it. With ``overlap_search`` the search runs in a background thread while the critics update, so
only the part the critic step does not cover holds the step up; PRDC's default overlaps only when torch's
threads leave a core free (``--threads`` below the machine's cores). ``search_busy_share`` is the time
inside the search itself over the training time. The default backend is measured once with the overlap
on and once off (same numbers either way); the default settings' row is whichever of the two they pick
here, and ``overlap_speedup`` is their ratio of steps/s: a lower waited share is only worth having when
the steps/s rise with it.

Prints a table and a last line ``RESULT {json}`` with ``steps_per_s`` per backend and ``search_share`` of
the default backend and default settings (target <= 0.25). ``--quick`` (under a minute) uses 1e5
transitions and skips the brute-force CPU backends; the full run uses 1e6. Run alone: a second busy process slows torch 8-16x.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from saferl.algorithm import TaskContext
from saferl.algorithms.prdc import PRDC, PRDCConfig, overlap_search_enabled
from saferl.datasets import TransitionDataset


def synthetic_dataset(n: int, obs_dim: int = 17, act_dim: int = 6, episode_len: int = 1000, seed: int = 0) -> TransitionDataset:
    """Random-walk states, smooth actions, DSRL/D4RL-like trajectory structure."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=0.05, size=(n, obs_dim)).astype(np.float32)
    starts = np.arange(0, n, episode_len)
    steps[starts] = rng.normal(size=(len(starts), obs_dim)).astype(np.float32)
    obs = np.empty_like(steps)
    for start in starts:  # cumulative sum inside each trajectory
        obs[start : start + episode_len] = np.cumsum(steps[start : start + episode_len], axis=0)
    weights = rng.normal(size=(obs_dim, act_dim)).astype(np.float32) / np.sqrt(obs_dim)
    actions = np.tanh(obs @ weights + rng.normal(scale=0.1, size=(n, act_dim)).astype(np.float32))
    next_obs = np.roll(obs, -1, axis=0)
    timeouts = np.zeros(n, bool)
    timeouts[episode_len - 1 :: episode_len] = True
    return TransitionDataset(obs, actions, rng.normal(size=n), np.zeros(n), next_obs, np.zeros(n), timeouts)


def measure(data: TransitionDataset, backend: str, steps: int, overlap: bool | None = None) -> dict[str, float]:
    """Build PRDC with ``backend`` and time ``steps`` training steps and their searches."""
    torch.manual_seed(0)
    context = TaskContext(data.obs_dim, data.act_dim, 1000, 10.0, total_steps=steps)
    algo = PRDC(PRDCConfig(neighbor_backend=backend, overlap_search=overlap), context)
    start = time.perf_counter()
    data = algo.setup(data)
    build_s = time.perf_counter() - start
    assert algo.index is not None
    generator = torch.Generator().manual_seed(0)
    for step in range(5):  # warm-up
        algo.update(data.sample(256, generator), step)
    algo.search_timing.update(search_s=0.0, wait_s=0.0)
    start = time.perf_counter()
    for step in range(steps):
        algo.update(data.sample(256, generator), step)
    total = time.perf_counter() - start
    return {"build_s": build_s, "steps_per_s": steps / total, "search_share": algo.search_timing["wait_s"] / total,
            "search_busy_share": algo.search_timing["search_s"] / total,
            "memory_mb": algo.index.memory_bytes / 2**20, "fallback_fraction": algo.index.stats.fallback_fraction}


def main() -> dict:
    """Run the benchmark; print a table and ``RESULT {json}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1e5 transitions, fewer steps, no brute force")
    parser.add_argument("--transitions", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = args.transitions or (100_000 if args.quick else 1_000_000)
    steps = 100 if args.quick else 300
    others = ["kdtree", "faiss-ivf"] if args.quick else ["cells", "kdtree", "faiss-ivf", "faiss-flat"]
    data = synthetic_dataset(n)
    # The default backend in both orders, each measured once; the default settings pick one of them.
    overlapped = measure(data, "candidates", steps, overlap=True)
    sequential = measure(data, "candidates", steps, overlap=False)
    default_overlaps = overlap_search_enabled(PRDCConfig().overlap_search)
    default_name = f"candidates ({'overlapped' if default_overlaps else 'sequential'}: default)"
    rows = {default_name: overlapped if default_overlaps else sequential,
            f"candidates ({'sequential' if default_overlaps else 'overlapped'})": sequential if default_overlaps else overlapped}
    rows.update({backend: measure(data, backend, steps) for backend in others})
    print(f"PRDC on {n:,} synthetic transitions (obs 17, act 6), batch 256, 256x256 nets, {steps} steps, "
          f"{args.threads} torch threads")
    print(f"{'backend':<35} {'build s':>8} {'memory MB':>10} {'steps/s':>8} {'search share':>13} {'busy share':>11} "
          f"{'fallback':>9}")
    for backend, row in rows.items():
        print(f"{backend:<35} {row['build_s']:>8.1f} {row['memory_mb']:>10.0f} {row['steps_per_s']:>8.1f} "
              f"{row['search_share']:>13.3f} {row['search_busy_share']:>11.3f} {row['fallback_fraction']:>9.3f}")
    result = {
        "transitions": n,
        "steps_per_s": {backend: round(row["steps_per_s"], 2) for backend, row in rows.items()},
        "build_s": {backend: round(row["build_s"], 2) for backend, row in rows.items()},
        "search_share": round(rows[default_name]["search_share"], 4),
        "search_busy_share": round(rows[default_name]["search_busy_share"], 4),
        "search_share_kdtree": round(rows["kdtree"]["search_share"], 4),
        "search_share_sequential": round(sequential["search_share"], 4),
        "search_share_overlapped": round(overlapped["search_share"], 4),
        "overlap_speedup": round(overlapped["steps_per_s"] / sequential["steps_per_s"], 3),
        "default_overlaps": default_overlaps,
        "quick": args.quick,
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
