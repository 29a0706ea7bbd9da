"""Benchmark saferl's data path: DSRL file load time and memory, and batch sampling speed.

Builds a synthetic DSRL-like file (default 1M transitions, observation 72, action 2, trajectories of
1000 steps, every observation a random walk: the hardest case for gzip), then measures

- ``load_s``: wall time of ``read_dsrl`` (median over fresh subprocesses; the file was just written,
  so it sits in the OS page cache: disk reads are not counted), and ``load_cpu_s``, the CPU time it
  used over all threads (wall time near CPU time / threads means the cores were free);
- ``peak_mem_ratio``: peak resident memory increase during ``read_dsrl`` / ``dataset.nbytes``, in a
  fresh subprocess: ``/proc`` peak RSS (``VmHWM``, reset just before) minus RSS just before the load
  (the worst of the runs; see :func:`child_load`);
- ``sampling_speedup_<B>``: batches/s of ``TransitionDataset.sample`` over an OSRL-style loader (a
  torch ``Dataset`` returning one transition per ``__getitem__``, batched by a shuffling
  ``DataLoader``), both producing torch tensors, measured in the same process, one torch thread.

Targets: load_s <= 3, peak_mem_ratio <= 2, speed-ups >= 20. Prints a table, then a last line
``RESULT {json}``. Run alone on an idle machine: ``python scripts/bench_data.py`` (``--quick``: 100k
transitions, shorter timings, under a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from saferl.datasets import TransitionDataset
from saferl.datasets.formats import read_dsrl, write_dsrl
from saferl.datasets.formats.hdf5_common import read_thread_count

TARGETS = {
    "load_s": 3.0, "peak_mem_ratio": 2.0, "sampling_speedup_256": 20.0, "sampling_speedup_2048": 20.0, "eval_speedup": 5.0,
}
"""Upper bounds for load_s and peak_mem_ratio, lower bounds for the speed-ups."""

QUICK_TRANSITIONS = 100_000
FULL_TRANSITIONS = 1_000_000
BATCH_SIZES = (256, 2048)


def build_synthetic_dataset(
    transitions: int, obs_dim: int, act_dim: int, episode_len: int, seed: int
) -> TransitionDataset:
    """DSRL-like transitions: random-walk observations, uniform actions, 0/1 costs, a time-out every episode.

    The last trajectory is shorter when ``transitions`` is not a multiple of ``episode_len``.
    """
    rng = np.random.default_rng(seed)
    n_episodes = -(-transitions // episode_len)
    steps = rng.normal(scale=0.05, size=(n_episodes, episode_len + 1, obs_dim)).astype(np.float32)
    chain = np.cumsum(steps, axis=1)
    observations = chain[:, :-1].reshape(-1, obs_dim)[:transitions]
    next_observations = chain[:, 1:].reshape(-1, obs_dim)[:transitions]
    timeouts = np.zeros(transitions, dtype=bool)
    timeouts[episode_len - 1 :: episode_len] = True
    timeouts[-1] = True
    return TransitionDataset(
        observations=observations,
        next_observations=next_observations,
        actions=rng.uniform(-1.0, 1.0, size=(transitions, act_dim)).astype(np.float32),
        rewards=rng.normal(size=transitions).astype(np.float32),
        costs=(rng.random(transitions) < 0.1).astype(np.float32),
        terminals=np.zeros(transitions, dtype=bool),
        timeouts=timeouts,
        metadata={"task": "synthetic", "seed": seed},
    )


# ---------------------------------------------------------------------------------------------- loading
def _proc_status_bytes(field: str) -> int | None:
    """A memory field (``VmRSS``, ``VmHWM``) of ``/proc/self/status`` in bytes, or ``None`` off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux >= 4.0); ``False`` if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _ru_maxrss_bytes() -> int:
    """``getrusage`` peak RSS (KiB on Linux, bytes on macOS) in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def child_load(path: str) -> dict[str, Any]:
    """Load ``path`` once in this (fresh) process; time it and measure the peak memory increase.

    Linux: ``VmHWM`` (peak RSS of this process image, reset just before the load where the kernel
    allows) minus ``VmRSS`` before the load. ``getrusage``'s ``ru_maxrss`` is the fallback elsewhere;
    on Linux it is no use: the kernel carries it over ``exec`` from the parent, whose memory holds
    the whole benchmark dataset.
    """
    before = _proc_status_bytes("VmRSS")
    on_linux = before is not None
    if on_linux:
        reset = _reset_peak_rss()
        method = "peak RSS (/proc VmHWM" + (", reset before load" if reset else "") + ") - RSS before load"
    else:
        before = _ru_maxrss_bytes()
        method = "peak RSS (getrusage ru_maxrss) after - before load"
    start, start_cpu = time.perf_counter(), time.process_time()
    dataset = read_dsrl(path)
    load_s, load_cpu_s = time.perf_counter() - start, time.process_time() - start_cpu
    peak = _proc_status_bytes("VmHWM") if on_linux else _ru_maxrss_bytes()
    return {"load_s": load_s, "load_cpu_s": load_cpu_s, "mem_increase_bytes": peak - before,
            "nbytes": dataset.nbytes, "method": method}


def measure_load(path: Path, repeats: int) -> dict[str, Any]:
    """Run :func:`child_load` in ``repeats`` fresh subprocesses: median time, worst memory ratio."""
    runs = []
    for _ in range(repeats):
        output = subprocess.run(
            [sys.executable, __file__, "--child-load", str(path)], check=True, capture_output=True, text=True
        ).stdout
        runs.append(json.loads(output.strip().splitlines()[-1]))
    ratios = [run["mem_increase_bytes"] / run["nbytes"] for run in runs]
    return {
        "load_s": statistics.median(run["load_s"] for run in runs),
        "load_s_runs": [round(run["load_s"], 3) for run in runs],
        "load_cpu_s": statistics.median(run["load_cpu_s"] for run in runs),
        "peak_mem_ratio": max(ratios),
        "peak_mem_method": runs[0]["method"] + f"; worst of {repeats} fresh subprocesses",
    }


# ---------------------------------------------------------------------------------------------- sampling
class PerSampleDataset(torch.utils.data.Dataset):
    """OSRL-style loader: ``__getitem__`` returns one transition, a ``DataLoader`` collates the batch."""

    def __init__(self, dataset: TransitionDataset) -> None:
        self.arrays = dataset.arrays()
        self.terminals = dataset.terminals.astype(np.float32)
        self.timeouts = dataset.timeouts.astype(np.float32)

    def __len__(self) -> int:
        return len(self.terminals)

    def __getitem__(self, index: int) -> tuple[np.ndarray | np.floating, ...]:
        a = self.arrays
        return (a["observations"][index], a["next_observations"][index], a["actions"][index], a["rewards"][index],
                a["costs"][index], self.terminals[index], self.timeouts[index])


def _batches_per_second(next_batch: Callable[[], object], seconds: float) -> float:
    """Call ``next_batch`` (after one warm-up call) until ``seconds`` have passed; return calls per second."""
    next_batch()
    count = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or count < 3:
        next_batch()
        count += 1
    return count / elapsed


def measure_sampling(dataset: TransitionDataset, batch_size: int, seconds: float, seed: int) -> dict[str, float]:
    """Batches/s of ``TransitionDataset.sample`` and of the OSRL-style loader at ``batch_size``."""
    generator = torch.Generator().manual_seed(seed)
    ours = _batches_per_second(lambda: dataset.sample(batch_size, generator), seconds)
    loader = torch.utils.data.DataLoader(
        PerSampleDataset(dataset), batch_size=batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    batches = iter(loader)
    per_sample = _batches_per_second(lambda: next(batches), seconds)
    return {"ours_batches_per_s": ours, "per_sample_batches_per_s": per_sample, "speedup": ours / per_sample}


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TRANSITIONS:,} transitions, short timings")
    parser.add_argument("--transitions", type=int, help=f"default {FULL_TRANSITIONS:,} ({QUICK_TRANSITIONS:,} quick)")
    parser.add_argument("--obs-dim", type=int, default=72, help="observation size (72: CarGoal1)")
    parser.add_argument("--act-dim", type=int, default=2, help="action size")
    parser.add_argument("--episode-len", type=int, default=1000, help="steps per trajectory")
    parser.add_argument("--repeats", type=int, default=3, help="fresh-subprocess loads to time")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and of sampling")
    parser.add_argument("--child-load", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.transitions is None:
        args.transitions = QUICK_TRANSITIONS if args.quick else FULL_TRANSITIONS
    if min(args.transitions, args.obs_dim, args.act_dim, args.episode_len, args.repeats) < 1:
        parser.error("--transitions, --obs-dim, --act-dim, --episode-len and --repeats must be positive")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print a table and ``RESULT {json}``; return the result dict."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    result: dict[str, Any] = {
        "transitions": args.transitions, "obs_dim": args.obs_dim, "act_dim": args.act_dim,
        "episode_len": args.episode_len, "quick": args.quick, "read_threads": read_thread_count(),
    }
    with tempfile.TemporaryDirectory(prefix="saferl-bench-") as folder:
        dataset = build_synthetic_dataset(args.transitions, args.obs_dim, args.act_dim, args.episode_len, args.seed)
        path = Path(folder) / "synthetic.hdf5"
        start = time.perf_counter()
        write_dsrl(dataset, path)
        result["write_s"] = time.perf_counter() - start
        result["dataset_mb"] = dataset.nbytes / 2**20
        result["file_mb"] = path.stat().st_size / 2**20
        result.update(measure_load(path, args.repeats))
    seconds = 0.5 if args.quick else 2.0
    for batch_size in BATCH_SIZES:
        sampling = measure_sampling(dataset, batch_size, seconds, args.seed)
        result[f"sampling_{batch_size}"] = sampling
        result[f"sampling_speedup_{batch_size}"] = sampling["speedup"]
    result.update(measure_evaluation(episodes=100))
    result["targets"] = TARGETS
    result["meets_targets"] = {
        key: (result[key] <= bound if key in ("load_s", "peak_mem_ratio") else result[key] >= bound)
        for key, bound in TARGETS.items()
    }
    print_table(result)
    print("RESULT " + json.dumps(result, default=float))
    return result


def measure_evaluation(episodes: int) -> dict[str, float]:
    """Seconds to evaluate ``episodes`` point-robot episodes one at a time vs all in one batch.

    Both use ``saferl.evaluation.evaluate`` with the same scripted, deterministic batched policy (a small
    torch MLP, so each policy call costs what a trained actor's does); only ``num_envs`` differs. The
    per-episode returns must agree, which is checked.
    """
    from saferl.evaluation import evaluate
    from saferl.networks.mlp import MLP

    torch.manual_seed(0)
    actor = MLP(2, 2, hidden=(256, 256), output_activation="tanh").eval()

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return actor(torch.as_tensor(obs)).numpy()

    timings = {}
    results = {}
    for name, num_envs in (("sequential", 1), ("vectorised", episodes)):
        start = time.perf_counter()
        results[name], _ = evaluate(policy, "PointRobot", episodes=episodes, seed=0, num_envs=num_envs)
        timings[name] = time.perf_counter() - start
    if not np.allclose(results["sequential"].episode_returns, results["vectorised"].episode_returns, atol=1e-4):
        raise RuntimeError("vectorised and sequential evaluation disagree: the benchmark is void")
    return {
        "eval_sequential_s": timings["sequential"],
        "eval_vectorised_s": timings["vectorised"],
        "eval_speedup": timings["sequential"] / timings["vectorised"],
    }


def print_table(result: dict[str, Any]) -> None:
    """Human-readable summary of ``result``."""
    print(f"saferl data benchmark: {result['transitions']:,} transitions (obs {result['obs_dim']}, "
          f"act {result['act_dim']}, trajectories of {result['episode_len']})"
          + (" [--quick: fewer transitions than the 1M of the targets]" if result["quick"] else ""))
    print(f"  dataset {result['dataset_mb']:.0f} MiB in memory, file {result['file_mb']:.0f} MiB (gzip), "
          f"written in {result['write_s']:.1f} s")
    rows = [
        ("load_s", f"{result['load_s']:.2f} s (runs {result['load_s_runs']})", "<= 3"),
        ("peak_mem_ratio", f"{result['peak_mem_ratio']:.2f} x dataset.nbytes", "<= 2"),
    ]
    for batch_size in BATCH_SIZES:
        sampling = result[f"sampling_{batch_size}"]
        rows.append((
            f"sampling_speedup_{batch_size}",
            f"{sampling['speedup']:.0f}x ({sampling['ours_batches_per_s']:.0f} vs "
            f"{sampling['per_sample_batches_per_s']:.1f} batches/s)",
            ">= 20",
        ))
    rows.append(("eval_speedup", f"{result['eval_speedup']:.0f}x (100 point-robot episodes: "
                 f"{result['eval_sequential_s']:.2f} s one by one vs {result['eval_vectorised_s']:.2f} s batched)", ">= 5"))
    for name, value, target in rows:
        status = "ok" if result["meets_targets"][name] else "MISSED"
        print(f"  {name:<22} {value:<44} target {target:<6} {status}")
    print(f"  load used {result['load_cpu_s']:.2f} CPU s over {result['read_threads']} inflate thread(s); "
          "the file was just written, so it is read from the page cache")
    print(f"  memory: {result['peak_mem_method']}")


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    if arguments.child_load:
        print(json.dumps(child_load(arguments.child_load)))
    else:
        main(sys.argv[1:])
