"""Dataset transforms on tiny datasets whose trajectory returns are chosen by hand.

Each trajectory ``i`` of :func:`make_dataset` has all its reward and cost return on its first step and
observations ``[i, step]``, so the trajectories a transform keeps can be read off the observations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from saferl.datasets.transforms import (
    add_observation_noise,
    density_filter,
    dsrl_preprocess,
    epsilon_filter,
    fit_pareto_frontier,
    inject_outliers,
    inpaint,
    pareto_optimal_mask,
    select_bc_all,
    select_bc_frontier,
    select_bc_safe,
    train_test_split,
)
from saferl.datasets.types import TransitionDataset


def make_dataset(cost_returns: list[float], reward_returns: list[float], length: int = 4) -> TransitionDataset:
    """One trajectory per (cost return, reward return), each ``length`` steps, ending in a timeout."""
    n = len(cost_returns)
    traj = np.repeat(np.arange(n), length)
    step = np.tile(np.arange(length), n)
    rewards = np.zeros(n * length)
    costs = np.zeros(n * length)
    rewards[step == 0] = reward_returns
    costs[step == 0] = cost_returns
    return TransitionDataset(
        observations=np.stack([traj, step], axis=1),
        actions=np.stack([traj, -step], axis=1),
        rewards=rewards,
        costs=costs,
        next_observations=np.stack([traj, step + 1], axis=1),
        terminals=np.zeros(n * length, dtype=bool),
        timeouts=step == length - 1,
    )


def chain_dataset(num_traj: int = 20, length: int = 50, seed: int = 0) -> TransitionDataset:
    """Random state chains: ``next_observations[t] == observations[t + 1]`` inside each trajectory."""
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(num_traj, length + 1, 3)) * np.array([1.0, 5.0, 0.1]) + np.array([2.0, -3.0, 0.0])
    n = num_traj * length
    return TransitionDataset(
        observations=states[:, :-1].reshape(n, 3),
        actions=rng.normal(size=(n, 2)),
        rewards=rng.normal(size=n),
        costs=rng.integers(0, 2, size=n),
        next_observations=states[:, 1:].reshape(n, 3),
        terminals=np.zeros(n, dtype=bool),
        timeouts=np.tile(np.arange(length) == length - 1, num_traj),
    )


def kept(dataset: TransitionDataset) -> list[int]:
    """Ids of the trajectories of a :func:`make_dataset` dataset, in order."""
    return dataset.observations[dataset.episode_starts, 0].astype(int).tolist()


def snapshot(dataset: TransitionDataset) -> dict[str, np.ndarray]:
    return {name: array.copy() for name, array in dataset.arrays().items()}


def assert_unchanged(dataset: TransitionDataset, before: dict[str, np.ndarray]) -> None:
    for name, array in dataset.arrays().items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)


# ---------------------------------------------------------------------------------------------- split
def test_train_test_split_partitions_whole_trajectories() -> None:
    data = make_dataset([0.0] * 10, list(range(10)))
    train, test = train_test_split(data, 0.3, seed=3)
    assert len(kept(test)) == 3 and len(kept(train)) == 7
    assert sorted(kept(train) + kept(test)) == list(range(10))
    assert kept(train) == sorted(kept(train)) and kept(test) == sorted(kept(test))
    assert (train.trajectory_lengths() == 4).all() and (test.trajectory_lengths() == 4).all()
    np.testing.assert_array_equal(test.trajectory_returns(), np.array(kept(test), dtype=float))


def test_train_test_split_is_deterministic_by_seed() -> None:
    data = make_dataset([0.0] * 10, list(range(10)))
    assert kept(train_test_split(data, 0.3, 5)[1]) == kept(train_test_split(data, 0.3, 5)[1])
    assert kept(train_test_split(data, 0.3, np.random.default_rng(5))[1]) == kept(train_test_split(data, 0.3, 5)[1])
    assert len({tuple(kept(train_test_split(data, 0.3, s)[1])) for s in range(6)}) > 1


@pytest.mark.parametrize("fraction", [0.0, 1.0, 0.04, 0.96, float("nan")])
def test_train_test_split_rejects_fractions_that_leave_a_part_empty(fraction: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(make_dataset([0.0] * 10, [1.0] * 10), fraction, seed=0)


def test_seed_must_be_an_int_or_generator() -> None:
    with pytest.raises(TypeError, match="seed"):
        train_test_split(make_dataset([0.0] * 4, [1.0] * 4), 0.5, seed="0")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- BC selections
def test_select_bc_all_keeps_everything() -> None:
    data = make_dataset([0.0, 50.0, 3.0], [1.0, 2.0, 3.0])
    selected = select_bc_all(data)
    assert kept(selected) == [0, 1, 2]
    for name, array in data.arrays().items():
        np.testing.assert_array_equal(getattr(selected, name), array)


def test_select_bc_safe_keeps_cost_returns_within_the_limit() -> None:
    data = make_dataset([0.0, 5.0, 10.0, 10.5, 20.0], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert kept(select_bc_safe(data, 10.0)) == [0, 1, 2]
    assert kept(select_bc_safe(data, 4.0)) == [0]
    with pytest.raises(ValueError, match="smallest cost return is 5 > cost_limit=4"):
        select_bc_safe(make_dataset([5.0, 6.0], [1.0, 1.0]), 4.0)


# (C, R) points: Pareto set t0 (0, 10), t1 (10, 50), t2 (20, 60); returns span R_max - R_min = 60 - 5.
FRONTIER_COSTS = [0.0, 10.0, 20.0, 5.0, 15.0, 30.0, 20.0]
FRONTIER_REWARDS = [10.0, 50.0, 60.0, 5.0, 20.0, 58.0, 30.0]


def test_pareto_optimal_mask_marks_undominated_points_once() -> None:
    costs = FRONTIER_COSTS + [0.0, 10.0]  # duplicates of t0 and t1
    rewards = FRONTIER_REWARDS + [10.0, 50.0]
    np.testing.assert_array_equal(
        pareto_optimal_mask(np.array(costs), np.array(rewards)), [1, 1, 1, 0, 0, 0, 0, 0, 0]
    )


def test_fit_pareto_frontier_interpolates_or_fits_a_polynomial() -> None:
    costs, rewards = np.array(FRONTIER_COSTS), np.array(FRONTIER_REWARDS)
    piecewise = fit_pareto_frontier(costs, rewards)
    np.testing.assert_allclose(piecewise(np.array([0.0, 5.0, 15.0, 20.0, 30.0])), [10.0, 30.0, 55.0, 60.0, 60.0])
    # Least squares line through (0, 10), (10, 50), (20, 60): slope 500 / 200 = 2.5, intercept 40 - 25.
    line = fit_pareto_frontier(costs, rewards, degree=1)
    np.testing.assert_allclose(line(np.array([0.0, 5.0])), [15.0, 27.5])
    # Degree 5 drops to 2 with three points: the parabola -0.15 c^2 + 5.5 c + 10 through them.
    parabola = fit_pareto_frontier(costs, rewards, degree=5)
    np.testing.assert_allclose(parabola(np.array([5.0, 30.0])), [33.75, 40.0])


def test_select_bc_frontier_keeps_trajectories_within_a_fifth_of_the_return_span() -> None:
    data = make_dataset(FRONTIER_COSTS, FRONTIER_REWARDS)
    # Half-width (60 - 5) / 5 = 11; distances to the piecewise frontier: 0, 0, 0, 25, 35, 2, 30.
    assert kept(select_bc_frontier(data)) == [0, 1, 2, 5]
    # Given R_max/R_min: half-width (60 + 65) / 5 = 25 includes t3 (distance 25, edge included).
    assert kept(select_bc_frontier(data, reward_max=60.0, reward_min=-65.0)) == [0, 1, 2, 3, 5]
    # Distances to the line 15 + 2.5 c: 5, 10, 5, 22.5, 32.5, 32, 35.
    assert kept(select_bc_frontier(data, degree=1)) == [0, 1, 2]
    with pytest.raises(ValueError, match="reward_max"):
        select_bc_frontier(data, reward_max=0.0, reward_min=10.0)


# ---------------------------------------------------------------------------------------------- density filter
# cbins = rbins = 2 over C in [0, 10], R in [0, 100]: cells (0, 0) = {t0, t1, t2}, (1, 1) = {t3, t4, t5}
# (t3 on the top edge joins the last cell), (0, 1) = {t6}, (1, 0) = {t7}.
DENSITY_COSTS = [0.0, 1.0, 2.0, 10.0, 6.0, 7.0, 4.0, 9.0]
DENSITY_REWARDS = [0.0, 10.0, 20.0, 100.0, 60.0, 90.0, 90.0, 10.0]


def test_density_filter_drops_sparse_cells() -> None:
    data = make_dataset(DENSITY_COSTS, DENSITY_REWARDS)
    filtered = density_filter(data, cbins=2, rbins=2, max_npb=5, min_npb=1, seed=0)
    assert kept(filtered) == [0, 1, 2, 3, 4, 5]
    assert kept(density_filter(data, cbins=2, rbins=2, max_npb=5, min_npb=0, seed=0)) == list(range(8))
    with pytest.raises(ValueError, match="density_filter keeps none"):
        density_filter(data, cbins=2, rbins=2, max_npb=5, min_npb=3, seed=0)


def test_density_filter_subsamples_crowded_cells_by_seed() -> None:
    data = make_dataset(DENSITY_COSTS, DENSITY_REWARDS)
    selections = set()
    for seed in range(8):
        ids = kept(density_filter(data, cbins=2, rbins=2, max_npb=2, min_npb=1, seed=seed))
        assert ids == sorted(ids)
        assert len(set(ids) & {0, 1, 2}) == 2 and len(set(ids) & {3, 4, 5}) == 2 and len(ids) == 4
        assert ids == kept(density_filter(data, cbins=2, rbins=2, max_npb=2, min_npb=1, seed=seed))
        selections.add(tuple(ids))
    assert len(selections) > 1


def test_density_filter_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="cbins"):
        density_filter(make_dataset([0.0, 1.0], [0.0, 1.0]), cbins=0, seed=0)


# ---------------------------------------------------------------------------------------------- outliers
# With cost_max = 10 and reward_max = 100 the candidates (C >= 5 and R >= 50) are t2 and t3.
OUTLIER_COSTS = [0.0, 3.0, 6.0, 10.0, 8.0, 2.0]
OUTLIER_REWARDS = [10.0, 20.0, 60.0, 100.0, 30.0, 90.0]


def test_inject_outliers_relabels_risky_high_reward_trajectories() -> None:
    data = make_dataset(OUTLIER_COSTS, OUTLIER_REWARDS, length=6)
    before = snapshot(data)
    seen_cost_returns = set()
    for seed in range(10):
        out = inject_outliers(data, 0.34, cost_limit=5.0, seed=seed)  # max(int(6 * 0.34), 1) = 2 outliers
        np.testing.assert_array_equal(out.trajectory_returns(), [10.0, 20.0, 90.0, 150.0, 30.0, 90.0])
        new_costs = out.trajectory_cost_returns()
        np.testing.assert_array_equal(new_costs[[0, 1, 4, 5]], [0.0, 3.0, 8.0, 2.0])
        assert set(np.unique(out.costs[12:24])) <= {0.0, 1.0}
        assert set(new_costs[[2, 3]]) <= {0.0, 1.0, 2.0, 3.0, 4.0}
        seen_cost_returns.update(new_costs[[2, 3]].tolist())
        np.testing.assert_array_equal(out.observations, data.observations)
        rerun = inject_outliers(data, 0.34, cost_limit=5.0, seed=seed)
        np.testing.assert_array_equal(rerun.costs, out.costs)
    assert len(seen_cost_returns) > 1
    assert_unchanged(data, before)


def test_inject_outliers_counts_and_candidates() -> None:
    data = make_dataset(OUTLIER_COSTS, OUTLIER_REWARDS, length=6)
    one = inject_outliers(data, 0.1, cost_limit=5.0, seed=0)  # int(0.6) = 0, raised to 1
    changed = np.flatnonzero(one.trajectory_returns() != np.array(OUTLIER_REWARDS))
    assert changed.tolist() in ([2], [3])
    # Task constants twice as large: only t3 has C >= 10 and R >= 100.
    only_t3 = inject_outliers(data, 0.1, cost_limit=5.0, cost_max=20.0, reward_max=200.0, seed=0)
    assert np.flatnonzero(only_t3.trajectory_returns() != np.array(OUTLIER_REWARDS)).tolist() == [3]
    with pytest.raises(ValueError, match="asks for 3 outlier"):
        inject_outliers(data, 0.5, cost_limit=5.0, seed=0)
    with pytest.raises(ValueError, match="cost_limit must be >= 1"):
        inject_outliers(data, 0.1, cost_limit=0.5, seed=0)


# ---------------------------------------------------------------------------------------------- inpaint, epsilon
def test_inpaint_removes_trajectories_inside_the_boxes() -> None:
    # C spans [0, 100], R spans [0, 1000]: box (0, .5, .5, 1) is C in [0, 50] x R in [500, 1000].
    data = make_dataset([0.0, 50.0, 40.0, 60.0, 100.0, 10.0], [0.0, 500.0, 900.0, 900.0, 1000.0, 499.0])
    assert kept(inpaint(data, [(0.0, 0.5, 0.5, 1.0)])) == [0, 3, 4, 5]
    assert kept(inpaint(data, [(0.0, 0.5, 0.5, 1.0), (0.9, 1.0, 0.9, 1.0)])) == [0, 3, 5]
    # Bounds given: C in [0, 200] x R in [0, 2000] makes the same box C in [0, 100] x R in [1000, 2000].
    assert kept(inpaint(data, [(0.0, 0.5, 0.5, 1.0)], cost_bounds=(0, 200), reward_bounds=(0, 2000))) == [0, 1, 2, 3, 5]
    with pytest.raises(ValueError, match="lo <= hi"):
        inpaint(data, [(0.5, 0.0, 0.0, 1.0)])
    with pytest.raises(ValueError, match="inpaint_ranges"):
        inpaint(data, [(0.0, 0.5)])


# cost_limit 10: safe t0 (0, 100), t1 (5, 95), t2 (10, 80); unsafe t3 (20, 200), t4 (30, 190), t5 (15, 150).
EPSILON_COSTS = [0.0, 5.0, 10.0, 20.0, 30.0, 15.0]
EPSILON_REWARDS = [100.0, 95.0, 80.0, 200.0, 190.0, 150.0]


def test_epsilon_filter_removes_near_best_returns_on_one_side() -> None:
    data = make_dataset(EPSILON_COSTS, EPSILON_REWARDS)
    assert kept(epsilon_filter(data, 10.0, cost_limit=10.0)) == [2, 3, 4, 5]  # safe with R >= 90
    assert kept(epsilon_filter(data, -15.0, cost_limit=10.0)) == [0, 1, 2, 5]  # unsafe with R >= 185
    assert kept(epsilon_filter(data, 20.0, cost_limit=10.0)) == [3, 4, 5]  # R >= 80: t2 on the edge goes
    assert kept(epsilon_filter(data, 0.0, cost_limit=10.0)) == list(range(6))
    with pytest.raises(ValueError, match="needs safe"):
        epsilon_filter(data, 10.0, cost_limit=-1.0)
    with pytest.raises(ValueError, match="needs unsafe"):
        epsilon_filter(data, -10.0, cost_limit=30.0)


# ---------------------------------------------------------------------------------------------- noise
def test_observation_noise_statistics_and_consistent_chains() -> None:
    data = chain_dataset()
    before = snapshot(data)
    noisy = add_observation_noise(data, 0.2, seed=0)
    sigma = 0.2 * data.observations.astype(np.float64).std()
    noise = noisy.observations.astype(np.float64) - data.observations
    assert abs(noise.mean()) < 4 * sigma / np.sqrt(noise.size)
    assert abs(noise.std() / sigma - 1.0) < 0.1
    # Every dimension gets the same scalar sigma (as in DSRL), not its own scale.
    np.testing.assert_allclose(noise.std(axis=0) / sigma, 1.0, atol=0.15)
    inner = np.flatnonzero(~data.timeouts)
    np.testing.assert_array_equal(noisy.next_observations[inner], noisy.observations[inner + 1])
    last = np.flatnonzero(data.timeouts)
    last_noise = noisy.next_observations[last].astype(np.float64) - data.next_observations[last]
    assert np.all(np.abs(last_noise) > 0)
    for name in ("actions", "rewards", "costs", "terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(noisy, name), getattr(data, name))
    np.testing.assert_array_equal(add_observation_noise(data, 0.2, seed=0).observations, noisy.observations)
    assert not np.array_equal(add_observation_noise(data, 0.2, seed=1).observations, noisy.observations)
    np.testing.assert_array_equal(add_observation_noise(data, 0.0, seed=0).observations, data.observations)
    assert_unchanged(data, before)


def test_observation_noise_draws_apart_where_the_chain_is_broken() -> None:
    data = chain_dataset(num_traj=2, length=200)
    broken = data.replace(next_observations=data.next_observations + 1.0)
    noisy = add_observation_noise(broken, 0.5, seed=0)
    next_noise = noisy.next_observations[:-1].astype(np.float64) - broken.next_observations[:-1]
    obs_noise = noisy.observations[1:].astype(np.float64) - broken.observations[1:]
    assert abs(np.corrcoef(next_noise.ravel(), obs_noise.ravel())[0, 1]) < 0.1
    with pytest.raises(ValueError, match="noise_scale"):
        add_observation_noise(data, -0.1, seed=0)


# ---------------------------------------------------------------------------------------------- composed
# C spans [0, 10], R spans [10, 100]. The density filter (2 x 2 cells of 5 x 45, min_npb 1) drops only
# t6, alone in cell (0, 1). Outliers: 30 % of 7 -> 2, the candidates (C >= 5, R >= 50) are t3 and t7,
# cost_limit 1 gives them cost return 0: t3 -> (0, 150), t7 -> (0, 105). The box (0, .5, .3, 2) is
# C in [0, 5] x R in [37, 190]: it holds t3 and t7 (kept as outliers) and t4 (removed). Epsilon -15:
# unsafe kept t1 (2, 30), t2 (8, 40), t5 (6, 20), best 40, removes R >= 25: t1, t2. Left: t0, t3, t5, t7.
COMPOSED_COSTS = [0.0, 2.0, 8.0, 10.0, 4.0, 6.0, 1.0, 9.0]
COMPOSED_REWARDS = [10.0, 30.0, 40.0, 100.0, 40.0, 20.0, 90.0, 70.0]
COMPOSED_OPTIONS = dict(
    cost_limit=1.0, outliers_percent=0.3, inpaint_ranges=[(0.0, 0.5, 0.3, 2.0)], epsilon=-15.0,
    density=0.5, cbins=2, rbins=2, max_npb=10, min_npb=1,
)


def test_dsrl_preprocess_applies_the_steps_in_dsrl_order() -> None:
    data = make_dataset(COMPOSED_COSTS, COMPOSED_REWARDS)
    before = snapshot(data)
    out = dsrl_preprocess(data, **COMPOSED_OPTIONS, seed=0)
    assert kept(out) == [0, 3, 5, 7]
    np.testing.assert_array_equal(out.trajectory_cost_returns(), [0.0, 0.0, 6.0, 0.0])
    np.testing.assert_array_equal(out.trajectory_returns(), [10.0, 150.0, 20.0, 105.0])
    assert_unchanged(data, before)
    # Standalone inpainting with the same bounds does remove the outliers.
    injected = inject_outliers(data, 0.25, cost_limit=1.0, seed=0)
    # (t6 at (1, 90) is no candidate, so it goes with them and t4.)
    box = [(0.0, 0.5, 0.3, 2.0)]
    assert kept(inpaint(injected, box, cost_bounds=(0, 10), reward_bounds=(10, 100))) == [0, 1, 2, 5]


def test_dsrl_preprocess_noise_and_determinism() -> None:
    data = make_dataset(COMPOSED_COSTS, COMPOSED_REWARDS)
    clean = dsrl_preprocess(data, **COMPOSED_OPTIONS, seed=4)
    noisy = dsrl_preprocess(data, **COMPOSED_OPTIONS, noise_scale=0.1, seed=4)
    np.testing.assert_array_equal(noisy.rewards, clean.rewards)
    assert not np.array_equal(noisy.observations, clean.observations)
    inner = np.flatnonzero(~noisy.timeouts)
    np.testing.assert_array_equal(noisy.next_observations[inner], noisy.observations[inner + 1])
    again = dsrl_preprocess(data, **COMPOSED_OPTIONS, noise_scale=0.1, seed=4)
    for name, array in noisy.arrays().items():
        np.testing.assert_array_equal(getattr(again, name), array)


def test_dsrl_preprocess_defaults_change_nothing_and_options_are_checked() -> None:
    data = make_dataset(COMPOSED_COSTS, COMPOSED_REWARDS)
    out = dsrl_preprocess(data)
    for name, array in data.arrays().items():
        np.testing.assert_array_equal(getattr(out, name), array)
    with pytest.raises(ValueError, match="pass cost_limit"):
        dsrl_preprocess(data, epsilon=1.0)
    with pytest.raises(ValueError, match="density"):
        dsrl_preprocess(data, density=1.5)


def test_no_transform_writes_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = make_dataset(COMPOSED_COSTS, COMPOSED_REWARDS)
    dsrl_preprocess(data, **COMPOSED_OPTIONS, noise_scale=0.1, seed=0)
    train_test_split(data, 0.5, seed=0)
    select_bc_safe(data, 5.0)
    select_bc_frontier(data)
    density_filter(data, cbins=2, rbins=2, max_npb=10, min_npb=1, seed=0)
    inject_outliers(data, 0.25, cost_limit=1.0, seed=0)
    inpaint(data, [(0.0, 0.5, 0.3, 2.0)])
    epsilon_filter(data, -15.0, cost_limit=1.0)
    add_observation_noise(data, 0.1, seed=0)
    assert list(tmp_path.iterdir()) == []
