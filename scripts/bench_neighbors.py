"""Benchmark of the dataset nearest-neighbour index (PRDC's dataset constraint).

Data with trajectory structure, like DSRL/D4RL data rather than iid Gaussians: trajectories of ``T``
steps of a noisy linear system whose drift is mostly a rotation (spirals, lightly damped), all starting
from one reset distribution, so that trajectories overlap near the start and spread apart later;
states are z-normalised. Actions come from per-trajectory behaviour policies,
``a_t = clip(tanh(W s_t + b_traj) + 0.1 ε, -1, 1)``, so they depend on the state and differ between
trajectories.

Queries come in batches of 256 whose states are dataset states (PRDC samples its batches from the data),
with actions either *near* the dataset action of their row (``a_i + 0.05 ε``, clipped: late in
training) or *far*: uniform on ``[-1, 1]^{d_a}``, unrelated to the state (early in training).

Per backend the script prints build time, memory, median query time per batch (near / far), the
fallback fraction of the candidates backend and the recall against exact brute force (the fraction of
queries whose returned k-th distance equals the exact one up to 1e-5 relative). The last line is
``RESULT {json}`` with the default backend's speed-up over scipy's cKDTree on the same queries.

    python scripts/bench_neighbors.py --quick     # 2e5 points, state dim 20, action dim 6
    python scripts/bench_neighbors.py --full      # 1e6 points: the default's build takes minutes

Timings depend on the machine and on whatever else runs on it: run it alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import dataclass

import faiss
import numpy as np
import torch

from saferl.constraints.neighbors import BACKENDS, DatasetNeighborIndex

BATCH = 256
RECALL_RTOL = 1e-5


@dataclass
class Scale:
    """Sizes of one benchmark run."""

    points: int
    state_dim: int
    action_dim: int
    batches: int
    backends: tuple[str, ...]


QUICK = Scale(200_000, 20, 6, 5, ("candidates", "kdtree", "cells", "faiss-ivf", "faiss-flat", "torch"))
FULL = Scale(1_000_000, 20, 6, 3, ("candidates", "kdtree", "cells", "faiss-ivf", "faiss-flat", "torch"))


def trajectory_data(
    points: int, state_dim: int, action_dim: int, seed: int, horizon: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Spiral random-walk trajectories from a shared reset distribution (module docstring).

    Returns z-normalised states ``(points, state_dim)`` and actions ``(points, action_dim)`` in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    trajectories = -(-points // horizon)
    skew = rng.normal(size=(state_dim, state_dim))
    drift = (skew - skew.T) / np.sqrt(state_dim) - 0.05 * np.eye(state_dim)
    policy = rng.normal(size=(state_dim, action_dim)) / np.sqrt(state_dim)
    offsets = 0.5 * rng.normal(size=(trajectories, action_dim))
    state = 1.0 + 0.1 * rng.normal(size=(trajectories, state_dim))
    states = np.empty((trajectories, horizon, state_dim), np.float32)
    actions = np.empty((trajectories, horizon, action_dim), np.float32)
    step = 0.05
    for t in range(horizon):
        state = state + step * state @ drift.T + step * rng.normal(size=state.shape)
        states[:, t] = state
        actions[:, t] = np.clip(np.tanh(state @ policy + offsets) + 0.1 * rng.normal(size=offsets.shape), -1, 1)
    states = states.reshape(-1, state_dim)[:points]
    actions = actions.reshape(-1, action_dim)[:points]
    states = (states - states.mean(0)) / states.std(0)
    return np.ascontiguousarray(states, np.float32), np.ascontiguousarray(actions, np.float32)


def query_batches(actions: np.ndarray, batches: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """``batches`` batches of dataset rows with near and far actions (module docstring)."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for _ in range(batches):
        rows = rng.integers(0, len(actions), BATCH)
        near = np.clip(actions[rows] + 0.05 * rng.normal(size=(BATCH, actions.shape[1])), -1, 1)
        far = rng.uniform(-1, 1, size=(BATCH, actions.shape[1]))
        out.append(
            {
                "rows": torch.from_numpy(rows),
                "near": torch.from_numpy(near.astype(np.float32)),
                "far": torch.from_numpy(far.astype(np.float32)),
            }
        )
    return out


def run_backend(
    backend: str, states: np.ndarray, actions: np.ndarray, batches: list, args: argparse.Namespace
) -> dict:
    """Build one index and time its queries; returns figures and the distances found."""
    index = DatasetNeighborIndex(
        torch.from_numpy(states).to(args.device),
        torch.from_numpy(actions).to(args.device),
        args.beta,
        backend=backend,
        k=args.k,
        workers=args.threads,
        seed=args.seed,
    )
    figures: dict = {
        "build_s": index.build_seconds,
        "build_phases_s": {name: round(value, 2) for name, value in index.build_timings.items()},
        "memory_mib": index.memory_bytes / 2**20,
    }
    distances: dict[str, list[torch.Tensor]] = {}
    for kind in ("near", "far"):
        index.reset_stats()
        times, found = [], []
        for batch in batches:
            rows, acts = batch["rows"].to(args.device), batch[kind].to(args.device)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = index.query_rows(rows, acts)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            found.append(result.kth_distances.cpu())
        figures[f"{kind}_ms"] = 1e3 * statistics.median(times)
        figures[f"{kind}_total_s"] = sum(times)
        figures[f"{kind}_fallback"] = index.stats.fallback_fraction
        distances[kind] = found
    return {"figures": figures, "distances": distances}


