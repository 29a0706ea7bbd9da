r"""Nearest dataset neighbours: the index behind PRDC's dataset constraint.

PRDC (Ran et al., ICML 2023) pulls the actor towards the action of the dataset point nearest to the
*key* of a state and the policy's action. With ``s̄`` the z-normalised state and ``β > 0``:

.. math::

    \kappa(\bar s, a) = [\beta \bar s,\; a] \in \mathbb{R}^{d_s + d_a}, \qquad
    j^\star = \arg\min_{j \le N} \lVert \kappa(\bar s, \pi(\bar s)) - \kappa(\bar s_j, a_j) \rVert_2, \qquad
    \mathcal{L}_{\mathrm{DC}} = \lVert \pi(\bar s) - a_{j^\star} \rVert_2^2 .

:class:`DatasetNeighborIndex` holds the keys of every transition and answers ``k``-nearest-neighbour
queries with the neighbours' actions, key distances and dataset rows, nearest first.

**k-th neighbour.** PRDC's code asks scipy for ``k=[k]``, i.e. the ``k``-th nearest point alone, and
regularises towards its action (not an average of the ``k`` nearest); PRDC uses ``k = 1``.
:attr:`Neighbors.kth_actions` is that target.

**Backends.** ``"kdtree"`` (scipy cKDTree, as PRDC), ``"faiss-flat"`` and ``"torch"`` (brute force; the
torch one runs in chunks on the keys' device, GPU included) and ``"cells"`` are exact; ``"faiss-ivf"``
(IVF-Flat, ``nlist ≈ 4√N`` lists, ``nprobe`` of them scanned) is approximate. The default,
``"candidates"``, is exact and fastest when the query states are dataset states, as in PRDC training,
where a batch knows its rows (``Batch.indices``).

**Candidates and their certificate.** Write ``z_j = β s̄_j``. For every row ``i`` the build stores a
candidate set ``C(i)`` (its ``K`` nearest rows in ``z``, searched as below) and a radius ``r_i`` with
``‖z_j − z_i‖ ≥ r_i`` for every ``j ∉ C(i)``. A query of row ``i`` with action ``a`` has key
``q = [z_i, a]``, and for every non-candidate

.. math::

    \lVert q - \kappa_j \rVert^2 = \lVert z_j - z_i \rVert^2 + \lVert a_j - a \rVert^2 \ \ge\ r_i^2 ,

so if the ``k``-th smallest candidate distance ``d_k(i) ≤ r_i``, the ``k`` nearest candidates are the
``k`` nearest points of the whole dataset: the answer is certified exact. Row ``i`` is its own candidate
(state distance 0), hence ``d_1(i) ≤ ‖a_i − a‖``: actions near the data are certified whenever
``‖a_i − a‖ ≤ r_i``. Rows that fail the test (far actions, early in training) go to an exact
``fallback`` search (counted in :attr:`DatasetNeighborIndex.stats`), which is told ``d_k(i)`` as an
upper bound on the answer.

**Cells.** The candidates' build, and the ``"cells"`` backend, use a Voronoi partition of the ``z``
space: ``k``-means centroids ``c_l`` and each point in the cell of its nearest centroid. A point ``x``
of cell ``l`` is no farther from ``c_l`` than from the cell ``o`` of the query state ``z``, so it lies in
that half-space and

.. math::

    \lVert z - x \rVert \ \ge\ h_l(z) = \frac{\max(0,\ \lVert z - c_l\rVert^2 - \lVert z - c_o\rVert^2)}
    {2 \lVert c_l - c_o \rVert} .

*Build.* The rows of one cell form a block, compared by float64 matrix products with the points of
the ``nprobe`` cells of smallest bound over its rows; the rows whose ``(K+1)``-th distance
``d_{K+1}(i)`` an unscanned cell does not rule out (``h_l(z_i) < d_{K+1}(i)``) then scan those cells
too, at most ``scan_cells`` cells in all. The ``K`` nearest scanned rows form ``C(i)`` and
``r_i = min(d_{K+1}(i), min_{l unscanned} h_l(z_i))``: a valid radius, equal to the exact
``(K+1)``-th neighbour distance whenever the block did not hit its cap.

The build also keeps, for every cell ``o``, the bound of every cell over ``o``'s rows,
``H(o, l) = min_{i ∈ o} h_l(z_i)``, for the ``M = 256`` smallest, sorted.

*Search* (``"cells"``, and the candidates' fallback on the CPU). The key distance to a point of cell
``l`` is at least ``b_l(q) = sqrt(h_l(z)² + g_l(a)²)``, ``g_l(a)`` the distance from ``a`` to the
bounding box of the actions of cell ``l``. A query walks a list of cells in order, keeps the ``k``
nearest points found so far and, with ``U`` the ``k``-th of their distances (or the caller's bound,
when smaller), scans only the cells with ``b_l ≤ U``. The walk stops when no cell further down the list
can be within ``U``:

* a dataset row ``i`` (the candidates' fallback, which passes ``U``) walks its cell's ``H`` list, whose
  keys ``H(o, l) ≤ h_l(z_i)`` are sorted: it stops at the first ``H(o, l) > U``;
* any other state walks the list of centroids nearest to its nearest centroid ``c_o`` (the half-space
  bound holds against any reference cell ``o``): a point ``x`` of cell ``l`` within ``U`` of ``z`` has
  ``‖x − c_o‖ ≤ U + ‖z − c_o‖ = R`` and ``‖x − c_l‖ ≤ ‖x − c_o‖``, hence ``‖c_l − c_o‖ ≤ 2R``: it
  stops at the first centroid farther than ``2R``;
* a query that reaches the end of a list that is not every cell goes on through all the others.

Inside a cell the points are cut into blocks of 16 consecutive dataset rows (trajectory neighbours,
close in key space); a block whose key box is farther than ``U`` is skipped. The walk is compiled with
numba (:mod:`saferl.constraints._cell_search`): a few dozen cells and points per query are far too
little work for torch's per-operation overhead.

Distances are recomputed from direct float32 differences by every backend (the brute-force ones rank
``k + 8`` points by matrix products first), so all backends report the same numbers; certificates and
pruning leave a relative slack of ``1e-5`` for float32 rounding. Indexes hold all their state per
instance: nothing is shared between two indexes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Protocol, TypeVar

import numpy as np
import torch
from scipy.spatial import cKDTree

ArrayLike = torch.Tensor | np.ndarray
_Built = TypeVar("_Built")

BACKENDS = ("candidates", "cells", "kdtree", "faiss-flat", "faiss-ivf", "torch")
EXACT_BACKENDS = ("cells", "kdtree", "faiss-flat", "torch")

_RELATIVE_SLACK = 1e-5  # float32 direct distances are accurate to about 1e-6 (relative)
_REFINE_EXTRA = 8  # matrix-product distances rank k + 8 points, re-ranked by direct differences
_KMEANS_ITERATIONS = 10
_KMEANS_POINTS_PER_CELL = 32  # k-means trains on at most 32 points per centroid (a random subsample)
_NEAR_CELLS = 256  # cells listed per cell for the cell search's walk (module docstring, *Search*)
_BLOCK_POINTS = 16  # consecutive points of a cell under one key box in the cell search


@dataclass(frozen=True)
class Neighbors:
    """The ``k`` nearest dataset points of each query, nearest first.

    ``actions`` ``(B, k, act_dim)``, ``distances`` ``(B, k)`` (Euclidean key distances) and ``indices``
    ``(B, k)`` (int64 dataset rows), on the queries' device.
    """

    actions: torch.Tensor
    distances: torch.Tensor
    indices: torch.Tensor

    @property
    def kth_actions(self) -> torch.Tensor:
        """``(B, act_dim)``: action of the ``k``-th nearest point, the target of PRDC's regulariser."""
        return self.actions[:, -1]

    @property
    def kth_distances(self) -> torch.Tensor:
        """``(B,)``: key distance to the ``k``-th nearest point."""
        return self.distances[:, -1]


