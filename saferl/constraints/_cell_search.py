r"""The exact cell search of :mod:`saferl.constraints.neighbors`, compiled with numba.

One pass per query, no temporaries: walk a list of cells in order, bound each, scan the points of the
cells the bound does not rule out, and keep the ``k`` nearest. The lists and bounds are those of the
module docstring of :mod:`saferl.constraints.neighbors` (section *Search*):

* every cell ``l`` is bounded by ``b_l = sqrt(h_l(z)² + g_l(a)²)``, ``h_l`` the half-space bound against
  the query's reference cell ``o`` and ``g_l`` the distance from the action to the cell's action box;
* the walk follows ``o``'s sorted list and stops at the first entry whose sort key exceeds the current
  reach: for dataset rows the key is ``H(o, l) = min_{i ∈ o} h_l(z_i) ≤ h_l(z)``, reach ``U``; for any
  state it is ``‖c_l − c_o‖``, reach ``2 (U + ‖z − c_o‖)``. ``U`` is the ``k``-th distance found so far
  (or the caller's upper bound, when smaller), so it only shrinks and every stop is valid;
* a query that walks its whole list (and the list is not every cell) goes on through every cell not
  yet visited.

Distances are accumulated in float64 from the float32 keys; pruning compares against ``U (1 + slack)``.
Inside a cell, points are cut into blocks of consecutive dataset rows (trajectory neighbours, close in
key space); a block whose key box is farther than ``U`` is skipped whole.
numba (not torch) because the work per query is a handful of cells and a few dozen points: as batched
torch operations it is dozens of operations on small tensors, where torch's per-operation cost dominates.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


# reassociation lets LLVM vectorise the sums over key dimensions (2-3x here); no ``nnan``/``ninf`` flags,
# as ``inf`` marks "no bound yet". The changed rounding of float64 sums is far inside the pruning slack.
@njit(nogil=True, cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def search_cells(
    queries: np.ndarray,
    upper: np.ndarray,
    own: np.ndarray,
    list_cells: np.ndarray,
    list_keys: np.ndarray,
    row_keys: bool,
    centroids: np.ndarray,
    coincident: float,
    block_starts: np.ndarray,
    block_first: np.ndarray,
    block_low: np.ndarray,
    block_high: np.ndarray,
    grouped_keys: np.ndarray,
    grouped_rows: np.ndarray,
    action_low: np.ndarray,
    action_high: np.ndarray,
    k: int,
    slack: float,
) -> np.ndarray:
    """The ``k`` nearest dataset rows ``(B, k)`` of each query key (``-1`` where fewer points exist).

    Args:
        queries: ``(B, D)`` float32 keys ``[z, a]``.
        upper: ``(B,)`` float64 upper bounds on each query's ``k``-th distance (``inf``: none).
        own: ``(B,)`` int64 reference cell of each query.
        list_cells: ``(C, M)`` int64 per cell, the cells of its walk, in order.
        list_keys: ``(C, M)`` float64 their sort keys, ascending (``H(o, l)`` or ``‖c_l − c_o‖``).
        row_keys: whether ``list_keys`` are ``H(o, l)`` (queries are dataset rows of their cell ``own``).
        centroids: ``(C, d_s)`` float64 cell centroids.
        coincident: centroids closer than this bound nothing.
        block_starts: ``(C + 1,)`` int64 the first block of each cell (a cell's points, grouped, are cut
            into blocks of consecutive points).
        block_first: ``(num_blocks + 1,)`` int64 the first point of each block in ``grouped_keys``.
        block_low, block_high: ``(num_blocks, D)`` float32 the box of each block's keys.
        grouped_keys: ``(N, D)`` float32 keys grouped by cell.
        grouped_rows: ``(N,)`` int64 dataset row of each grouped key.
        action_low, action_high: ``(C, d_a)`` float32 action box of each cell.
        k: neighbours per query.
        slack: relative slack on every pruning test.
    """
    num_queries, width = queries.shape
    num_cells, listed = list_cells.shape
    state_dim = centroids.shape[1]
    result = np.full((num_queries, k), -1, dtype=np.int64)
    best = np.empty(k, dtype=np.float64)
    visited = np.full(num_cells, -1, dtype=np.int64)
    grow = (1.0 + slack) * (1.0 + slack)
    for b in range(num_queries):
        best[:] = np.inf
        o = own[b]
        to_own = 0.0
        for d in range(state_dim):
            diff = queries[b, d] - centroids[o, d]
            to_own += diff * diff
        position = 0
        while True:
            reach_squared = min(upper[b] * upper[b], best[k - 1]) * grow
            if position < listed:
                cell = list_cells[o, position]
                key = list_keys[o, position]
                position += 1
                if row_keys:
                    if key * key > reach_squared:
                        break
                elif key > 2.0 * (math.sqrt(reach_squared) + math.sqrt(to_own)) * (1.0 + slack):
                    break
                visited[cell] = b
            elif listed < num_cells and position < listed + num_cells:
                cell = position - listed
                position += 1
                if visited[cell] == b:
                    continue
            else:
                break
            # the state part of the bound: h_l(z) against o
            bound = 0.0
            if cell != o:
                dot = 0.0
                separation = 0.0
                for d in range(state_dim):
                    offset = centroids[cell, d] - centroids[o, d]
                    dot += (2.0 * (queries[b, d] - centroids[o, d]) - offset) * offset
                    separation += offset * offset
                separation = math.sqrt(separation)
                if separation > coincident and -dot > 0.0:
                    bound = -dot / (2.0 * separation)
            squared = bound * bound
            for d in range(width - state_dim):
                action = queries[b, state_dim + d]
                if action < action_low[cell, d]:
                    squared += (action_low[cell, d] - action) ** 2
                elif action > action_high[cell, d]:
                    squared += (action - action_high[cell, d]) ** 2
            if squared > reach_squared:
                continue
            worst = min(best[k - 1], upper[b] * upper[b] * grow)
            for block in range(block_starts[cell], block_starts[cell + 1]):
                # the distance from the key to the box of the block's keys bounds its points'
                gap = 0.0
                for d in range(width):
                    value = queries[b, d]
                    if value < block_low[block, d]:
                        gap += (np.float64(block_low[block, d]) - value) ** 2
                    elif value > block_high[block, d]:
                        gap += (value - np.float64(block_high[block, d])) ** 2
                if gap > worst * grow:
                    continue
                for i in range(block_first[block], block_first[block + 1]):
                    distance = 0.0
                    for d in range(state_dim):
                        diff = np.float64(queries[b, d]) - np.float64(grouped_keys[i, d])
                        distance += diff * diff
                    if distance >= worst:
                        continue
                    for d in range(state_dim, width):
                        diff = np.float64(queries[b, d]) - np.float64(grouped_keys[i, d])
                        distance += diff * diff
                    if distance < worst:
                        j = k - 1
                        while j > 0 and best[j - 1] > distance:
                            best[j] = best[j - 1]
                            result[b, j] = result[b, j - 1]
                            j -= 1
                        best[j] = distance
                        result[b, j] = grouped_rows[i]
                        worst = min(best[k - 1], upper[b] * upper[b] * grow)
    return result
