"""One reward-cost table per task from finished run folders (mean +- std over seeds, at one kappa).

    python scripts/results_table.py runs/bullet_bc runs/bullet_fisor runs/bullet_prdc --kappa 10 \\
        --extra eval_metrics_reward_aware.json=reward-aware

Every ``NAME-seedS`` folder under the given folders (or the folders themselves) that holds
``final_metrics.json`` contributes one seed of the method ``ALGORITHM`` (read from its ``config.yaml``) on
its task; ``--extra FILE=LABEL`` adds the method ``ALGORITHM (LABEL)`` from another metrics file of the
same runs (e.g. a FISOR run re-evaluated with the other selection rule by ``saferl eval ... --name``).
Prints a markdown table: task, method, seeds, normalised reward and normalised cost at ``--kappa``
(mean +- std over seeds), the fraction of seeds whose mean normalised cost is <= 1, the episodic
violation rate and the checkpoint step. Nothing is hard-coded: every figure comes from the files.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

PRETTY = {"bc_all": "BC-All", "bc_safe": "BC-Safe", "bc_frontier": "BC-Frontier", "fisor": "FISOR",
          "prdc": "PRDC", "prdc_lag": "PRDC-Lag", "ogsrl": "OGSRL"}


def run_dirs(roots: list[Path]) -> list[Path]:
    """Run folders (holding final_metrics.json) under or at each root, sorted."""
    found: list[Path] = []
    for root in roots:
        if (root / "final_metrics.json").is_file():
            found.append(root)
        found += sorted(p.parent for p in root.glob("*/final_metrics.json"))
    return found


def rows_of(run: Path, metrics_file: str, label: str | None, kappa: float) -> dict[str, Any] | None:
    """One seed's figures at ``kappa`` from ``run/metrics_file`` (None when that file is absent)."""
    path = run / metrics_file
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    config = yaml.safe_load((run / "config.yaml").read_text())
    per_limit = {float(item["cost_limit"]): item for item in metrics["per_limit"]}
    if kappa not in per_limit:
        raise SystemExit(f"{path} has no figures at kappa={kappa:g} (it has {sorted(per_limit)})")
    method = PRETTY.get(config["algorithm"], config["algorithm"])
    if label:
        method = f"{method} ({label})"
    seed = re.search(r"-seed(\d+)$", run.name)
    return {
        "task": metrics["task"], "method": method, "seed": int(seed.group(1)) if seed else config.get("seed"),
        "reward": metrics["normalized_reward"], "cost": per_limit[kappa]["normalized_cost"],
        "violation": per_limit[kappa]["violation_rate"], "step": metrics.get("checkpoint_step"),
    }


def table(rows: list[dict[str, Any]], method_order: list[str]) -> str:
    """Markdown table of mean +- std over seeds per (task, method)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["task"], row["method"])].append(row)
    order = {m: i for i, m in enumerate(method_order)}
    lines = ["| task | method | seeds | normalised reward | normalised cost | safe seeds | violation rate | steps |",
             "|---|---|---|---|---|---|---|---|"]
    for (task, method), items in sorted(groups.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99), kv[0][1])):
        reward = np.array([r["reward"] for r in items])
        cost = np.array([r["cost"] for r in items])
        violation = np.mean([r["violation"] for r in items])
        steps = sorted({r["step"] for r in items})
        lines.append(
            f"| {task} | {method} | {len(items)} | {reward.mean():.3f} ± {reward.std():.3f} | "
            f"{cost.mean():.3f} ± {cost.std():.3f} | {int((cost <= 1).sum())}/{len(items)} | {violation:.2f} | "
            f"{'/'.join(str(s) for s in steps)} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, read the runs, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--kappa", type=float, default=10.0)
    parser.add_argument("--extra", action="append", default=[], help="FILE=LABEL: another metrics file of the runs")
    args = parser.parse_args()
    extras = [tuple(item.split("=", 1)) for item in args.extra]
    rows = []
    for run in run_dirs(args.roots):
        for file, label in [("final_metrics.json", None), *extras]:
            row = rows_of(run, file, label, args.kappa)
            if row is not None:
                rows.append(row)
    if not rows:
        raise SystemExit(f"no finished runs under {', '.join(map(str, args.roots))}")
    method_order = ["BC-All", "BC-Safe", "FISOR", "FISOR (reward-aware)", "PRDC-Lag", "OGSRL"]
    print(table(rows, method_order))


if __name__ == "__main__":
    main()
