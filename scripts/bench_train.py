"""Training speed: saferl's trainer against an OSRL-style loop with a per-sample data loader.

Both sides train BC-Safe's actor (same MLP, same batch size, Adam with the same hyper-parameters) on the
same selected data:

* **saferl**: ``saferl.trainer.Trainer`` end to end with its defaults (batch sampling by one vectorised
  gather, the algorithm's ``update`` with torch's fused Adam, loss logging, periodic checkpoints), timed over
  the training loop only (``metrics.csv``'s ``steps_per_s`` of the last window);
* **OSRL-style**: a ``torch.utils.data.Dataset`` whose ``__getitem__`` returns one transition, batched by a
  ``DataLoader`` (shuffle, default collate), as OSRL's ``TransitionDataset`` is used, with the same update
  and ``torch.optim.Adam``'s defaults;
* **network only**: the same network and fused Adam stepping on one fixed, pre-normalised batch: no
  sampling, no logging. No trainer can beat it, so ``speedup_ceiling`` (its rate over the OSRL-style one)
  bounds the speed-up any data pipeline can reach with this network. ``--compiled-ceiling`` also times
  that step with the network under ``torch.compile`` (does compiling raise the bound?).

Prints a table and a last line ``RESULT {json}`` with ``speedup_vs_per_sample_loader`` (target >= 3).
Run alone: a second busy process on the 2 cores slows torch 8-16x.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from saferl.config import load_config
from saferl.datasets import TransitionDataset
from saferl.datasets.point_robot_data import build_point_robot_dataset
from saferl.datasets.transforms import select_bc_safe
from saferl.networks.mlp import MLP
from saferl.trainer import Trainer


class PerSampleDataset(Dataset):
    """OSRL-style: one transition per ``__getitem__``."""

    def __init__(self, data: TransitionDataset) -> None:
        self.obs, self.actions = data.observations, data.actions
        self.rewards, self.costs, self.done = data.rewards, data.costs, data.terminals.astype(np.float32)

    def __len__(self) -> int:
        return len(self.obs)

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        return self.obs[i], self.actions[i], self.rewards[i], self.costs[i], self.done[i]


def osrl_style_steps_per_s(data: TransitionDataset, steps: int, batch_size: int, hidden: list[int]) -> float:
    """Steps/s of the per-sample-loader loop with BC's update."""
    torch.manual_seed(0)
    actor = MLP(data.obs_dim, data.act_dim, hidden=tuple(hidden), output_activation="tanh")
    optim = torch.optim.Adam(actor.parameters(), lr=1e-3)
    mean = torch.as_tensor(data.observations.mean(0))
    std = torch.as_tensor(data.observations.std(0)) + 1e-3
    loader = DataLoader(PerSampleDataset(data), batch_size=batch_size, shuffle=True, drop_last=True)
    it = iter(loader)
    done = 0
    start = time.perf_counter()
    while done < steps:
        try:
            obs, actions, *_ = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        loss = F.mse_loss(actor((obs - mean) / std), actions)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        done += 1
    return steps / (time.perf_counter() - start)


def network_only_steps_per_s(
    data: TransitionDataset, steps: int, batch_size: int, hidden: list[int], compiled: bool = False
) -> float:
    """Steps/s of the update alone (fused Adam) on one fixed, pre-normalised batch; with ``compiled``, the
    network goes through ``torch.compile`` (inductor) first and 3 untimed steps compile it."""
    torch.manual_seed(0)
    actor = MLP(data.obs_dim, data.act_dim, hidden=tuple(hidden), output_activation="tanh")
    optim = torch.optim.Adam(actor.parameters(), lr=1e-3, fused=True)
    batch = data.sample(batch_size, torch.Generator().manual_seed(0))
    obs = (batch.observations - batch.observations.mean(0)) / (batch.observations.std(0) + 1e-3)

    def step() -> None:
        loss = F.mse_loss(actor(obs), batch.actions)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    if compiled:
        actor.compile()
        for _ in range(3):
            step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def saferl_steps_per_s(data: TransitionDataset, steps: int, batch_size: int, hidden: list[int], out: Path) -> float:
    """Steps/s of saferl's trainer loop (from metrics.csv, whose rate excludes set-up and evaluation)."""
    config = load_config(None, [
        "algorithm=bc_safe", f"steps={steps}", f"log_every={steps}", f"checkpoint_every={steps}", "eval_every=0",
        "eval_episodes=1", "progress=false", f"out_dir={out}", f"algo.batch_size={batch_size}",
        f"algo.hidden=[{','.join(map(str, hidden))}]",
    ])
    Trainer(config, data).run()
    with (out / "metrics.csv").open() as handle:
        return float(list(csv.DictReader(handle))[-1]["steps_per_s"])


