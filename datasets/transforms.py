"""Pure transforms of a :class:`TransitionDataset`, all on whole trajectories.

Every function returns a new dataset and leaves its input untouched; nothing is written to disk
(DSRL's ``pre_process_data`` saves a PNG into the working directory as a side effect: these do not).
Randomness comes only from the ``seed`` argument (an ``int`` or a ``numpy.random.Generator``).

Each trajectory ``i`` is a point ``(C_i, R_i)`` in the (cost-return, reward-return) plane, with
``C_i = sum_t c_t`` and ``R_i = sum_t r_t`` undiscounted. Selections keep the trajectories' original
order (so a final trajectory without an end flag stays last and keeps its boundary).

Contents:

- :func:`train_test_split`: a random split by whole trajectories.
- Behaviour-cloning selections of OSRL: :func:`select_bc_all`, :func:`select_bc_safe`,
  :func:`select_bc_frontier` (with :func:`pareto_optimal_mask` and :func:`fit_pareto_frontier`).
- The pieces of DSRL's ``pre_process_data``: :func:`density_filter`, :func:`inject_outliers`,
  :func:`inpaint`, :func:`epsilon_filter`, :func:`add_observation_noise`, and :func:`dsrl_preprocess`
  which applies them in DSRL's order. Each docstring says where saferl departs from DSRL.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .types import TransitionDataset

SeedLike = int | np.random.Generator
"""A seed for :func:`numpy.random.default_rng`, or a generator used as is."""

OUTLIER_REWARD_FACTOR = 1.5
"""DSRL's outliers keep their states and actions but get their rewards multiplied by this factor."""


# ---------------------------------------------------------------------------------------------- helpers
def _rng(seed: SeedLike) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return np.random.default_rng(int(seed))
    raise TypeError(f"seed must be an int or a numpy.random.Generator, got {type(seed).__name__}")


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def _keep(dataset: TransitionDataset, keep: np.ndarray, step: str, hint: str) -> TransitionDataset:
    """The trajectories where ``keep`` is true, in their original order; an error if none is left."""
    if not keep.any():
        raise ValueError(f"{step} keeps none of the {keep.size} trajectories; {hint}")
    return dataset.select_trajectories(np.flatnonzero(keep))


def _returns(dataset: TransitionDataset) -> tuple[np.ndarray, np.ndarray]:
    """Cost returns and reward returns of every trajectory (float64)."""
    return dataset.trajectory_cost_returns(), dataset.trajectory_returns()


