"""Dataset builders: the PPO-Lagrangian learner, snapshots, resumable deterministic builds, committed policies.

Most tests run on the built-in point robot (no simulator, numpy-fast); the same checks run on Bullet's
BallRun when Bullet-Safety-Gym is installed, since Bullet is where reusing a world across episodes breaks
determinism and the chunked build must not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from saferl.datasets import SaferlDataError, get_task
from saferl.datasets.builders import (
    RECIPES,
    CostLimitSchedule,
    EpisodeSpec,
    PPOLagConfig,
    PPOLagrangian,
    Recipe,
    TrainingRun,
    behaviour_policy_path,
    build_dataset,
    collect_episodes,
    grid_filter,
    load_snapshots,
    plan_chunks,
    save_snapshots,
)
from saferl.datasets.builders import build as build_module
from saferl.datasets.builders.ppo_lagrangian import gae
from saferl.datasets.cli_support import data_build
from saferl.datasets.envs import simulator_available
from saferl.datasets.formats import read_dsrl
from saferl.datasets.formats.hdf5_common import DSRL_KEYS

BULLET = pytest.mark.skipif(not simulator_available("bullet"), reason="bullet-safety-gym is not installed")
TASKS = ["PointRobot", pytest.param("BallRun", marks=[BULLET, pytest.mark.simulator])]


def tiny_config(**overrides: object) -> PPOLagConfig:
    # 3 iterations of 4 x 200 steps: every iteration finishes episodes (T = 200 or 100) for the multiplier.
    settings = dict(total_steps=4 * 200 * 3, num_envs=4, rollout_steps=200, update_epochs=2, minibatch_size=200,
                    snapshot_fractions=(0.5, 1.0), cost_window=4, seed=0)
    settings.update(overrides)
    return PPOLagConfig(**settings)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def policy_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny trained policy file per task (3 iterations of PPO-Lagrangian, 3 snapshots)."""
    files = {}
    for task in ("PointRobot", "BallRun"):
        if task == "BallRun" and not simulator_available("bullet"):
            continue
        learner = PPOLagrangian(task, tiny_config())
        snapshots = learner.train()
        learner.close()
        path = tmp_path_factory.mktemp("policies") / f"{task}.safetensors"
        files[task] = save_snapshots(path, snapshots, {"task": task, "training_seconds": 1.0})
    return files


def tiny_recipe(task: str, **overrides: object) -> Recipe:
    settings = dict(action_noise=(0.0, 0.3), episodes_per_behaviour=2, chunk_episodes=3, collect_envs=2,
                    target_trajectories=6, cost_bins=6, reward_bins=5)
    settings.update(overrides)
    runs = (TrainingRun("rising", CostLimitSchedule.linear(0, 10), 100, seed=0),)
    return Recipe(task, runs, **settings)


def tiny_build(task: str, policy_file: Path, out: Path, seed: int = 0, **kwargs: object):
    return build_dataset(task, seed, recipe=tiny_recipe(task), policy_file=policy_file, output=out / "data.hdf5",
                         card_dir=out, show_progress=False, **kwargs)


# ---------------------------------------------------------------------------------------------- learner maths
def test_cost_limit_schedule_interpolates_and_checks() -> None:
    schedule = CostLimitSchedule(((0.0, 5.0), (0.5, 100.0), (1.0, 100.0)))
    assert schedule(0.0) == 5.0 and schedule(0.25) == pytest.approx(52.5) and schedule(0.9) == 100.0
    assert CostLimitSchedule.linear(100, 5)(1.0) == 5.0
    with pytest.raises(ValueError, match="increase"):
        CostLimitSchedule(((0.5, 1.0), (0.1, 2.0)))
    with pytest.raises(ValueError, match=">= 0"):
        CostLimitSchedule.linear(-1, 5)