def recall(found: list[torch.Tensor], exact: list[torch.Tensor]) -> float:
    """Fraction of queries whose k-th distance matches the exact one (relative tolerance 1e-5)."""
    hits = sum(int(torch.isclose(f, e, rtol=RECALL_RTOL, atol=1e-6).sum()) for f, e in zip(found, exact))
    return hits / sum(len(e) for e in exact)


def main() -> None:
    """Parse arguments, run every backend, print the table and the RESULT line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="2e5 points (the default)")
    size.add_argument("--full", action="store_true", help="1e6 points")
    parser.add_argument("--points", type=int, help="override the number of points")
    parser.add_argument("--state-dim", type=int, help="override the state dimension")
    parser.add_argument("--action-dim", type=int, help="override the action dimension")
    parser.add_argument("--batches", type=int, help="override the 256-query batches per kind")
    parser.add_argument("--backends", help=f"comma-separated subset of {','.join(BACKENDS)}")
    parser.add_argument("--beta", type=float, default=2.0, help="state weight in the key (PRDC: 2)")
    parser.add_argument("--k", type=int, default=1, help="neighbours per query (PRDC: 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch/faiss/cKDTree threads")
    parser.add_argument("--device", default="cpu", help="device of the keys and queries (cuda for the GPU path)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    scale = FULL if args.full else QUICK
    points = args.points or scale.points
    state_dim = args.state_dim or scale.state_dim
    action_dim = args.action_dim or scale.action_dim
    batches_per_kind = args.batches or scale.batches
    backends = tuple(args.backends.split(",")) if args.backends else scale.backends
    unknown = [name for name in backends if name not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)

    start = time.perf_counter()
    states, actions = trajectory_data(points, state_dim, action_dim, args.seed)
    batches = query_batches(actions, batches_per_kind, args.seed)
    print(
        f"data: {points} points, state dim {state_dim}, action dim {action_dim} (key dim {state_dim + action_dim}), "
        f"generated in {time.perf_counter() - start:.1f} s; {batches_per_kind} batches of {BATCH} per kind; "
        f"beta {args.beta}, k {args.k}, {args.threads} threads, device {args.device}; "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, faiss {faiss.__version__}",
        flush=True,
    )
    reference = run_backend("torch", states, actions, batches, args)
    exact = reference["distances"]
    rows = {}
    header = (
        f"{'backend':<11} {'build s':>8} {'MiB':>7} {'near ms':>9} {'far ms':>9} "
        f"{'fallback n/f':>13} {'recall n/f':>13}  build phases"
    )
    print(header)
    for backend in backends:
        outcome = reference if backend == "torch" else run_backend(backend, states, actions, batches, args)
        fig = outcome["figures"]
        fig["recall_near"] = recall(outcome["distances"]["near"], exact["near"])
        fig["recall_far"] = recall(outcome["distances"]["far"], exact["far"])
        rows[backend] = fig
        fallback = f"{fig['near_fallback']:.3f}/{fig['far_fallback']:.3f}" if backend == "candidates" else "-"
        print(
            f"{backend:<11} {fig['build_s']:>8.1f} {fig['memory_mib']:>7.0f} "
            f"{fig['near_ms']:>9.2f} {fig['far_ms']:>9.1f} "
            f"{fallback:>13} {fig['recall_near']:>6.4f}/{fig['recall_far']:.4f}  {fig['build_phases_s']}",
            flush=True,
        )

    result: dict = {"points": points, "state_dim": state_dim, "action_dim": action_dim, "threads": args.threads,
                    "device": args.device, "batches_per_kind": batches_per_kind}
    if "candidates" in rows and "kdtree" in rows:
        default, tree = rows["candidates"], rows["kdtree"]
        mixed = (tree["near_total_s"] + tree["far_total_s"]) / (default["near_total_s"] + default["far_total_s"])
        result.update(
            speedup_vs_scipy_kdtree=round(mixed, 2),
            speedup_near=round(tree["near_ms"] / default["near_ms"], 2),
            speedup_far=round(tree["far_ms"] / default["far_ms"], 2),
            recall=min(default["recall_near"], default["recall_far"]),
            fallback_near=round(default["near_fallback"], 4),
            fallback_far=round(default["far_fallback"], 4),
            default_build_s=round(default["build_s"], 1),
            default_memory_mib=round(default["memory_mib"], 1),
        )
    result["backends"] = {
        name: {key: (round(value, 4) if isinstance(value, float) else value) for key, value in fig.items()}
        for name, fig in rows.items()
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
