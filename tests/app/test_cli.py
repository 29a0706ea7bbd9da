"""The saferl command line as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from saferl.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_data_list_has_every_task(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "data", "list")
    lines = out.strip().splitlines()[1:]
    assert code == 0 and len(lines) == 60  # 38 DSRL, 20 D4RL, PointRobot, ToyDosing
    assert any(line.startswith("ToyDosing") and "built on first use" in line for line in lines)
    assert any(line.startswith("Metadrive-easysparse") and "unavailable" in line for line in lines)
    assert any(line.startswith("PointRobot") and "built on first use" in line for line in lines)


def test_data_info_of_the_builtin_task(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "data", "info", "PointRobot")
    assert code == 0
    assert "trajectories:  1000" in out
    assert "safe at   10:" in out and "safe at   40:" in out


@pytest.mark.parametrize(
    "content, message",
    [
        (b"this is not an hdf5 file at all", "HDF5"),
        (None, "neither a DSRL dataset"),
    ],
)
def test_data_info_bad_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.hdf5"
    if content is not None:
        path.write_bytes(content)
    else:
        with h5py.File(path, "w") as f:
            f["observations"] = np.zeros((3, 2), np.float32)
    code, out, err = run(capsys, "data", "info", str(path))
    assert code == 2 and out == ""
    assert err.startswith("saferl: error:") and len(err.strip().splitlines()) == 1
    assert message.lower() in err.lower()


def test_unknown_task_and_unknown_key_fail_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "data", "info", "CarCirle")
    assert code == 2 and "did you mean CarCircle" in err
    code, _, err = run(capsys, "train", "stepz=3")
    assert code == 2 and "did you mean 'steps'" in err


def test_train_eval_report_round(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "run"
    code, out, _ = run(capsys, "train", "configs/point_robot/bc_safe.yaml", "steps=30", "eval_every=0",
                       "eval_episodes=4", "progress=false", f"out_dir={out_dir}")
    assert code == 0 and "normalized_cost" in out
    assert {"checkpoint.pt", "config.yaml", "metrics.csv", "final_metrics.json", "rollouts.png"} <= {p.name for p in out_dir.iterdir()}
    code, out, _ = run(capsys, "eval", str(out_dir), "--episodes", "5", "--cost-limits", "10,20")
    assert code == 0 and "certificate kappa=10" in out
    metrics = json.loads((out_dir / "eval_metrics.json").read_text())
    assert metrics["episodes"] == 5 and [m["cost_limit"] for m in metrics["per_limit"]] == [10.0, 20.0]
    assert len(metrics["certificates"]) == 2
    code, out, _ = run(capsys, "report", str(out_dir), "--out", str(tmp_path / "rep"))
    assert code == 0 and "bc_safe" in out
    assert (tmp_path / "rep" / "report.csv").read_text().startswith("run,variant,algorithm,task")


def test_eval_act_time_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "fisor"
    code, _, _ = run(capsys, "train", "configs/point_robot/fisor.yaml", "steps=4", "eval_every=0", "eval_episodes=2",
                     "progress=false", "algo.batch_size=32", "algo.actor_batch_size=32", "algo.critic_batch_size=32",
                     "algo.ema_warmup=1", f"out_dir={out_dir}")
    assert code == 0
    code, out, _ = run(capsys, "eval", str(out_dir), "algo.selection=reward_aware", "--name", "reward_aware",
                       "--episodes", "2")
    assert code == 0
    metrics = json.loads((out_dir / "eval_metrics_reward_aware.json").read_text())
    assert metrics["act_overrides"] == ["algo.selection=reward_aware"] and metrics["episodes"] == 2
    assert not (out_dir / "eval_metrics.json").exists()
    # a field that shapes training is refused, naming the fields that may change
    code, _, err = run(capsys, "eval", str(out_dir), "algo.critic_lr=0.1")
    assert code == 2 and "cannot be changed at evaluation" in err and "algo.selection" in err
    code, _, err = run(capsys, "eval", str(out_dir), "algo.selection=bogus")
    assert code == 2 and "algo.selection" in err
    code, _, err = run(capsys, "eval", str(out_dir), "algo.selection=safest", "--name", "../x")
    assert code == 2 and "--name" in err


def test_help_shows_field_docs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out, _ = capsys.readouterr()
    assert "Gradient steps." in out and "cost_limit" in out
    code, out, _ = run(capsys, "config", "bc_safe")
    assert code == 0 and "Adam learning rate" in out
