"""The trainer: exact resume after SIGKILL, the contract every algorithm meets, every shipped config."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from saferl import Agent
from saferl.checkpoint import load_checkpoint
from saferl.config import algorithm_registry, load_config
from saferl.datasets import TransitionDataset, get_task
from saferl.datasets.envs import simulator_available
from saferl.datasets.loading import dataset_path
from saferl.datasets.point_robot_data import build_point_robot_dataset
from saferl.trainer import RunFolderError, Trainer, _LogWindow

REPO = Path(__file__).resolve().parents[2]
TINY = ["algo.batch_size=32", "eval_episodes=4", "eval_episodes_during=2", "progress=false", "torch_threads=1"]


def loss_columns(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return [{k: v for k, v in row.items() if k != "steps_per_s"} for row in csv.DictReader(handle)]


def test_sigkill_and_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    common = ["algorithm=bc_safe", "steps=6000", "checkpoint_every=250", "log_every=250", "eval_every=2000",
              "algo.hidden=[32,32]", *TINY]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "saferl.cli", "train"]
    reference = subprocess.run(cmd + common + [f"out_dir={tmp_path / 'ref'}"], env=env, capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(cmd + common + [f"out_dir={killed_dir}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed_dir / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline:
        if checkpoint.exists() and load_checkpoint(checkpoint)["step"] >= 1000:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(checkpoint)["step"]
    assert proc.returncode == -signal.SIGKILL
    assert 1000 <= killed_at < 6000, "the run must be killed mid-way for this test to mean anything"
    assert not (killed_dir / "final_metrics.json").exists()

    resumed = subprocess.run(cmd + common + [f"out_dir={killed_dir}", "--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    ref_final = json.loads((tmp_path / "ref" / "final_metrics.json").read_text())
    res_final = json.loads((killed_dir / "final_metrics.json").read_text())
    assert res_final == ref_final
    assert loss_columns(killed_dir / "metrics.csv") == loss_columns(tmp_path / "ref" / "metrics.csv")
    ref_state = load_checkpoint(tmp_path / "ref" / "checkpoint.pt")["algorithm"]["modules"]
    res_state = load_checkpoint(checkpoint)["algorithm"]["modules"]
    for name, tensor in ref_state.items():
        assert torch.equal(tensor, res_state[name]), name


def test_existing_run_is_never_overwritten(tmp_path: Path) -> None:
    config = load_config(None, ["steps=4", "eval_every=0", f"out_dir={tmp_path}", *TINY])
    Trainer(config).run()
    with pytest.raises(RunFolderError, match="already holds a run"):
        Trainer(config).run()


@pytest.mark.parametrize("name", sorted(algorithm_registry()))
def test_algorithm_contract(name: str, tmp_path: Path) -> None:
    """Every registered algorithm: fit, act, save, load, and resume equals an uninterrupted run."""
    data = build_point_robot_dataset(40, seed=0)
    base = dict(steps=12, eval_every=0, log_every=4, checkpoint_every=6, eval_episodes=2,
                progress=False, torch_threads=1, algo={"batch_size": 32})
    agent = Agent(name, out_dir=str(tmp_path / "full"), **base)
    result = agent.fit(data)
    assert result is not None and np.isfinite(result.mean_return)
    obs = data.observations[:5]
    torch.manual_seed(123)  # stochastic policies (e.g. diffusion) draw from torch's RNG
    actions = agent.act(obs)
    assert actions.shape == (5, data.act_dim) and np.all(np.abs(actions) <= 1.0 + 1e-6)

    saved = agent.save(tmp_path / "copy")
    loaded = Agent.load(saved)
    torch.manual_seed(123)
    np.testing.assert_allclose(loaded.act(obs), actions, rtol=1e-5, atol=1e-6)

    # Resume: pause at step 5 (between checkpoints), continue to 12; identical to the uninterrupted run.
    first = Agent(name, out_dir=str(tmp_path / "split"), **base)
    assert first.fit(data, until=5) is None
    second = Agent(name, out_dir=str(tmp_path / "split"), **base)
    second.fit(data, resume=True)
    full_state = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["algorithm"]["modules"]
    split_state = load_checkpoint(tmp_path / "split" / "checkpoint.pt")["algorithm"]["modules"]
    for key, tensor in full_state.items():
        assert torch.equal(tensor, split_state[key]), f"{name}: {key} differs after resume"


def test_log_window_averages_tensors_exactly_as_floats_read_every_step() -> None:
    """Reading loss tensors in batches (and across a checkpoint) gives the very floats of per-step reads."""
    values = torch.rand(1300, generator=torch.Generator().manual_seed(0))
    batched, per_step = _LogWindow(), _LogWindow()
    for step, value in enumerate(values):
        extra = {"lambda": step * 0.1} if step % 3 == 0 else {}  # a float metric reported on some steps only
        batched.add({"loss": value.clone(), **extra})
        per_step.add({"loss": float(value), **extra})
        if step == 700:
            batched = _LogWindow.from_state(batched.state())
    assert batched.means() == per_step.means()
    assert batched.counts == {"loss": 1300, "lambda": 434}


SHIPPED = sorted((REPO / "configs").rglob("*.yaml"))


def stand_in_dataset(obs_dim: int, act_dim: int, n: int = 600) -> TransitionDataset:
    """Random transitions with a task's shapes, for configs whose real dataset is not cached here."""
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    timeouts = np.zeros(n, bool)
    timeouts[49::50] = True
    costs = (rng.random(n) < 0.05).astype(np.float32)  # a few costly steps: every trajectory stays under kappa 10
    return TransitionDataset(obs, rng.uniform(-1, 1, (n, act_dim)), rng.normal(size=n), costs,
                             rng.normal(size=(n, obs_dim)), np.zeros(n), timeouts)


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(REPO / "configs")) for p in SHIPPED])
def test_shipped_config_smoke(path: Path, tmp_path: Path) -> None:
    """Every shipped config trains and evaluates in its real environment (stand-in data if not cached)."""
    config = load_config(path, ["steps=10", "eval_every=0", "eval_episodes=2", f"out_dir={tmp_path}", *TINY])
    task = get_task(config.task)
    if not simulator_available(task.simulator):
        pytest.skip(f"{task.name} needs the {task.simulator} simulator, not installed here")
    dataset = None
    if task.simulator != "builtin" and config.dataset is None and not dataset_path(task).exists():
        dataset = stand_in_dataset(task.obs_dim, task.act_dim)
    result = Trainer(config, dataset).run()
    assert result.steps == 10 and (tmp_path / "final_metrics.json").exists()