def test_gae_by_hand() -> None:
    # One env, 3 steps; the episode truncates after step 1 (bootstrapped) and a new one starts.
    rewards = np.array([[1.0], [2.0], [3.0]])
    values = np.array([[0.5], [0.4], [0.3]])
    next_values = np.array([[0.4], [0.9], [0.2]])  # V(s_1), V(final state of episode 1), V(s_3)
    terminated = np.zeros((3, 1))
    ended = np.array([[0.0], [1.0], [0.0]])
    gamma, lam = 0.9, 0.8
    adv, ret = gae(rewards, values, next_values, terminated, ended, gamma, lam)
    d2 = 3.0 + gamma * 0.2 - 0.3
    d1 = 2.0 + gamma * 0.9 - 0.4
    d0 = 1.0 + gamma * 0.4 - 0.5
    np.testing.assert_allclose(adv[:, 0], [d0 + gamma * lam * d1, d1, d2])
    np.testing.assert_allclose(ret, adv + values)
    # A true termination drops the bootstrap.
    adv_t, _ = gae(rewards, values, next_values, np.array([[0.0], [1.0], [0.0]]), ended, gamma, lam)
    assert adv_t[1, 0] == pytest.approx(2.0 - 0.4)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="num_envs"):
        PPOLagConfig(num_envs=0)
    with pytest.raises(ValueError, match="lagrange"):
        PPOLagConfig(lagrange_lr=-1.0)


# ---------------------------------------------------------------------------------------------- learner runs
@pytest.mark.parametrize("task", TASKS)
def test_multiplier_rises_when_the_limit_is_violated(task: str) -> None:
    learner = PPOLagrangian(task, tiny_config(cost_limits=CostLimitSchedule.linear(0.0, 0.0)))
    learner.train()
    learner.close()
    costs = [entry.episode_cost for entry in learner.history]
    lambdas = [entry.multiplier for entry in learner.history]
    assert costs[0] > 0, "the random start must pay some cost for this test to mean anything"
    assert lambdas[0] > 0 and all(b >= a for a, b in zip(lambdas, lambdas[1:])), lambdas
    # lambda_k = sum of eta * (J_c - 0): the update rule exactly.
    np.testing.assert_allclose(lambdas, np.cumsum([learner.config.lagrange_lr * c for c in costs]))


@pytest.mark.parametrize("task", TASKS)
def test_multiplier_falls_to_zero_under_a_loose_limit(task: str) -> None:
    learner = PPOLagrangian(task, tiny_config(cost_limits=CostLimitSchedule.linear(1e4, 1e4), lagrange_init=3.0,
                                              lagrange_lr=1.5e-4))
    learner.train()
    learner.close()
    lambdas = [entry.multiplier for entry in learner.history]
    assert lambdas[0] < 3.0 and all(b <= a for a, b in zip(lambdas, lambdas[1:]))
    assert lambdas[-1] == 0.0


