"""Dataset nearest-neighbour index: every backend against float64 brute force, the k-th neighbour,
the candidates' certificate and fallback, isolation between indexes, bad input, the GPU path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saferl.constraints.neighbors import (
    BACKENDS,
    EXACT_BACKENDS,
    DatasetNeighborIndex,
    Neighbors,
    default_num_cells,
    make_keys,
)

BETA = 2.0
EXACT = ("candidates",) + EXACT_BACKENDS


def trajectories(n: int, state_dim: int, action_dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy spiral random walks from one reset state (overlapping near the start), z-normalised states,
    state-dependent actions in [-1, 1]."""
    rng = np.random.default_rng(seed)
    horizon = 100
    skew = rng.normal(size=(state_dim, state_dim))
    drift = (skew - skew.T) / np.sqrt(state_dim) - 0.05 * np.eye(state_dim)
    policy = rng.normal(size=(state_dim, action_dim))
    state = 1.0 + 0.1 * rng.normal(size=(n // horizon, state_dim))
    states, actions = [], []
    for _ in range(horizon):
        state = state + 0.1 * state @ drift.T + 0.1 * rng.normal(size=state.shape)
        states.append(state)
        actions.append(np.clip(np.tanh(state @ policy) + 0.1 * rng.normal(size=(len(state), action_dim)), -1, 1))
    s = np.stack(states, 1).reshape(-1, state_dim)
    s = (s - s.mean(0)) / s.std(0)
    return s.astype(np.float32), np.stack(actions, 1).reshape(-1, action_dim).astype(np.float32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return trajectories(1500, 6, 2, seed=0)


@pytest.fixture(scope="module")
def queries(data: tuple[np.ndarray, np.ndarray]) -> dict[str, torch.Tensor]:
    """64 dataset rows with near actions (a_i + 0.05 noise) and far ones (uniform on [-1, 1])."""
    _, actions = data
    rng = np.random.default_rng(1)
    rows = rng.integers(0, len(actions), 64)
    near = np.clip(actions[rows] + 0.05 * rng.normal(size=(64, actions.shape[1])), -1, 1)
    far = rng.uniform(-1, 1, size=(64, actions.shape[1]))
    return {
        "rows": torch.from_numpy(rows),
        "near": torch.from_numpy(near.astype(np.float32)),
        "far": torch.from_numpy(far.astype(np.float32)),
    }


def brute_force(keys: torch.Tensor, queries: torch.Tensor) -> np.ndarray:
    """All float64 distances ``(B, N)`` between query keys and dataset keys (same float32 inputs)."""
    diff = queries.double().numpy()[:, None, :] - keys.double().numpy()[None, :, :]
    return np.sqrt((diff**2).sum(-1))


def assert_exact(result: Neighbors, distances: np.ndarray, k: int) -> None:
    """Returned distances are the k smallest (ascending) and the returned rows lie at those distances."""
    expected = np.sort(distances, axis=1)[:, :k]
    np.testing.assert_allclose(result.distances.numpy(), expected, rtol=1e-5, atol=1e-6)
    at_rows = np.take_along_axis(distances, result.indices.numpy(), axis=1)
    np.testing.assert_allclose(at_rows, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", EXACT)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("kind", ["near", "far"])
def test_exact_backends_match_brute_force(backend, k, kind, data, queries) -> None:
    states, actions = data
    index = DatasetNeighborIndex(states, actions, BETA, backend=backend, k=k)
    rows, acts = queries["rows"], queries[kind]
    query_keys = make_keys(torch.from_numpy(states)[rows], acts, BETA)
    distances = brute_force(index.keys, query_keys)

    by_rows = index.query_rows(rows, acts)
    assert by_rows.actions.shape == (64, k, 2) and by_rows.indices.dtype == torch.int64
    assert_exact(by_rows, distances, k)
    assert_exact(index.query(torch.from_numpy(states)[rows], acts), distances, k)
    assert_exact(index.query_keys(query_keys), distances, k)
    torch.testing.assert_close(by_rows.actions, torch.from_numpy(actions)[by_rows.indices])


def test_queries_off_the_data_are_exact(data) -> None:
    """query() with states that are not dataset states (no row known)."""
    states, actions = data
    rng = np.random.default_rng(2)
    off_states = torch.from_numpy(rng.normal(size=(32, 6)).astype(np.float32) * 2)
    off_actions = torch.from_numpy(rng.uniform(-1, 1, size=(32, 2)).astype(np.float32))
    for backend in EXACT:
        index = DatasetNeighborIndex(states, actions, BETA, backend=backend, k=2)
        distances = brute_force(index.keys, make_keys(off_states, off_actions, BETA))
        assert_exact(index.query(off_states, off_actions), distances, 2)


def test_faiss_ivf_is_exact_when_every_list_is_scanned_and_close_otherwise(data, queries) -> None:
    states, actions = data
    rows, acts = queries["rows"], queries["far"]
    distances = brute_force(make_keys(torch.from_numpy(states), torch.from_numpy(actions), BETA),
                            make_keys(torch.from_numpy(states)[rows], acts, BETA))
    cells = default_num_cells(len(states))
    full = DatasetNeighborIndex(states, actions, BETA, backend="faiss-ivf", nprobe=cells)
    assert_exact(full.query_rows(rows, acts), distances, 1)
    partial = DatasetNeighborIndex(states, actions, BETA, backend="faiss-ivf", nprobe=2).query_rows(rows, acts)
    exact = distances.min(1)
    found = partial.distances[:, 0].numpy()
    assert np.all(found >= exact * (1 - 1e-5))  # an approximate search never beats the exact one
    assert np.isclose(found, exact, rtol=1e-5).mean() >= 0.5


def test_kth_neighbour_is_prdc_target() -> None:
    """Keys (j, 0.1 j) with β = 1; query row 5 with action 0.8: squared distances 0.09 (row 5),
    1.04 (row 6), 1.16 (row 4), 4.01 (row 7): the 3rd neighbour is row 4 with action 0.4."""
    states = torch.arange(10, dtype=torch.float32)[:, None]
    actions = 0.1 * states
    for backend in EXACT:
        index = DatasetNeighborIndex(states, actions, 1.0, backend=backend, k=3)
        result = index.query_rows(torch.tensor([5]), torch.tensor([[0.8]]))
        assert result.indices.tolist() == [[5, 6, 4]]
        torch.testing.assert_close(result.distances[0], torch.tensor([0.09, 1.04, 1.16]).sqrt())
        torch.testing.assert_close(result.kth_actions, torch.tensor([[0.4]]))
        torch.testing.assert_close(result.kth_distances, torch.tensor([1.16]).sqrt())


@pytest.mark.parametrize(
    "settings",
    [
        {"num_candidates": 8},
        {"num_candidates": 16, "num_cells": 150, "nprobe": 1},  # cells hold fewer than K + 1 points
        {"num_candidates": 8, "num_cells": 60, "nprobe": 1, "scan_cells": 2},  # cut short: r_i from the bounds
    ],
)
def test_certificate_radius_bounds_every_non_candidate(settings, data, queries) -> None:
    """r_i <= ||z_j - z_i|| for every row j outside C(i); row i is its own candidate; answers stay exact."""
    states, actions = data
    index = DatasetNeighborIndex(states, actions, BETA, **settings)
    z = index.keys[:, :6].double()
    distances = torch.cdist(z, z)
    candidates = index._candidates.long()
    outside = torch.ones_like(distances, dtype=torch.bool).scatter_(1, candidates, False)
    closest_outside = distances.masked_fill(~outside, float("inf")).min(1).values
    assert torch.all(index._radius.double() <= closest_outside)
    assert (candidates == torch.arange(len(states))[:, None]).any(1).float().mean() > 0.99
    rows, acts = queries["rows"], queries["near"]
    result = index.query_rows(rows, acts)
    assert_exact(result, brute_force(index.keys, make_keys(torch.from_numpy(states)[rows], acts, BETA)), 1)


def test_fallback_runs_for_far_actions_and_stays_exact(data, queries) -> None:
    states, actions = data
    index = DatasetNeighborIndex(states, actions, BETA)
    rows = queries["rows"]
    for kind in ("near", "far"):
        acts = queries[kind]
        index.reset_stats()
        result = index.query_rows(rows, acts)
        assert_exact(result, brute_force(index.keys, make_keys(torch.from_numpy(states)[rows], acts, BETA)), 1)
        stats = index.stats
        assert stats.row_queries == 64 and stats.certified_rows + stats.fallback_rows == 64
        if kind == "near":
            assert stats.fallback_fraction < 0.2
        else:
            assert stats.fallback_rows > 0


@pytest.mark.parametrize("listed", [1, 4, 1000])
def test_cell_search_is_exact_with_short_cell_lists_and_many_chunks(listed, data, queries, monkeypatch) -> None:
    """The cell search bounds only a listed prefix of cells per query (per dataset row or per nearest
    centroid) and every cell for queries whose prefix fills the list; with lists of 1 or 4 cells most
    queries take the every-cell path, with 1000 none does. Queries also run in chunks of 10 rows."""
    from saferl.constraints import neighbors

    monkeypatch.setattr(neighbors, "_NEAR_CELLS", listed)
    states, actions = data
    rows = queries["rows"]
    for k in (1, 3):
        index = DatasetNeighborIndex(states, actions, BETA, k=k, chunk_elements=10 * default_num_cells(len(states)))
        cells = DatasetNeighborIndex(states, actions, BETA, backend="cells", k=k)
        for kind in ("near", "far"):
            acts = queries[kind]
            query_keys = make_keys(torch.from_numpy(states)[rows], acts, BETA)
            distances = brute_force(index.keys, query_keys)
            assert_exact(index.query_rows(rows, acts), distances, k)
            assert_exact(index.query_keys(query_keys), distances, k)
            assert_exact(cells.query_keys(query_keys), distances, k)
        assert index.stats.fallback_rows > 0


@pytest.mark.parametrize("fallback", EXACT_BACKENDS)
def test_every_exact_fallback_is_exact(fallback, data, queries) -> None:
    states, actions = data
    index = DatasetNeighborIndex(states, actions, BETA, fallback=fallback, k=2)
    rows, acts = queries["rows"], queries["far"]
    result = index.query_rows(rows, acts)
    assert index.stats.fallback_rows > 0
    assert_exact(result, brute_force(index.keys, make_keys(torch.from_numpy(states)[rows], acts, BETA)), 2)


def test_duplicate_states_and_tiny_datasets() -> None:
    """Many identical states (a reset state) and a dataset smaller than the candidate count."""
    rng = np.random.default_rng(3)
    states = np.concatenate([np.zeros((300, 4)), rng.normal(size=(300, 4))]).astype(np.float32)
    actions = rng.uniform(-1, 1, size=(600, 2)).astype(np.float32)
    rows = torch.arange(0, 600, 7)
    acts = torch.from_numpy(rng.uniform(-1, 1, size=(len(rows), 2)).astype(np.float32))
    index = DatasetNeighborIndex(states, actions, BETA, k=2)
    distances = brute_force(index.keys, make_keys(torch.from_numpy(states)[rows], acts, BETA))
    assert_exact(index.query_rows(rows, acts), distances, 2)

    tiny = DatasetNeighborIndex(states[:3], actions[:3], BETA, k=3)
    result = tiny.query_rows(torch.tensor([0, 2]), acts[:2])
    assert sorted(result.indices[0].tolist()) == [0, 1, 2] and tiny.stats.fallback_rows == 0


def test_two_indexes_never_share_state(data, queries) -> None:
    states, actions = data
    other_states, other_actions = trajectories(1500, 6, 2, seed=7)
    rows, acts = queries["rows"], queries["far"]
    first = DatasetNeighborIndex(states, actions, BETA)
    before = first.query_rows(rows, acts)
    second = DatasetNeighborIndex(other_states, other_actions, BETA)
    after = first.query_rows(rows, acts)
    torch.testing.assert_close(before.distances, after.distances)
    assert torch.equal(before.indices, after.indices)
    assert_exact(second.query_rows(rows, acts),
                 brute_force(second.keys, make_keys(torch.from_numpy(other_states)[rows], acts, BETA)), 1)
    assert first.stats.row_queries == 128 and second.stats.row_queries == 64
    assert first._searcher is not second._searcher and first.keys.data_ptr() != second.keys.data_ptr()
    shared = (torch.Tensor, np.ndarray, dict, list)
    assert not any(isinstance(value, shared) for value in vars(DatasetNeighborIndex).values())


def test_builds_are_deterministic_by_seed(data, queries) -> None:
    states, actions = data
    first = DatasetNeighborIndex(states, actions, BETA, seed=5)
    second = DatasetNeighborIndex(states, actions, BETA, seed=5)
    assert torch.equal(first._candidates, second._candidates) and torch.equal(first._radius, second._radius)
    a = first.query_rows(queries["rows"], queries["far"])
    b = second.query_rows(queries["rows"], queries["far"])
    assert torch.equal(a.indices, b.indices) and first.stats == second.stats


def test_sizes_and_build_time_are_reported(data) -> None:
    states, actions = data
    for backend in BACKENDS:
        index = DatasetNeighborIndex(states, actions, BETA, backend=backend)
        assert index.build_seconds > 0 and index.memory_bytes >= index.keys.numel() * 4
        assert index.num_points == 1500 and index.action_dim == 2
    assert set(DatasetNeighborIndex(states, actions, BETA).build_timings) == {"cells", "candidates", "search_index"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "annoy"}, "unknown backend"),
        ({"beta": 0.0}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"k": 0}, "k must"),
        ({"k": 10_000}, "k must"),
        ({"k": 4, "num_candidates": 3}, "num_candidates"),
        ({"fallback": "faiss-ivf"}, "fallback must be an exact backend"),
        ({"nprobe": 0}, "nprobe"),
        ({"scan_cells": 0}, "scan_cells"),
        ({"num_cells": 0}, "num_cells"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_settings_are_rejected(kwargs, message, data) -> None:
    states, actions = data
    settings = {"beta": BETA, **kwargs}
    with pytest.raises(ValueError, match=message):
        DatasetNeighborIndex(states, actions, **settings)


def test_bad_data_and_queries_are_rejected(data) -> None:
    states, actions = data
    with pytest.raises(ValueError, match="rows"):
        DatasetNeighborIndex(states, actions[:-1], BETA)
    with pytest.raises(ValueError, match="2-D"):
        DatasetNeighborIndex(states[:, 0], actions, BETA)
    bad = states.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        DatasetNeighborIndex(bad, actions, BETA)
    index = DatasetNeighborIndex(states, actions, BETA, backend="torch")
    with pytest.raises(ValueError, match="lie in"):
        index.query_rows(torch.tensor([0, 1500]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="integer"):
        index.query_rows(torch.tensor([0.0, 1.0]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="one entry per action"):
        index.query_rows(torch.tensor([0, 1, 2]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="2 columns"):
        index.query_rows(torch.tensor([0, 1]), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        index.query(torch.zeros(1, 6), torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="8 columns"):
        index.query_keys(torch.zeros(1, 7))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["torch", "candidates"])
def test_gpu_path_stays_on_device_and_is_exact(backend, data, queries) -> None:
    states, actions = data
    index = DatasetNeighborIndex(torch.from_numpy(states).cuda(), torch.from_numpy(actions).cuda(), BETA,
                                 backend=backend, k=2)
    assert index.keys.is_cuda and (backend == "torch" or index.fallback == "torch")
    rows, acts = queries["rows"].cuda(), queries["far"].cuda()
    result = index.query_rows(rows, acts)
    assert result.distances.is_cuda and result.indices.is_cuda and result.actions.is_cuda
    distances = brute_force(index.keys.cpu(), make_keys(torch.from_numpy(states)[rows.cpu()], acts.cpu(), BETA))
    assert_exact(Neighbors(result.actions.cpu(), result.distances.cpu(), result.indices.cpu()), distances, 2)