@dataclass
class NeighborStats:
    """Counters of an index's queries since it was built (or since :meth:`DatasetNeighborIndex.reset_stats`).

    ``row_queries`` rows went through :meth:`~DatasetNeighborIndex.query_rows`; of those the candidates
    backend answered ``certified_rows`` from the candidates and sent ``fallback_rows`` to the exact
    fallback. ``key_queries`` rows came through :meth:`~DatasetNeighborIndex.query` or
    :meth:`~DatasetNeighborIndex.query_keys` (no dataset row known).
    """

    row_queries: int = 0
    certified_rows: int = 0
    fallback_rows: int = 0
    key_queries: int = 0

    @property
    def fallback_fraction(self) -> float:
        """``fallback_rows / row_queries`` (0 before any row query)."""
        return self.fallback_rows / self.row_queries if self.row_queries else 0.0


def make_keys(states_normalized: torch.Tensor, actions: torch.Tensor, beta: float) -> torch.Tensor:
    """PRDC's keys ``[β s̄, a]``, shape ``(B, d_s + d_a)``."""
    return torch.cat([beta * states_normalized, actions], dim=1)


def default_num_cells(num_points: int) -> int:
    """Cells (inverted lists) for ``N`` points: ``round(4 √N)``, at most ``N // 4``, at least 1."""
    return max(1, min(round(4 * math.sqrt(num_points)), num_points // 4))


def _refine(keys: torch.Tensor, queries: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest of the candidate ``rows`` ``(B, M)``: direct float32 distances, ascending."""
    gathered = keys.index_select(0, rows.reshape(-1)).view(*rows.shape, keys.shape[1])
    squared = (gathered - queries[:, None, :]).square().sum(-1)
    squared, order = torch.topk(squared, k, dim=1, largest=False, sorted=True)
    return squared.sqrt(), rows.gather(1, order)


def _rows_per_chunk(chunk_elements: int, width: int) -> int:
    """Rows of a ``(rows, width)`` matrix that fit in ``chunk_elements`` entries (at least 1)."""
    return max(1, chunk_elements // max(1, width))


def _as_float_tensor(name: str, value: ArrayLike, device: torch.device | None = None) -> torch.Tensor:
    """A 2-D float32 tensor, or a ValueError naming ``name``."""
    if not isinstance(value, (torch.Tensor, np.ndarray)):
        raise ValueError(f"{name} must be a torch.Tensor or numpy array, got {type(value).__name__}")
    tensor = torch.as_tensor(value, device=device)
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, features), got shape {tuple(tensor.shape)}")
    if not (tensor.is_floating_point() or tensor.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name} must hold real numbers, got dtype {tensor.dtype}")
    tensor = tensor.to(torch.float32)
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} holds NaN or inf values")
    return tensor


def _device_of(value: ArrayLike) -> torch.device:
    """The device of a tensor (the CPU for an array): where results go back to."""
    return value.device if isinstance(value, torch.Tensor) else torch.device("cpu")


def _check_int(name: str, value: int, low: int, high: int | None = None) -> None:
    """Reject a non-integer or a value outside ``[low, high]``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an int {bounds}, got {value!r}")


def _faiss() -> ModuleType:
    """faiss, imported on first use: only the faiss backends and the default's cells need it, so importing
    saferl (and running algorithms without a neighbour index) does not load it."""
    import faiss

    return faiss


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """A contiguous float32 numpy copy (or view) of a tensor, on the CPU."""
    return np.ascontiguousarray(tensor.detach().to("cpu", torch.float32).numpy())


def _kmeans(points: np.ndarray, num_cells: int, seed: int) -> np.ndarray:
    """``num_cells`` k-means centroids of ``points`` (faiss; seeded subsample and initialisation)."""
    kmeans = _faiss().Kmeans(
        points.shape[1],
        num_cells,
        niter=_KMEANS_ITERATIONS,
        seed=seed,
        max_points_per_centroid=_KMEANS_POINTS_PER_CELL,
        min_points_per_centroid=1,
    )
    kmeans.train(points)
    return kmeans.centroids


# ---------------------------------------------------------------------------------------- searchers
class _Searcher(Protocol):
    """An exact or approximate k-NN search over the keys, returning candidate rows to be refined."""

    memory_bytes: int

    def search(
        self, queries: torch.Tensor, k: int, upper: torch.Tensor | None = None, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Candidate rows ``(B, M ≥ k)`` containing the ``k`` nearest keys of each query.

        ``upper`` ``(B,)``, when given, bounds each query's ``k``-th neighbour distance from above;
        ``rows`` ``(B,)``, when given, are the dataset rows whose states the queries hold.
        """


class _TorchSearcher:
    """Brute force on the keys' device: ``torch.cdist`` over chunks of the keys, top ``k + 8`` kept."""

    def __init__(self, keys: torch.Tensor, chunk_elements: int) -> None:
        self.keys = keys
        self.chunk_elements = chunk_elements
        self.memory_bytes = 0  # searches the index's own key tensor

    def search(
        self, queries: torch.Tensor, k: int, upper: torch.Tensor | None = None, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        num_points = self.keys.shape[0]
        width = min(k + _REFINE_EXTRA, num_points)
        step = _rows_per_chunk(self.chunk_elements, queries.shape[0])
        best_distances = best_rows = None
        for start in range(0, num_points, step):
            block = self.keys[start : start + step]
            distances, rows = torch.topk(
                torch.cdist(queries, block), min(width, block.shape[0]), dim=1, largest=False
            )
            rows = rows + start
            if best_distances is not None:
                distances = torch.cat([best_distances, distances], dim=1)
                rows = torch.cat([best_rows, rows], dim=1)
                distances, order = torch.topk(distances, min(width, distances.shape[1]), dim=1, largest=False)
                rows = rows.gather(1, order)
            best_distances, best_rows = distances, rows
        return best_rows


class _KDTreeSearcher:
    """scipy's cKDTree over the keys (float64 copy), queried with ``workers`` threads."""

    def __init__(self, keys: np.ndarray, workers: int) -> None:
        self.tree = cKDTree(keys)
        self.workers = workers
        self.memory_bytes = self.tree.data.nbytes + self.tree.indices.nbytes

    def search(
        self, queries: torch.Tensor, k: int, upper: torch.Tensor | None = None, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        _, rows = self.tree.query(_numpy(queries), k=k, workers=self.workers)
        return torch.as_tensor(rows.reshape(queries.shape[0], k), dtype=torch.int64, device=queries.device)


class _FaissFlatSearcher:
    """faiss IndexFlatL2: exhaustive search (BLAS products), top ``k + 8`` kept."""

    def __init__(self, keys: np.ndarray) -> None:
        self.index = _faiss().IndexFlatL2(keys.shape[1])
        self.index.add(keys)
        self.memory_bytes = keys.nbytes

    def search(
        self, queries: torch.Tensor, k: int, upper: torch.Tensor | None = None, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        _, rows = self.index.search(_numpy(queries), min(k + _REFINE_EXTRA, self.index.ntotal))
        return torch.as_tensor(rows, dtype=torch.int64, device=queries.device)


class _FaissIVFSearcher:
    """faiss IVF-Flat over the keys: ``nprobe`` of ``num_cells`` lists scanned (approximate).

    A query whose scanned lists hold fewer than ``k`` points is answered by scanning every list.
    """

    def __init__(self, keys: np.ndarray, num_cells: int, nprobe: int, seed: int) -> None:
        quantizer = _faiss().IndexFlatL2(keys.shape[1])
        quantizer.add(_kmeans(keys, num_cells, seed))
        self.index = _faiss().IndexIVFFlat(quantizer, keys.shape[1], num_cells)
        self.index.is_trained = True
        self.index.add(keys)
        self.nprobe = min(nprobe, num_cells)
        self.memory_bytes = keys.nbytes + keys.shape[0] * 8 + num_cells * keys.shape[1] * 4

    def search(
        self, queries: torch.Tensor, k: int, upper: torch.Tensor | None = None, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        points = _numpy(queries)
        self.index.nprobe = self.nprobe
        _, rows = self.index.search(points, k)
        short = (rows < 0).any(axis=1)
        if short.any():
            self.index.nprobe = self.index.nlist
            _, rows[short] = self.index.search(points[short], k)
        return torch.as_tensor(rows, dtype=torch.int64, device=queries.device)


class _StateCells:
    """Voronoi cells of the scaled states ``z = β s̄`` (each point in the cell of its nearest centroid,
    decided in float64) and the half-space bounds ``h_l(z)``."""

    def __init__(self, z: np.ndarray, num_cells: int, seed: int, chunk_elements: int) -> None:
        self.centroids = torch.from_numpy(_kmeans(z, num_cells, seed)).double()
        self.num_cells = num_cells
        self.chunk_elements = chunk_elements
        self._centroid_norms = self.centroids.square().sum(1)
        # 1 / (2 ‖c_l − c_m‖) from direct differences; centroids closer than 1e-9 (relative) count as
        # coincident and bound nothing (their half-space test would be rounding noise)
        separation = torch.cdist(self.centroids, self.centroids, compute_mode="donot_use_mm_for_euclid_dist")
        self.coincident = 1e-9 * (1 + float(self._centroid_norms.max().sqrt()))
        """Centroids closer than this count as coincident: their half-space bound is 0."""
        distinct = separation > self.coincident
        self._half_inverse_separation = torch.where(distinct, 0.5 / separation, 0.0).float()
        # each cell's nearest cells (itself first) and their separations, ascending: the walk of a query
        # whose dataset row is not known (``lists``)
        listed = min(num_cells, _NEAR_CELLS)
        near_separation, near_cells = torch.topk(separation, listed, dim=1, largest=False, sorted=True)
        self._near_separation = np.ascontiguousarray(near_separation.numpy())
        self._near_cells = np.ascontiguousarray(near_cells.numpy())
        self._row_reach: tuple[np.ndarray, np.ndarray] | None = None
        self._centroids32 = self.centroids.float()
        self._centroid_norms32 = self._centroid_norms.float()
        self.assignment = np.empty(len(z), dtype=np.int64)
        step = _rows_per_chunk(chunk_elements, num_cells)
        for start in range(0, len(z), step):
            squared = self._squared_distances(torch.from_numpy(z[start : start + step]))
            self.assignment[start : start + step] = squared.argmin(1).numpy()
        self.order = np.argsort(self.assignment, kind="stable")
        """Dataset rows grouped by cell (dataset order inside a cell)."""
        self.starts = np.searchsorted(self.assignment[self.order], np.arange(num_cells + 1)).astype(np.int64)
        """``order[starts[l] : starts[l + 1]]`` are the rows of cell ``l``."""

    @property
    def memory_bytes(self) -> int:
        """Bytes of the centroids, their separations and lists, and the cell of every point."""
        lists = self._near_separation.nbytes + self._near_cells.nbytes
        if self._row_reach is not None:
            lists += self._row_reach[0].nbytes + self._row_reach[1].nbytes
        grouping = self.assignment.nbytes + self.order.nbytes + self.starts.nbytes
        return self.centroids.numel() * 12 + self._half_inverse_separation.numel() * 4 + lists + grouping

    def _squared_distances(self, z: torch.Tensor) -> torch.Tensor:
        """``‖z − c_l‖²`` in float64, ``(B, num_cells)``."""
        z = z.to("cpu", torch.float64)
        squared = torch.addmm(self._centroid_norms, z, self.centroids.T, alpha=-2)
        return squared.add_(z.square().sum(1, keepdim=True)).clamp_min_(0.0)

    def bounds(self, z: torch.Tensor) -> torch.Tensor:
        """``h_l(z)`` ``(B, num_cells)``: lower bounds on ``‖z − x‖`` for the points ``x`` of each cell.

        Zero for ``z``'s own cell and for cells whose centroid coincides with it.
        """
        squared = self._squared_distances(z)
        own_squared, own = squared.min(1, keepdim=True)
        return squared.sub_(own_squared).clamp_min_(0.0).mul_(self._half_inverse_separation[own.squeeze(1)])

    def set_row_reach(self, bounds: torch.Tensor, cells: torch.Tensor) -> None:
        """Store, per cell ``o``, its cells ``l`` sorted by ``H(o, l) = min_{i ∈ o} h_l(z_i)`` and those
        bounds (``(num_cells, M)`` each; ``inf`` pads the lists of empty cells): the walk of dataset rows."""
        self._row_reach = (np.ascontiguousarray(bounds.numpy()), np.ascontiguousarray(cells.numpy()))

    def lists(self, z: torch.Tensor, rows: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """What the cell search walks for queries with states ``z``: each query's reference cell, the
        per-cell lists of cells and their sort keys, and whether those keys are ``H(o, l)``.

        Dataset rows (``rows`` given, after :meth:`set_row_reach`) use their own cell and the ``H`` lists;
        other states use their nearest centroid (as float32 finds it; any reference cell gives valid
        bounds) and the lists of nearest centroids.
        """
        if rows is not None and self._row_reach is not None:
            own = self.assignment[rows.cpu().numpy()]
            return own, self._row_reach[1], self._row_reach[0], True
        own = np.empty(len(z), dtype=np.int64)
        step = _rows_per_chunk(self.chunk_elements, self.num_cells)
        for start in range(0, len(z), step):
            chunk = z[start : start + step].to("cpu", torch.float32)
            squared = torch.addmm(self._centroid_norms32, chunk, self._centroids32.T, alpha=-2)
            own[start : start + step] = squared.argmin(1).numpy()
        return own, self._near_cells, self._near_separation, False


class _CellSearcher:
    """Exact search through the state cells (module docstring, *Search*), compiled with numba
    (:func:`saferl.constraints._cell_search.search_cells`): per query, walk the reference cell's list,
    bound each cell by ``b_l = sqrt(h_l(z)² + g_l(a)²)``, ``g_l(a)`` the distance from ``a`` to the box
    of the cell's actions, and scan the points of the cells not ruled out by the ``k``-th distance so far
    (or the caller's upper bound).
    """

    def __init__(self, cells: _StateCells, keys: np.ndarray, state_dim: int) -> None:
        from saferl.constraints import _cell_search

        self._kernel = _cell_search.search_cells
        self.cells = cells
        self.state_dim = state_dim
        # points grouped by cell (dataset order inside a cell: trajectory neighbours stay together), each
        # cell cut into blocks of at most _BLOCK_POINTS consecutive points with the box of their keys
        starts = cells.starts
        self._grouped_keys = np.ascontiguousarray(keys[cells.order], dtype=np.float32)
        blocks_per_cell = -(-np.diff(starts) // _BLOCK_POINTS)
        self._block_starts = np.concatenate([[0], np.cumsum(blocks_per_cell)]).astype(np.int64)
        cell_of_block = np.repeat(np.arange(cells.num_cells), blocks_per_cell)
        first = starts[cell_of_block] + (np.arange(len(cell_of_block)) - self._block_starts[cell_of_block]) * _BLOCK_POINTS
        self._block_first = np.append(first, len(keys)).astype(np.int64)
        self._block_low = np.minimum.reduceat(self._grouped_keys, first, axis=0) if len(first) else self._grouped_keys[:0]
        self._block_high = np.maximum.reduceat(self._grouped_keys, first, axis=0) if len(first) else self._grouped_keys[:0]
        actions = torch.from_numpy(keys[:, state_dim:])
        members = torch.from_numpy(cells.assignment)[:, None].expand_as(actions)
        empty = torch.full((cells.num_cells, actions.shape[1]), math.inf)
        self._action_low = empty.scatter_reduce(0, members, actions, "amin").numpy()
        self._action_high = (-empty).scatter_reduce(0, members, actions, "amax").numpy()
        self._centroids = np.ascontiguousarray(cells.centroids.numpy())
        self.search(torch.empty(0, keys.shape[1]), 1)  # compile (or load from numba's cache) at build time
        self.memory_bytes = (
            cells.memory_bytes + self._grouped_keys.nbytes + self._block_starts.nbytes
            + self._block_first.nbytes + self._block_low.nbytes + self._block_high.nbytes + self._action_low.nbytes
            + self._action_high.nbytes
        )

    def search(
        self, queries: torch.Tensor, k: int, upper: torch.Tensor | None = None, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        points = _numpy(queries)
        if upper is None:
            bounds = np.full(len(points), np.inf)
        else:
            bounds = np.ascontiguousarray(upper.detach().to("cpu", torch.float64).numpy())
        own, list_cells, list_keys, row_keys = self.cells.lists(torch.from_numpy(points[:, : self.state_dim]), rows)
        found = self._kernel(
            points, bounds, np.ascontiguousarray(own, dtype=np.int64), list_cells, list_keys, row_keys,
            self._centroids, self.cells.coincident, self._block_starts, self._block_first, self._block_low,
            self._block_high, self._grouped_keys, self.cells.order, self._action_low, self._action_high, k,
            _RELATIVE_SLACK,
        )
        return torch.from_numpy(found).to(queries.device)


class _CandidateTable:
    """Per dataset row ``i``: candidate rows ``C(i)`` ``(N, K)`` and certificate radius ``r_i`` ``(N,)``.

    Built cell by cell (module docstring): the rows of a cell form a block, compared by float64 matrix
    products with the points of at most ``scan_cells`` cells; ``r_i = min(d_{K+1}(i), min_{m unscanned}
    h_m(z_i))``.
    """

    def __init__(self, z: np.ndarray, cells: _StateCells, num_candidates: int, nprobe: int, scan_cells: int) -> None:
        num_points = len(z)
        self.width = min(num_candidates, num_points)
        self.searched = min(self.width + 1, num_points)  # the (K+1)-th distance bounds the non-candidates
        self.rows = np.empty((num_points, self.width), dtype=np.int32)
        self.radius = np.empty(num_points, dtype=np.float32)
        self._cells = cells
        self._order, self._starts = cells.order, cells.starts  # rows grouped by cell
        self._grouped = torch.from_numpy(z[self._order])
        listed = min(cells.num_cells, _NEAR_CELLS)
        self.reach_bounds = torch.full((cells.num_cells, listed), math.inf, dtype=torch.float64)
        self.reach_cells = torch.zeros((cells.num_cells, listed), dtype=torch.int64)
        for cell in range(cells.num_cells):
            if self._starts[cell] < self._starts[cell + 1]:
                self._fill_block(cell, nprobe, scan_cells)
        del self._grouped

    @property
    def memory_bytes(self) -> int:
        """Bytes of the candidate rows and radii."""
        return self.rows.nbytes + self.radius.nbytes

    def _fill_block(self, cell: int, nprobe: int, scan_cells: int) -> None:
        """Candidates and radii of the rows of ``cell``."""
        block = self._grouped[self._starts[cell] : self._starts[cell + 1]].double()
        bounds = self._cells.bounds(block)
        closest = bounds.min(0).values  # the smallest bound of each cell over the block's rows
        reach, reach_cells = torch.topk(closest, self.reach_bounds.shape[1], largest=False, sorted=True)
        self.reach_bounds[cell], self.reach_cells[cell] = reach, reach_cells
        scanned = torch.zeros(self._cells.num_cells, dtype=torch.bool)
        scanned[torch.topk(closest, min(nprobe, len(closest)), largest=False).indices] = True
        self._cover(scanned, closest)
        distances, found = self._nearest(block, scanned)
        left_out = bounds.masked_fill(scanned, math.inf).min(1).values
        limited = left_out < distances[:, -1]  # rows whose radius an unscanned cell still limits
        room = scan_cells - int(scanned.sum())
        if limited.any() and room > 0:
            needed = bounds[limited].masked_fill(bounds[limited] >= distances[limited, -1:], math.inf).min(0).values
            more = torch.zeros_like(scanned)
            more[self._unscanned_by(needed, scanned)[:room]] = True
            extra_distances, extra_found = self._nearest(block[limited], more)
            merged, at = torch.topk(
                torch.cat([distances[limited], extra_distances], 1), self.searched, dim=1, largest=False, sorted=True
            )
            found[limited] = torch.cat([found[limited], extra_found], 1).gather(1, at)
            distances[limited] = merged
            left_out[limited] = bounds[limited].masked_fill(scanned | more, math.inf).min(1).values
        kth = distances[:, -1] if self.searched > self.width else torch.full_like(left_out, math.inf)
        rows = self._order[self._starts[cell] : self._starts[cell + 1]]
        self.rows[rows] = found[:, : self.width].numpy()
        self.radius[rows] = (torch.minimum(kth, left_out) * (1 - _RELATIVE_SLACK)).numpy()

    def _unscanned_by(self, priority: torch.Tensor, scanned: torch.Tensor) -> torch.Tensor:
        """Unscanned cells of finite ``priority``, smallest first."""
        order = torch.argsort(priority)
        return order[torch.isfinite(priority[order]) & ~scanned[order]]

    def _cover(self, scanned: torch.Tensor, priority: torch.Tensor) -> None:
        """Scan more cells (smallest ``priority`` first) until they hold at least ``searched`` points."""
        cells = scanned.nonzero().squeeze(1).numpy()
        missing = self.searched - int((self._starts[cells + 1] - self._starts[cells]).sum())
        if missing > 0:
            order = self._unscanned_by(priority, scanned).numpy()
            covered = np.cumsum(self._starts[order + 1] - self._starts[order])
            scanned[order[: int(np.searchsorted(covered, missing)) + 1]] = True

    def _nearest(self, block: torch.Tensor, scanned: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``searched`` nearest scanned points of each block row: distances and dataset rows."""
        cells = scanned.nonzero().squeeze(1).numpy()
        positions = torch.from_numpy(
            np.concatenate([np.arange(self._starts[c], self._starts[c + 1]) for c in cells])
        )
        points = self._grouped[positions].double()
        point_norms = points.square().sum(1)
        step = _rows_per_chunk(self._cells.chunk_elements, len(points))
        distances, found = [], []
        for start in range(0, len(block), step):
            rows = block[start : start + step]
            squared = torch.addmm(point_norms, rows, points.T, alpha=-2).add_(rows.square().sum(1, keepdim=True))
            values, at = torch.topk(
                squared.clamp_min_(0.0), min(self.searched, len(points)), dim=1, largest=False, sorted=True
            )
            distances.append(values.sqrt())
            found.append(torch.from_numpy(self._order)[positions[at]])
        return torch.cat(distances), torch.cat(found)


# ---------------------------------------------------------------------------------------- the index
class DatasetNeighborIndex:
    """Exact (or, with ``"faiss-ivf"``, approximate) ``k``-NN over PRDC's keys ``[β s̄_j, a_j]``.

    Args:
        states_normalized: ``(N, d_s)`` z-normalised dataset states (tensor or array).
        actions: ``(N, d_a)`` dataset actions.
        beta: state weight ``β > 0`` in the key.
        backend: one of :data:`BACKENDS`; ``"candidates"`` (default) answers :meth:`query_rows` from
            per-row candidates with an exactness certificate (module docstring).
        k: neighbours returned per query, nearest first; PRDC regularises towards the ``k``-th.
        num_candidates: ``K``, candidates stored per row (``"candidates"``), at least ``k``.
        fallback: exact backend for uncertified rows and row-less queries of ``"candidates"``;
            default ``"torch"`` when the keys live on a CUDA device, else ``"cells"``.
        nprobe: lists scanned by ``"faiss-ivf"``; cells scanned first by each block of the candidates'
            build.
        num_cells: lists or cells of ``"faiss-ivf"``/``"cells"``/``"candidates"``
            (default :func:`default_num_cells`).
        scan_cells: most cells one block of the candidates' build scans: more makes the radii
            ``r_i`` exact for more rows (fewer fallbacks) and the build slower.
        workers: cKDTree threads (``-1``: all cores).
        seed: seeds the k-means initialisation and subsample.
        device: where the keys, candidates and results live (default: the states' device).
        chunk_elements: entries per distance matrix in chunked computations (memory bound).
    """

    def __init__(
        self,
        states_normalized: ArrayLike,
        actions: ArrayLike,
        beta: float,
        backend: str = "candidates",
        k: int = 1,
        *,
        num_candidates: int = 16,
        fallback: str | None = None,
        nprobe: int = 16,
        num_cells: int | None = None,
        scan_cells: int = 128,
        workers: int = -1,
        seed: int = 0,
        device: torch.device | str | None = None,
        chunk_elements: int = 1 << 22,
    ) -> None:
        if device is None:
            device = states_normalized.device if isinstance(states_normalized, torch.Tensor) else "cpu"
        states = _as_float_tensor("states_normalized", states_normalized, torch.device(device))
        actions_tensor = _as_float_tensor("actions", actions, torch.device(device))
        if states.shape[0] != actions_tensor.shape[0]:
            raise ValueError(f"states_normalized has {states.shape[0]} rows but actions has {actions_tensor.shape[0]}")
        if states.shape[0] == 0:
            raise ValueError("the dataset is empty: an index needs at least one transition")
        if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        num_points = states.shape[0]
        _check_int("k", k, 1, num_points)
        _check_int("num_candidates", num_candidates, k)
        _check_int("nprobe", nprobe, 1)
        _check_int("scan_cells", scan_cells, 1)
        _check_int("chunk_elements", chunk_elements, 1)
        if num_cells is not None:
            _check_int("num_cells", num_cells, 1, num_points)
        if not isinstance(workers, int) or isinstance(workers, bool) or workers == 0 or workers < -1:
            raise ValueError(f"workers must be -1 (all cores) or a positive int, got {workers!r}")
        if fallback is None:
            fallback = "torch" if states.device.type == "cuda" else "cells"
        if fallback not in EXACT_BACKENDS:
            raise ValueError(f"fallback must be an exact backend, one of {', '.join(EXACT_BACKENDS)}; got {fallback!r}")

        start = time.perf_counter()
        self.backend = backend
        self.fallback = fallback if backend == "candidates" else None
        self.k = k
        self.beta = float(beta)
        self.state_dim = states.shape[1]
        self.num_cells = default_num_cells(num_points) if num_cells is None else num_cells
        self.keys = make_keys(states, actions_tensor, self.beta)
        self.stats = NeighborStats()
        self.build_timings: dict[str, float] = {}
        self._chunk_elements = chunk_elements
        self._candidates: torch.Tensor | None = None
        self._radius: torch.Tensor | None = None
        self._candidate_bytes = 0

        general = fallback if backend == "candidates" else backend
        cells = None
        if backend == "torch":
            self._searcher: _Searcher = _TorchSearcher(self.keys, chunk_elements)
        else:
            keys = _numpy(self.keys)
            z = np.ascontiguousarray(keys[:, : self.state_dim])
            if backend == "candidates" or general == "cells":
                cells = self._timed("cells", lambda: _StateCells(z, self.num_cells, seed, chunk_elements))
            if backend == "candidates":
                table = self._timed("candidates", lambda: _CandidateTable(z, cells, num_candidates, nprobe, scan_cells))
                cells.set_row_reach(table.reach_bounds, table.reach_cells)
                self._candidates = torch.from_numpy(table.rows).to(self.keys.device)
                self._radius = torch.from_numpy(table.radius).to(self.keys.device)
                self._candidate_bytes = table.memory_bytes
            self._searcher = self._timed(
                "search_index", lambda: self._make_searcher(general, keys, cells, nprobe, workers, seed)
            )
        self.build_seconds = time.perf_counter() - start

    def _timed(self, phase: str, build: Callable[[], _Built]) -> _Built:
        """Run ``build()``, recording its wall time under ``build_timings[phase]``."""
        start = time.perf_counter()
        result = build()
        self.build_timings[phase] = time.perf_counter() - start
        return result

    def _make_searcher(
        self, name: str, keys: np.ndarray, cells: _StateCells | None, nprobe: int, workers: int, seed: int
    ) -> _Searcher:
        """The general search structure named ``name``."""
        if name == "torch":
            return _TorchSearcher(self.keys, self._chunk_elements)
        if name == "kdtree":
            return _KDTreeSearcher(keys, workers)
        if name == "faiss-flat":
            return _FaissFlatSearcher(keys)
        if name == "faiss-ivf":
            return _FaissIVFSearcher(keys, self.num_cells, nprobe, seed)
        return _CellSearcher(cells, keys, self.state_dim)

    # ------------------------------------------------------------------------------------ sizes
    @property
    def num_points(self) -> int:
        """Transitions indexed."""
        return int(self.keys.shape[0])

    @property
    def action_dim(self) -> int:
        """Action dimension ``d_a``."""
        return int(self.keys.shape[1]) - self.state_dim

    @property
    def memory_bytes(self) -> int:
        """Bytes held: the key tensor, the search structure's arrays and the candidate table.

        cKDTree's node records are not counted (scipy does not expose them).
        """
        return self.keys.numel() * 4 + self._searcher.memory_bytes + self._candidate_bytes

    def reset_stats(self) -> None:
        """Zero the query counters."""
        self.stats = NeighborStats()

    # ------------------------------------------------------------------------------------ queries
    def query(self, states_normalized: torch.Tensor, actions: torch.Tensor) -> Neighbors:
        """Neighbours of the keys ``[β s̄, a]`` of arbitrary states (no dataset row known)."""
        device = _device_of(actions)
        states = self._check_batch("states_normalized", states_normalized, self.state_dim)
        actions = self._check_batch("actions", actions, self.action_dim)
        if states.shape[0] != actions.shape[0]:
            raise ValueError(f"states_normalized has {states.shape[0]} rows but actions has {actions.shape[0]}")
        self.stats.key_queries += states.shape[0]
        distances, rows = self._search(make_keys(states, actions, self.beta))
        return self._neighbors(distances, rows, device)

    def query_keys(self, keys: torch.Tensor) -> Neighbors:
        """Neighbours of arbitrary keys ``(B, d_s + d_a)`` (already ``[β s̄, a]``)."""
        device = _device_of(keys)
        keys = self._check_batch("keys", keys, self.keys.shape[1])
        self.stats.key_queries += keys.shape[0]
        distances, rows = self._search(keys)
        return self._neighbors(distances, rows, device)

    def query_rows(self, rows: torch.Tensor, actions: torch.Tensor) -> Neighbors:
        """Neighbours of ``[β s̄_i, a]`` for dataset rows ``i`` (e.g. ``Batch.indices``) and actions ``a``.

        The candidates backend answers certified rows from their candidates and the others by its
        exact fallback; every other backend searches the keys as :meth:`query_keys` does.
        """
        device = _device_of(actions)
        actions = self._check_batch("actions", actions, self.action_dim)
        rows = self._check_rows(rows, actions.shape[0])
        queries = torch.cat([self.keys[rows, : self.state_dim], actions], dim=1)
        self.stats.row_queries += rows.shape[0]
        if self._candidates is None:
            distances, found = self._search(queries)
            return self._neighbors(distances, found, device)
        distances, found = _refine(self.keys, queries, self._candidates[rows].long(), self.k)
        uncertified = distances[:, -1] > self._radius[rows]
        count = int(uncertified.sum())
        self.stats.certified_rows += rows.shape[0] - count
        self.stats.fallback_rows += count
        if count:
            distances[uncertified], found[uncertified] = self._search(
                queries[uncertified], upper=distances[uncertified, -1], rows=rows[uncertified]
            )
        return self._neighbors(distances, found, device)

    def _search(
        self, queries: torch.Tensor, upper: torch.Tensor | None = None, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """General search (distances, rows) ``(B, k)`` for keys on the index's device."""
        candidates = self._searcher.search(queries, self.k, upper, rows)
        return _refine(self.keys, queries, candidates.to(self.keys.device), self.k)

    def _neighbors(self, distances: torch.Tensor, rows: torch.Tensor, device: torch.device) -> Neighbors:
        """Package results, moving them to the queries' device."""
        actions = self.keys[rows, self.state_dim :]
        return Neighbors(actions.to(device), distances.to(device), rows.to(device))

    def _check_batch(self, name: str, values: torch.Tensor, width: int) -> torch.Tensor:
        """A ``(B, width)`` float32 tensor on the index's device, or a ValueError."""
        tensor = _as_float_tensor(name, values, self.keys.device)
        if tensor.shape[1] != width:
            raise ValueError(f"{name} must have {width} columns, got shape {tuple(tensor.shape)}")
        return tensor

    def _check_rows(self, rows: torch.Tensor, batch: int) -> torch.Tensor:
        """Dataset rows as a 1-D int64 tensor on the index's device, or a ValueError."""
        rows = torch.as_tensor(rows, device=self.keys.device)
        if rows.ndim != 1 or rows.shape[0] != batch:
            raise ValueError(f"rows must be 1-D with one entry per action ({batch}), got shape {tuple(rows.shape)}")
        if rows.is_floating_point() or rows.dtype == torch.bool:
            raise ValueError(f"rows must be integer dataset rows, got dtype {rows.dtype}")
        rows = rows.long()
        if batch and (int(rows.min()) < 0 or int(rows.max()) >= self.num_points):
            low, high = int(rows.min()), int(rows.max())
            raise ValueError(f"rows must lie in [0, {self.num_points}), got values in [{low}, {high}]")
        return rows


__all__ = [
    "BACKENDS",
    "EXACT_BACKENDS",
    "DatasetNeighborIndex",
    "NeighborStats",
    "Neighbors",
    "default_num_cells",
    "make_keys",
]