# ---------------------------------------------------------------------------------------------- split
def train_test_split(
    dataset: TransitionDataset, test_fraction: float, seed: SeedLike
) -> tuple[TransitionDataset, TransitionDataset]:
    """Split ``dataset`` into (train, test) by whole trajectories, uniformly at random.

    With ``n`` trajectories, the test part holds ``n_test = floor(test_fraction * n + 1/2)``
    trajectories drawn without replacement, the train part the other ``n - n_test``; each part keeps
    the original trajectory order. Raises ``ValueError`` unless ``0 < test_fraction < 1`` and both
    parts get at least one trajectory.
    """
    test_fraction = _finite("test_fraction", test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    n = dataset.num_trajectories
    n_test = int(np.floor(test_fraction * n + 0.5))
    if not 1 <= n_test <= n - 1:
        raise ValueError(
            f"test_fraction={test_fraction} of {n} trajectories gives {n_test} test and {n - n_test} train "
            "trajectories; both parts need at least one: change test_fraction or use a larger dataset"
        )
    is_test = np.zeros(n, dtype=bool)
    is_test[_rng(seed).permutation(n)[:n_test]] = True
    return dataset.select_trajectories(np.flatnonzero(~is_test)), dataset.select_trajectories(np.flatnonzero(is_test))


# ---------------------------------------------------------------------------------------------- BC selections
def select_bc_all(dataset: TransitionDataset) -> TransitionDataset:
    """BC-All: every trajectory (a new dataset object sharing the arrays of ``dataset``)."""
    return dataset.replace()


def select_bc_safe(dataset: TransitionDataset, cost_limit: float) -> TransitionDataset:
    """BC-Safe: the trajectories whose cost return satisfies ``C_i <= cost_limit``.

    ``cost_limit`` is an episodic (undiscounted) cost limit, the kappa of DSRL's normalised cost.
    Departs from OSRL, whose loop skips the dataset's last trajectory and uses discounted returns when
    ``gamma < 1``: here every trajectory counts and returns are undiscounted.
    """
    cost_limit = _finite("cost_limit", cost_limit)
    cost_returns = dataset.trajectory_cost_returns()
    return _keep(
        dataset, cost_returns <= cost_limit, "select_bc_safe",
        f"the smallest cost return is {cost_returns.min():g} > cost_limit={cost_limit:g}: raise cost_limit",
    )


def pareto_optimal_mask(cost_returns: np.ndarray, reward_returns: np.ndarray) -> np.ndarray:
    """Which points are Pareto-optimal for (low cost, high reward).

    Point ``i`` is dominated when some ``j`` has ``C_j <= C_i`` and ``R_j >= R_i`` with
    ``(C_j, R_j) != (C_i, R_i)``. Of several identical optimal points only the first is marked, so the
    marked points have distinct costs. Sorting by cost (ties by reward, highest first), a point is
    optimal iff its reward is strictly above the best reward of every point before it: O(n log n).
    """
    costs = np.asarray(cost_returns, dtype=np.float64)
    rewards = np.asarray(reward_returns, dtype=np.float64)
    if costs.ndim != 1 or costs.shape != rewards.shape or costs.size == 0:
        raise ValueError(
            f"cost_returns and reward_returns must be non-empty 1-D arrays of equal length, "
            f"got shapes {costs.shape} and {rewards.shape}"
        )
    order = np.lexsort((-rewards, costs))
    sorted_rewards = rewards[order]
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(sorted_rewards)[:-1]])
    mask = np.zeros(costs.size, dtype=bool)
    mask[order] = sorted_rewards > best_before
    return mask


