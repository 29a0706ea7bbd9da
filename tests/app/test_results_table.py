"""scripts/results_table.py: mean +- std over seeds per (task, method), from the run folders' files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "results_table.py"


def load_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def fake_run(root: Path, name: str, algorithm: str, reward: float, cost: float, extra: dict | None = None) -> None:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"algorithm: {algorithm}\nseed: 0\n")
    metrics = {"task": "BallRun", "normalized_reward": reward, "checkpoint_step": 100,
               "per_limit": [{"cost_limit": 10.0, "normalized_cost": cost, "violation_rate": float(cost > 1)}]}
    (run / "final_metrics.json").write_text(json.dumps(metrics))
    if extra is not None:
        (run / "eval_metrics_other.json").write_text(json.dumps({**metrics, **extra}))


def test_table_means_and_stds_over_seeds(tmp_path: Path) -> None:
    module = load_script()
    fake_run(tmp_path, "bc_safe_ballrun-seed0", "bc_safe", 0.2, 0.5)
    fake_run(tmp_path, "bc_safe_ballrun-seed1", "bc_safe", 0.4, 1.5)
    fake_run(tmp_path, "fisor_ballrun-seed0", "fisor", 0.1, 0.0, extra={"normalized_reward": 0.3})
    rows = []
    for run in module.run_dirs([tmp_path]):
        for file, label in [("final_metrics.json", None), ("eval_metrics_other.json", "other")]:
            row = module.rows_of(run, file, label, 10.0)
            if row is not None:
                rows.append(row)
    text = module.table(rows, ["BC-Safe", "FISOR", "FISOR (other)"])
    lines = text.splitlines()[2:]
    assert lines[0].startswith("| BallRun | BC-Safe | 2 | 0.300 ± 0.100 | 1.000 ± 0.500 | 1/2 | 0.50 | 100 |")
    assert lines[1].startswith("| BallRun | FISOR | 1 | 0.100 ± 0.000 |")
    assert lines[2].startswith("| BallRun | FISOR (other) | 1 | 0.300 ± 0.000 |")


def test_missing_kappa_is_an_error(tmp_path: Path) -> None:
    module = load_script()
    fake_run(tmp_path, "x-seed0", "bc_safe", 0.2, 0.5)
    with pytest.raises(SystemExit, match="kappa=20"):
        module.rows_of(tmp_path / "x-seed0", "final_metrics.json", None, 20.0)