def profile(data: TransitionDataset, safe: TransitionDataset, hidden: list[int], steps: int = 1000) -> None:
    """saferl's loop and the network step alone, back to back twice, then saferl's loop under cProfile."""
    import cProfile
    import pstats

    for _ in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            ours = saferl_steps_per_s(data, steps, 512, hidden, Path(tmp) / "run")
        network = network_only_steps_per_s(safe, steps, 512, hidden)
        print(f"batch 512: saferl {ours:.1f} steps/s, network only {network:.1f} steps/s ({ours / network:.0%})")
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        profiler.enable()
        saferl_steps_per_s(data, steps, 512, hidden, Path(tmp) / "run")
        profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def main() -> dict:
    """Run the comparison and return the result dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (under a minute)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true",
                        help="instead: saferl and the network step back to back (1000 steps, batch 512), then cProfile "
                             "of saferl's loop (where a step goes)")
    parser.add_argument("--compiled-ceiling", action="store_true",
                        help="also time the network-only step under torch.compile (about 20 s to compile per batch size)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps, repeats = (200, 3) if args.quick else (2000, 3)
    hidden = [256, 256]
    data = build_point_robot_dataset(1000, seed=0)
    safe = select_bc_safe(data, 10.0)
    if args.profile:
        profile(data, safe, hidden)
        return {}
    rows = []
    for batch_size in (512, 256):
        ours, theirs, network, compiled = [], [], [], []
        for _ in range(repeats):  # interleaved, median: robust to a passing load on the machine
            with tempfile.TemporaryDirectory() as tmp:
                ours.append(saferl_steps_per_s(data, steps, batch_size, hidden, Path(tmp) / "run"))
            theirs.append(osrl_style_steps_per_s(safe, steps, batch_size, hidden))
            network.append(network_only_steps_per_s(safe, steps, batch_size, hidden))
            if args.compiled_ceiling:
                compiled.append(network_only_steps_per_s(safe, steps, batch_size, hidden, compiled=True))
        ours_s, theirs_s, network_s = (float(np.median(rates)) for rates in (ours, theirs, network))
        rows.append({"batch_size": batch_size, "saferl_steps_per_s": round(ours_s, 1),
                     "osrl_style_steps_per_s": round(theirs_s, 1), "speedup": round(ours_s / theirs_s, 2),
                     "network_only_steps_per_s": round(network_s, 1), "ceiling": round(network_s / theirs_s, 2)})
        if compiled:
            compiled_s = float(np.median(compiled))
            rows[-1].update(compiled_network_steps_per_s=round(compiled_s, 1),
                            compiled_ceiling=round(compiled_s / theirs_s, 2))
    print(f"BC-Safe on the point robot ({len(safe)} selected transitions), MLP {hidden}, {steps} steps, "
          f"median of {repeats} interleaved repeats, {args.threads} torch threads")
    print(f"{'batch':>6} {'saferl steps/s':>15} {'OSRL-style steps/s':>19} {'speed-up':>9} "
          f"{'network-only steps/s':>21} {'ceiling':>8}")
    for row in rows:
        print(f"{row['batch_size']:>6} {row['saferl_steps_per_s']:>15} {row['osrl_style_steps_per_s']:>19} "
              f"{row['speedup']:>9} {row['network_only_steps_per_s']:>21} {row['ceiling']:>8}")
        if "compiled_ceiling" in row:
            print(f"{'':>6} torch.compile'd network only: {row['compiled_network_steps_per_s']} steps/s, "
                  f"ceiling {row['compiled_ceiling']}")
    result = {
        "speedup_vs_per_sample_loader": rows[0]["speedup"],
        "speedup_batch_256": rows[1]["speedup"],
        "saferl_steps_per_s": rows[0]["saferl_steps_per_s"],
        "osrl_style_steps_per_s": rows[0]["osrl_style_steps_per_s"],
        "network_only_steps_per_s": rows[0]["network_only_steps_per_s"],
        "speedup_ceiling": rows[0]["ceiling"],
        **({"compiled_speedup_ceiling": rows[0]["compiled_ceiling"]} if args.compiled_ceiling else {}),
        "batch_size": rows[0]["batch_size"],
        "steps": steps,
        "quick": args.quick,
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