def fit_pareto_frontier(
    cost_returns: np.ndarray, reward_returns: np.ndarray, degree: int | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """Fit the reward-versus-cost Pareto frontier ``f(C)`` of a set of trajectories.

    The Pareto-optimal points (:func:`pareto_optimal_mask`) ``(C_k, R_k)``, sorted by cost, have
    increasing rewards. With ``degree=None`` the frontier is their piecewise-linear interpolation,
    constant beyond the first and the last point (so ``f(C) = max_i R_i`` for costs above the costliest
    optimal point), which never overshoots the data. With an integer ``degree`` it is the
    least-squares polynomial of degree ``min(degree, K - 1)`` through the ``K`` optimal points, as
    OSRL's CDT does with degree 3 (the degree drops so that the fit stays determined).
    Returns a vectorised function of the cost return.
    """
    mask = pareto_optimal_mask(cost_returns, reward_returns)
    costs = np.asarray(cost_returns, dtype=np.float64)[mask]
    rewards = np.asarray(reward_returns, dtype=np.float64)[mask]
    order = np.argsort(costs)
    costs, rewards = costs[order], rewards[order]
    if degree is None:
        return lambda c: np.interp(np.asarray(c, dtype=np.float64), costs, rewards)
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 0:
        raise ValueError(f"degree must be None or a non-negative int, got {degree!r}")
    return np.polynomial.Polynomial.fit(costs, rewards, deg=min(int(degree), costs.size - 1))


def select_bc_frontier(
    dataset: TransitionDataset,
    *,
    reward_max: float | None = None,
    reward_min: float | None = None,
    degree: int | None = None,
) -> TransitionDataset:
    """BC-Frontier: the trajectories near the fitted Pareto frontier of (cost return, reward return).

    Keeps trajectory ``i`` when ``|R_i - f(C_i)| <= (R_max - R_min) / 5``, with ``f`` the frontier
    fitted by :func:`fit_pareto_frontier` (``degree`` as there: piecewise-linear by default) on all
    trajectories. ``R_max``/``R_min`` are ``reward_max``/``reward_min`` when given (e.g. a task's
    normalisation constants), else the largest/smallest trajectory return of ``dataset``.
    Departs from OSRL, whose released BC-Frontier uses hand-drawn per-task lines with a fixed
    half-width of 50 (and in its latest version no frontier at all).
    """
    cost_returns, reward_returns = _returns(dataset)
    r_max = reward_returns.max() if reward_max is None else _finite("reward_max", reward_max)
    r_min = reward_returns.min() if reward_min is None else _finite("reward_min", reward_min)
    if r_max < r_min:
        raise ValueError(f"reward_max={r_max:g} is below reward_min={r_min:g}; swap them")
    half_width = (r_max - r_min) / 5.0
    frontier = fit_pareto_frontier(cost_returns, reward_returns, degree)
    near = np.abs(reward_returns - frontier(cost_returns)) <= half_width
    return _keep(dataset, near, "select_bc_frontier", "widen the band with a smaller reward_min")


# ---------------------------------------------------------------------------------------------- DSRL pieces
def _bin_index(values: np.ndarray, bins: int) -> np.ndarray:
    """Index of equal-width bins over ``[min, max]``, the top edge inside the last bin."""
    low, width = values.min(), values.max() - values.min()
    if width == 0:
        return np.zeros(values.size, dtype=np.int64)
    return np.clip(np.floor((values - low) / (width / bins)), 0, bins - 1).astype(np.int64)


def _density_keep(
    cost_returns: np.ndarray, reward_returns: np.ndarray,
    cbins: int, rbins: int, max_npb: int, min_npb: int, rng: np.random.Generator,
) -> np.ndarray:
    """Mask of the trajectories the grid filter keeps (see :func:`density_filter`)."""
    settings = (("cbins", cbins, 1), ("rbins", rbins, 1), ("max_npb", max_npb, 1), ("min_npb", min_npb, 0))
    for name, value, least in settings:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    bin_id = _bin_index(cost_returns, cbins) * rbins + _bin_index(reward_returns, rbins)
    counts = np.bincount(bin_id)
    # A random order inside each bin; the first max_npb of a bin are a uniform draw without replacement.
    order = np.lexsort((rng.random(bin_id.size), bin_id))
    sorted_bins = bin_id[order]
    rank = np.empty(bin_id.size, dtype=np.int64)
    rank[order] = np.arange(bin_id.size) - np.searchsorted(sorted_bins, sorted_bins)
    return (counts[bin_id] > min_npb) & (rank < max_npb)


def density_filter(
    dataset: TransitionDataset,
    *,
    cbins: int = 10,
    rbins: int = 50,
    max_npb: int = 5,
    min_npb: int = 2,
    seed: SeedLike,
) -> TransitionDataset:
    """DSRL's grid filter: even out the density of trajectories in the (cost, reward) plane.

    The box ``[C_min, C_max] x [R_min, R_max]`` of the trajectory returns is cut into ``cbins`` x
    ``rbins`` equal cells; point ``i`` falls in cell
    ``(floor((C_i - C_min) / dC), floor((R_i - R_min) / dR))``, ``dC = (C_max - C_min) / cbins``,
    ``dR = (R_max - R_min) / rbins``. A cell holding ``m <= min_npb`` trajectories is dropped whole;
    otherwise ``min(m, max_npb)`` of them, drawn uniformly without replacement, are kept.
    Defaults are those of DSRL's ``pre_process_data``; DSRL built its datasets with 60 x 50 cells,
    ``max_npb=10``, ``min_npb=1``.

    Departs from DSRL: points on the top edge (``C_i = C_max`` or ``R_i = R_max``) go into the last
    cell instead of an extra cell of their own (where DSRL usually drops them as a lonely cell); a
    zero-width range puts every point into cell 0 instead of dividing by zero; the draw is seeded;
    the kept trajectories keep their original order.
    """
    cost_returns, reward_returns = _returns(dataset)
    keep = _density_keep(cost_returns, reward_returns, cbins, rbins, max_npb, min_npb, _rng(seed))
    return _keep(dataset, keep, "density_filter", "lower min_npb or use fewer bins")


def _inject_outliers(
    dataset: TransitionDataset, outliers_percent: float, cost_limit: float,
    cost_max: float | None, reward_max: float | None, rng: np.random.Generator,
) -> tuple[TransitionDataset, np.ndarray]:
    """The dataset with outliers injected, and the mask of the outlier trajectories."""
    outliers_percent = _finite("outliers_percent", outliers_percent)
    if not 0.0 < outliers_percent <= 1.0:
        raise ValueError(f"outliers_percent must lie in (0, 1], got {outliers_percent}")
    cost_limit = _finite("cost_limit", cost_limit)
    if int(cost_limit) < 1:
        raise ValueError(
            f"outliers get cost returns in 0..int(cost_limit)-1, so cost_limit must be >= 1, got {cost_limit:g}"
        )
    cost_returns, reward_returns = _returns(dataset)
    c_max = cost_returns.max() if cost_max is None else _finite("cost_max", cost_max)
    r_max = reward_returns.max() if reward_max is None else _finite("reward_max", reward_max)
    num = max(int(cost_returns.size * outliers_percent), 1)
    candidates = np.flatnonzero((cost_returns >= c_max / 2) & (reward_returns >= r_max / 2))
    if candidates.size < num:
        raise ValueError(
            f"outliers_percent={outliers_percent:g} asks for {num} outlier(s) but only {candidates.size} "
            f"trajectories have cost return >= {c_max / 2:g} and reward return >= {r_max / 2:g}; "
            "lower outliers_percent"
        )
    chosen = np.sort(rng.choice(candidates, size=num, replace=False))
    new_cost_returns = rng.integers(0, int(cost_limit), size=num)
    lengths = dataset.trajectory_lengths()[chosen]
    if (new_cost_returns > lengths).any():
        raise ValueError(
            f"an outlier needs {new_cost_returns.max()} unit costs but its trajectory has only "
            f"{lengths[new_cost_returns > lengths].min()} steps; use a smaller cost_limit"
        )
    traj_ids = dataset.trajectory_ids()
    rows = np.flatnonzero(np.isin(traj_ids, chosen))
    group = np.searchsorted(chosen, traj_ids[rows])
    # Random ranks inside each outlier trajectory: the steps ranked below its new cost return get cost 1.
    order = np.lexsort((rng.random(rows.size), group))
    rank = np.empty(rows.size, dtype=np.int64)
    rank[order] = np.arange(rows.size) - np.searchsorted(group, group)
    costs = dataset.costs.copy()
    costs[rows] = rank < new_cost_returns[group]
    rewards = dataset.rewards.copy()
    rewards[rows] *= OUTLIER_REWARD_FACTOR
    is_outlier = np.zeros(cost_returns.size, dtype=bool)
    is_outlier[chosen] = True
    return dataset.replace(rewards=rewards, costs=costs), is_outlier


def inject_outliers(
    dataset: TransitionDataset,
    outliers_percent: float,
    cost_limit: float,
    *,
    cost_max: float | None = None,
    reward_max: float | None = None,
    seed: SeedLike,
) -> TransitionDataset:
    """DSRL's "tempting outliers": turn risky high-reward trajectories into safe, even better ones.

    ``k = max(floor(n * outliers_percent), 1)`` trajectories are drawn without replacement among those
    with ``C_i >= cost_max / 2`` and ``R_i >= reward_max / 2``. Each gets a new cost return ``c'``
    drawn uniformly from ``{0, ..., int(cost_limit) - 1}`` (so it looks safe): its costs become 1 on
    ``c'`` distinct steps drawn at random and 0 elsewhere, and its rewards are multiplied by 1.5.
    States and actions stay, so a learner that trusts these labels is lured into unsafe behaviour.
    ``cost_max``/``reward_max`` default to the largest trajectory cost/reward return of ``dataset``
    (DSRL uses the task's constants C_max and R_max, which the registry's TaskSpec holds).
    Raises ``ValueError`` when there are fewer than ``k`` candidates.
    """
    return _inject_outliers(dataset, outliers_percent, cost_limit, cost_max, reward_max, _rng(seed))[0]


def _inpaint_removed(
    cost_returns: np.ndarray, reward_returns: np.ndarray,
    inpaint_ranges: Sequence[Sequence[float]],
    cost_bounds: tuple[float, float], reward_bounds: tuple[float, float],
) -> np.ndarray:
    """Mask of the trajectories inside any inpainting box (see :func:`inpaint`)."""
    boxes = np.asarray(inpaint_ranges, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] == 0:
        raise ValueError(
            "inpaint_ranges must be a non-empty list of (cost_lo, cost_hi, reward_lo, reward_hi) fractions, "
            f"got an array of shape {boxes.shape}"
        )
    if not np.isfinite(boxes).all() or (boxes[:, 0] > boxes[:, 1]).any() or (boxes[:, 2] > boxes[:, 3]).any():
        raise ValueError(f"each inpaint range needs finite fractions with lo <= hi, got {boxes.tolist()}")
    (c_lo, c_hi), (r_lo, r_hi) = cost_bounds, reward_bounds
    cost_edges = c_lo + (c_hi - c_lo) * boxes[:, :2]
    reward_edges = r_lo + (r_hi - r_lo) * boxes[:, 2:]
    c, r = cost_returns[:, None], reward_returns[:, None]
    inside = (cost_edges[:, 0] <= c) & (c <= cost_edges[:, 1]) & (reward_edges[:, 0] <= r) & (r <= reward_edges[:, 1])
    return inside.any(axis=1)


def inpaint(
    dataset: TransitionDataset,
    inpaint_ranges: Sequence[Sequence[float]],
    *,
    cost_bounds: tuple[float, float] | None = None,
    reward_bounds: tuple[float, float] | None = None,
) -> TransitionDataset:
    """DSRL's inpainting: remove every trajectory inside one of the given boxes of the (C, R) plane.

    Each range ``(pc_lo, pc_hi, pr_lo, pr_hi)`` holds fractions of the cost and reward spans; with
    ``cost_bounds = (C_lo, C_hi)`` and ``reward_bounds = (R_lo, R_hi)`` the box is
    ``C_lo + (C_hi - C_lo) [pc_lo, pc_hi]`` x ``R_lo + (R_hi - R_lo) [pr_lo, pr_hi]``, edges included.
    The bounds default to the min/max trajectory returns of ``dataset`` (DSRL takes them from the
    data before any other step; :func:`dsrl_preprocess` does the same).
    """
    cost_returns, reward_returns = _returns(dataset)
    removed = _inpaint_removed(
        cost_returns, reward_returns, inpaint_ranges,
        (cost_returns.min(), cost_returns.max()) if cost_bounds is None else cost_bounds,
        (reward_returns.min(), reward_returns.max()) if reward_bounds is None else reward_bounds,
    )
    return _keep(dataset, ~removed, "inpaint", "shrink the inpaint ranges")


def _epsilon_removed(
    cost_returns: np.ndarray, reward_returns: np.ndarray, candidates: np.ndarray, epsilon: float, cost_limit: float
) -> np.ndarray:
    """Mask of the candidates the epsilon filter removes (see :func:`epsilon_filter`)."""
    epsilon, cost_limit = _finite("epsilon", epsilon), _finite("cost_limit", cost_limit)
    if epsilon == 0:
        return np.zeros(cost_returns.size, dtype=bool)
    side = cost_returns <= cost_limit if epsilon > 0 else cost_returns > cost_limit
    group = candidates & side
    if not group.any():
        kind = "safe (cost return <=" if epsilon > 0 else "unsafe (cost return >"
        raise ValueError(
            f"epsilon={epsilon:g} needs {kind} cost_limit={cost_limit:g}) trajectories, but there are none"
        )
    best = reward_returns[group].max()
    return group & (reward_returns >= best - abs(epsilon))


def epsilon_filter(dataset: TransitionDataset, epsilon: float, cost_limit: float) -> TransitionDataset:
    """DSRL's epsilon filter: remove the trajectories near the best return on one side of the limit.

    ``epsilon > 0`` (harder task): among the safe trajectories (``C_i <= cost_limit``) with best
    return ``R*``, remove those with ``R_i >= R* - epsilon``, the best one included.
    ``epsilon < 0`` (easier task): among the unsafe ones (``C_i > cost_limit``) with best return
    ``R*``, remove those with ``R_i >= R* - |epsilon|``. ``epsilon = 0`` keeps everything.
    Raises ``ValueError`` when the chosen side is empty (DSRL fails on an empty maximum).
    """
    cost_returns, reward_returns = _returns(dataset)
    candidates = np.ones(cost_returns.size, dtype=bool)
    removed = _epsilon_removed(cost_returns, reward_returns, candidates, epsilon, cost_limit)
    return _keep(dataset, ~removed, "epsilon_filter", "use a smaller |epsilon|")


def _add_observation_noise(
    dataset: TransitionDataset, noise_scale: float, rng: np.random.Generator
) -> TransitionDataset:
    """See :func:`add_observation_noise`."""
    noise_scale = _finite("noise_scale", noise_scale)
    if noise_scale < 0:
        raise ValueError(f"noise_scale must be >= 0, got {noise_scale:g}")
    observations = dataset.observations.astype(np.float64)
    next_observations = dataset.next_observations.astype(np.float64)
    sigma = noise_scale * observations.std()
    obs_noise = rng.normal(0.0, sigma, observations.shape)
    next_noise = rng.normal(0.0, sigma, observations.shape)
    # next_observations[t] is the state observations[t + 1] when both rows are in one trajectory and
    # agree: that state gets one perturbation, so the perturbed trajectory stays a chain.
    traj_ids = dataset.trajectory_ids()
    same_state = (traj_ids[:-1] == traj_ids[1:]) & (next_observations[:-1] == observations[1:]).all(axis=1)
    next_noise[:-1][same_state] = obs_noise[1:][same_state]
    return dataset.replace(observations=observations + obs_noise, next_observations=next_observations + next_noise)


def add_observation_noise(dataset: TransitionDataset, noise_scale: float, seed: SeedLike) -> TransitionDataset:
    """DSRL's observation noise: add ``N(0, (noise_scale * sigma)^2)`` to every observation entry.

    ``sigma`` is one scalar, the standard deviation of all entries of ``observations`` (as in DSRL,
    not per dimension). Departs from DSRL, which draws the noise of ``next_observations``
    independently (with the scalar std of ``next_observations``) and so breaks
    ``next_observations[t] == observations[t + 1]``: here a state seen twice gets the same noise, so the
    chain stays consistent; only the last next-observation of a trajectory (and any row where the
    two arrays disagree) gets its own draw.
    """
    return _add_observation_noise(dataset, noise_scale, _rng(seed))


# ---------------------------------------------------------------------------------------------- composed
def dsrl_preprocess(
    dataset: TransitionDataset,
    *,
    cost_limit: float | None = None,
    outliers_percent: float | None = None,
    noise_scale: float | None = None,
    inpaint_ranges: Sequence[Sequence[float]] | None = None,
    epsilon: float | None = None,
    density: float = 1.0,
    cbins: int = 10,
    rbins: int = 50,
    max_npb: int = 5,
    min_npb: int = 2,
    cost_max: float | None = None,
    reward_max: float | None = None,
    seed: SeedLike = 0,
) -> TransitionDataset:
    """DSRL's ``pre_process_data``: the steps below, in DSRL's order, each one skipped when unset.

    1. ``density < 1``: :func:`density_filter` with ``cbins``, ``rbins``, ``max_npb``, ``min_npb``
       (as in DSRL, the value of ``density`` only switches the filter on: DSRL looks its per-task cell
       settings up by it, here they are passed directly).
    2. ``outliers_percent``: :func:`inject_outliers` (needs ``cost_limit``; ``cost_max``/``reward_max``
       default to the largest returns of the input ``dataset``, before step 1).
    3. ``inpaint_ranges``: :func:`inpaint` with bounds taken from the input ``dataset`` before step 1;
       the outliers of step 2 are never inpainted away.
    4. ``epsilon``: :func:`epsilon_filter` on what steps 1-3 kept (needs ``cost_limit``).
    5. ``noise_scale``: :func:`add_observation_noise` on the result.

    ``cost_limit`` is DSRL's target cost (an episodic cost limit). One generator seeded by ``seed``
    serves steps 1, 2 and 5 in turn. Departs from DSRL: no PNG and no print; DSRL's epsilon step indexes
    the full trajectory list after inpainting has shortened it (a bug), here it looks at the kept
    trajectories; trajectories keep their original order; see each step for its own departures.
    """
    density = _finite("density", density)
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must lie in (0, 1] (1 switches the grid filter off), got {density}")
    if cost_limit is None and (outliers_percent is not None or epsilon is not None):
        raise ValueError("outliers_percent and epsilon are defined relative to a cost limit: pass cost_limit")
    rng = _rng(seed)
    cost_returns, reward_returns = _returns(dataset)
    cost_bounds = (cost_returns.min(), cost_returns.max())
    reward_bounds = (reward_returns.min(), reward_returns.max())
    if density < 1.0:
        keep = _density_keep(cost_returns, reward_returns, cbins, rbins, max_npb, min_npb, rng)
        dataset = _keep(dataset, keep, "the density filter", "lower min_npb or use fewer bins")
    is_outlier = np.zeros(dataset.num_trajectories, dtype=bool)
    if outliers_percent is not None:
        dataset, is_outlier = _inject_outliers(
            dataset, outliers_percent, cost_limit, cost_bounds[1] if cost_max is None else cost_max,
            reward_bounds[1] if reward_max is None else reward_max, rng,
        )
    cost_returns, reward_returns = _returns(dataset)
    keep = np.ones(cost_returns.size, dtype=bool)
    if inpaint_ranges is not None:
        keep &= ~_inpaint_removed(cost_returns, reward_returns, inpaint_ranges, cost_bounds, reward_bounds) | is_outlier
    if epsilon is not None:
        keep &= ~_epsilon_removed(cost_returns, reward_returns, keep, epsilon, cost_limit)
    dataset = _keep(dataset, keep, "dsrl_preprocess", "loosen inpaint_ranges or epsilon")
    if noise_scale is not None:
        dataset = _add_observation_noise(dataset, noise_scale, rng)
    return dataset


__all__ = [
    "SeedLike",
    "train_test_split",
    "select_bc_all",
    "select_bc_safe",
    "select_bc_frontier",
    "pareto_optimal_mask",
    "fit_pareto_frontier",
    "density_filter",
    "inject_outliers",
    "inpaint",
    "epsilon_filter",
    "add_observation_noise",
    "dsrl_preprocess",
    "OUTLIER_REWARD_FACTOR",
]
