"""Train the behaviour agents of one or more tasks and save their snapshots for the dataset builds.

Each task's recipe (``saferl.datasets.builders.recipes``) lists PPO-Lagrangian runs with annealed cost
limits; every run's snapshots go into ``datasets/behaviour_policies/<Task>.safetensors`` (one file per
task, committed to git), with the training time in its metadata. Prints one line every ``--log-every``
iterations and a summary per task. Run alone (one torch thread; the simulators are single-threaded):

    python scripts/train_behaviour.py BallRun CarRun
    python scripts/train_behaviour.py AntCircle --jobs 2   # its two runs side by side, on two cores
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from saferl.datasets.builders import IterationLog, load_snapshots, print_iteration, train_behaviour_policies


def main(argv: list[str] | None = None) -> int:
    """Train the tasks named on the command line; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", nargs="+", help="registry task names, e.g. BallRun CarRun")
    parser.add_argument("--log-every", type=int, default=10, help="iterations between log lines")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train up to this many runs of a recipe at once, one process and core each "
                             "(same snapshots; workers log every 20th iteration)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for task in args.tasks:

        def log(run: str, entry: IterationLog) -> None:
            print_iteration(task, run, entry, args.log_every)

        path = train_behaviour_policies(task, log=log, jobs=args.jobs)
        snapshots, meta = load_snapshots(path)
        size_kb = path.stat().st_size / 1024
        print(f"{task}: {len(snapshots)} snapshots -> {path} ({size_kb:.0f} KiB), "
              f"training {meta['training_seconds']:.0f} s", flush=True)
        for snap in snapshots:
            stats = snap.stats
            ret, cost = stats.get("episode_return", math.nan), stats.get("episode_cost", math.nan)
            print(f"  {stats.get('run', '?'):>8} steps {stats.get('steps', 0):8d} limit {stats.get('cost_limit', 0):6.1f} "
                  f"lambda {stats.get('multiplier', 0):6.2f} return {ret:8.1f} cost {cost:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