def test_learner_is_deterministic_and_snapshots_match_the_model() -> None:
    runs = []
    for _ in range(2):
        learner = PPOLagrangian("PointRobot", tiny_config(seed=3))
        runs.append(learner.train())
        learner.close()
    assert len(runs[0]) == 3  # initial + one per snapshot fraction
    for a, b in zip(*runs):
        for wa, wb in zip(a.weights, b.weights):
            np.testing.assert_array_equal(wa, wb)
    final = runs[0][-1]
    assert final.stats["steps"] == 4 * 200 * 3 and final.stats["total_steps"] == 4 * 200 * 3
    # The numpy snapshot computes the torch model's mean action.
    import torch

    obs = np.random.default_rng(0).normal(size=(5, 2))
    with torch.no_grad():
        normalised = learner._normalise(obs)
        expected = learner.model.mean(torch.from_numpy(normalised)).numpy()
    np.testing.assert_allclose(final.mean_action(obs), expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(runs[0][0].weights[-1], final.weights[-1])  # it did learn something


def test_snapshot_file_round_trip(policy_files: dict[str, Path], tmp_path: Path) -> None:
    snapshots, meta = load_snapshots(policy_files["PointRobot"])
    assert meta["task"] == "PointRobot" and len(snapshots) == 3
    copy = save_snapshots(tmp_path / "copy.safetensors", snapshots, meta)
    again, meta_again = load_snapshots(copy)
    obs = np.random.default_rng(1).normal(size=(4, 2))
    for a, b in zip(snapshots, again):
        np.testing.assert_array_equal(a.act(obs), b.act(obs))
        assert a.stats == b.stats
    assert meta_again["training_seconds"] == 1.0
    actions = snapshots[-1].act(obs, noise=np.full((4, 2), 10.0))
    np.testing.assert_array_equal(actions, np.ones((4, 2)))  # clipped to the box


# ---------------------------------------------------------------------------------------------- collection
def test_collect_episodes_keeps_whole_trajectories_in_order(policy_files: dict[str, Path]) -> None:
    snapshots, _ = load_snapshots(policy_files["PointRobot"])
    spec = get_task("PointRobot")
    episodes = [EpisodeSpec(i % 3, 0.1 * i, seed=100 + i) for i in range(5)]
    data = collect_episodes(spec, snapshots, episodes, num_envs=2, noise_seed=7)
    assert data.num_trajectories == 5
    assert (data.trajectory_lengths() <= spec.episode_len).all()
    ends = data.episode_ends - 1
    assert (data.terminals[ends] | data.timeouts[ends]).all()
    np.testing.assert_array_equal(data.observations[1:][~(data.terminals | data.timeouts)[:-1]],
                                  data.next_observations[:-1][~(data.terminals | data.timeouts)[:-1]])
    alone = collect_episodes(spec, snapshots, episodes[:1], num_envs=1, noise_seed=7)
    np.testing.assert_array_equal(alone.observations, data.observations[: len(alone)])  # noise-free episode 0


def test_grid_filter_reaches_the_target_with_the_smallest_cap() -> None:
    rng = np.random.default_rng(0)
    costs, rewards = rng.integers(0, 40, 600).astype(float), rng.normal(100, 30, 600)
    recipe = tiny_recipe("PointRobot", target_trajectories=200, cost_bins=10, reward_bins=10)
    mask, cap = grid_filter(costs, rewards, recipe, seed=0)
    assert mask.sum() >= 200
    smaller, _ = grid_filter(costs, rewards, tiny_recipe("PointRobot", target_trajectories=1, cost_bins=10,
                                                         reward_bins=10), seed=0)
    assert smaller.sum() < mask.sum()
    from saferl.datasets.transforms import _density_keep

    below = _density_keep(costs, rewards, 10, 10, cap - 1, 0, np.random.default_rng(0))
    assert below.sum() < 200


# ---------------------------------------------------------------------------------------------- builds
@pytest.mark.parametrize("task", TASKS)
def test_tiny_build_writes_a_dsrl_file_card_and_figure(task: str, policy_files: dict[str, Path], tmp_path: Path) -> None:
    result = tiny_build(task, policy_files[task], tmp_path)
    data = read_dsrl(result.path)
    import h5py

    with h5py.File(result.path) as handle:
        assert set(DSRL_KEYS) <= set(handle.keys())
    card = yaml.safe_load(result.card_path.read_text())
    assert card["sha256"] == sha256(result.path)
    counts = card["counts"]
    assert counts["collected_trajectories"] == 3 * 2 * 2  # snapshots x noise levels x episodes
    assert counts["trajectories"] == data.num_trajectories <= counts["within_cost_cap"]
    assert counts["transitions"] == len(data)
    assert card["R_max"] == pytest.approx(data.trajectory_returns().max(), abs=1e-3)
    assert card["cost_return"]["max"] <= get_task(task).cost_max
    assert set(card["safe_fraction"]) == {"10", "20", "40"}
    assert card["packages"]["numpy"] == np.__version__
    assert result.figure_path.stat().st_size > 1000
    assert not result.path.with_name(f".{result.path.name}.work").exists()
    again = tiny_build(task, policy_files[task], tmp_path)
    assert again.reused and sha256(again.path) == card["sha256"]


@pytest.mark.parametrize("task", TASKS)
def test_interrupted_build_resumes_to_the_same_file(
    task: str, policy_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = tiny_build(task, policy_files[task], tmp_path / "whole")
    chunks = len(plan_chunks(tiny_recipe(task), 3, 0))
    real = build_module.collect_episodes
    calls = []

    def interrupt_third(*args: object, **kwargs: object):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(build_module, "collect_episodes", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        tiny_build(task, policy_files[task], tmp_path / "cut")
    work = tmp_path / "cut" / ".data.hdf5.work"
    assert len(list(work.glob("chunk_*.npz"))) == 2 and not (tmp_path / "cut" / "data.hdf5").exists()
    calls.clear()
    monkeypatch.setattr(build_module, "collect_episodes", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    resumed = tiny_build(task, policy_files[task], tmp_path / "cut")
    assert len(calls) == chunks - 2  # only the missing chunks ran
    assert sha256(resumed.path) == sha256(reference.path)


def test_builds_are_deterministic_by_seed(policy_files: dict[str, Path], tmp_path: Path) -> None:
    first = tiny_build("PointRobot", policy_files["PointRobot"], tmp_path / "a", seed=4)
    second = tiny_build("PointRobot", policy_files["PointRobot"], tmp_path / "b", seed=4)
    other = tiny_build("PointRobot", policy_files["PointRobot"], tmp_path / "c", seed=5)
    assert sha256(first.path) == sha256(second.path) != sha256(other.path)


def test_a_changed_plan_discards_stale_chunks(policy_files: dict[str, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = build_module.collect_episodes

    def fail_second(*args: object, _calls: list = [], **kwargs: object):
        _calls.append(1)
        if len(_calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(build_module, "collect_episodes", fail_second)
    with pytest.raises(KeyboardInterrupt):
        tiny_build("PointRobot", policy_files["PointRobot"], tmp_path, seed=0)
    monkeypatch.setattr(build_module, "collect_episodes", real)
    mixed = tiny_build("PointRobot", policy_files["PointRobot"], tmp_path, seed=1)
    clean = tiny_build("PointRobot", policy_files["PointRobot"], tmp_path / "clean", seed=1)
    assert sha256(mixed.path) == sha256(clean.path)


def test_build_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SaferlDataError, match="train_behaviour.py"):
        build_dataset("PointRobot", recipe=tiny_recipe("PointRobot"), policy_file=tmp_path / "none.safetensors",
                      output=tmp_path / "x.hdf5", card_dir=tmp_path, show_progress=False)
    with pytest.raises(SaferlDataError, match="no dataset recipe for 'PointGoal1'"):
        build_dataset("PointGoal1", output=tmp_path / "y.hdf5", card_dir=tmp_path)
    with pytest.raises(SaferlDataError):
        data_build("Metadrive-easysparse")


# ---------------------------------------------------------------------------------------------- committed files
@pytest.mark.parametrize("task", sorted(RECIPES))
def test_committed_behaviour_policies_are_small_and_fit_their_task(task: str) -> None:
    path = behaviour_policy_path(task)
    if not path.exists():
        pytest.skip(f"no committed behaviour policies for {task} yet")
    assert path.stat().st_size < 1_000_000
    snapshots, meta = load_snapshots(path)
    spec = get_task(task)
    assert meta["task"] == task and meta["training_seconds"] > 0
    assert {s.stats["run"] for s in snapshots} == {run.name for run in RECIPES[task].runs}
    assert all((s.obs_dim, s.act_dim) == (spec.obs_dim, spec.act_dim) for s in snapshots)


def test_behaviour_runs_in_parallel_match_serial(tmp_path: Path) -> None:
    """``jobs=2`` trains the recipe's runs in worker processes and saves exactly what ``jobs=1`` saves."""
    from saferl.datasets.builders import train_behaviour_policies

    small = dict(num_envs=4, rollout_steps=200, update_epochs=1, minibatch_size=200,
                 snapshot_fractions=(0.5, 1.0), cost_window=4)
    runs = (TrainingRun("rising", CostLimitSchedule.linear(0, 10), 1600, seed=1),
            TrainingRun("falling", CostLimitSchedule.linear(10, 0), 1600, seed=2))
    recipe = Recipe("PointRobot", runs, ppo=small)
    serial, meta_serial = load_snapshots(train_behaviour_policies("PointRobot", recipe=recipe,
                                                                  output=tmp_path / "serial.safetensors"))
    parallel, meta_parallel = load_snapshots(train_behaviour_policies("PointRobot", recipe=recipe, jobs=2,
                                                                      output=tmp_path / "parallel.safetensors"))
    names = [s.stats["run"] for s in parallel]
    assert names == sorted(names, key=["rising", "falling"].index) and set(names) == {"rising", "falling"}
    assert [s.stats for s in parallel] == [s.stats for s in serial]
    for a, b in zip(serial, parallel):
        for wa, wb in zip(a.weights + a.biases + [a.log_std], b.weights + b.biases + [b.log_std]):
            np.testing.assert_array_equal(wa, wb)
    assert [r["name"] for r in meta_parallel["runs"]] == ["rising", "falling"]
    with pytest.raises(ValueError, match="jobs"):
        train_behaviour_policies("PointRobot", recipe=recipe, jobs=0, output=tmp_path / "x.safetensors")
