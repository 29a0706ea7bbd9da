r"""Out-of-distribution guardians: is a state-action pair inside the support of the data?

OGSRL constrains model rollouts with an OOD cost that is 1 whenever a rollout step ``(s, a)`` leaves the
in-distribution region. Two guardians decide that region here; both expose ``in_distribution(s, a)``
(boolean) and ``ood_cost(s, a) = 1 - in_distribution(s, a)`` (0/1 float).

**Kernel density** (:class:`KernelDensityGuardian`, OGSRL as tested). Each joint vector
``x = [s, a]`` is scaled per dimension to ``[-1, 1]`` with the data's ranges,
``z = (x - centre) / half_range``, and scored by a Gaussian kernel density with bandwidth ``b``:

.. math::

    \log \hat p(z) = \log \frac{1}{M} \sum_{j=1}^{M} \exp\!\Big(-\frac{\lVert z - z_j\rVert^2}{2 b^2}\Big)
                    - \frac{D}{2} \log(2 \pi b^2)

over ``M`` support points ``z_j``. A pair is in-distribution when ``log p(z) >= threshold``, the
``percentile``-th percentile (5 by default) of the *leave-one-out* log densities of training points, so
that about ``percentile`` % of fresh samples from the data distribution are flagged.

*Approximation for large data.* The exact estimator sums over all ``N`` training points and calibrates on
all ``N``, i.e. ``O(N^2 D)`` work. Here the support is a uniform random subsample of ``max_support``
points (an unbiased estimate of the full-data density at every query) and the threshold is calibrated on
``calibration_size`` random training points, each scored without its own kernel. Both are exact when the
data are smaller than those sizes; the agreement of the approximate decisions with the exact ones is
measured in ``tests/constraints/test_ood.py`` and ``docs/constraints/ood.md``.

**Ensemble disagreement** (:class:`EnsembleDisagreementGuardian`). A dynamics ensemble
``f_1..f_n`` predicts, e.g., the next state; its disagreement

.. math::

    u(s, a) = \max_i \big\lVert f_i(s, a) - \tfrac{1}{n} \textstyle\sum_k f_k(s, a) \big\rVert_2

grows away from the data the members were fitted on. A pair is in-distribution when ``u`` is at most
the ``percentile``-th percentile (95 by default) of ``u`` over training pairs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


def _subsample_rows(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``min(n, size)`` distinct row indices drawn uniformly (all rows, in order, when ``n <= size``)."""
    if n <= size:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:size]


def _check_percentile(percentile: float) -> None:
    """Reject percentiles outside the open interval (0, 100)."""
    if not 0.0 < percentile < 100.0:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")


def _check_positive_int(name: str, value: int) -> None:
    """Reject sizes that are not positive integers."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class OODGuardian(ABC):
    """Common interface: ``in_distribution(s, a)`` decides, ``ood_cost`` turns the decision into a cost."""

    @abstractmethod
    def in_distribution(self, observations: ArrayLike, actions: ArrayLike) -> torch.Tensor:
        """Boolean ``(B,)``: whether each pair lies in the data's region."""

    def ood_cost(self, observations: ArrayLike, actions: ArrayLike) -> torch.Tensor:
        """The OOD cost ``1 - in_distribution(s, a)`` as 0/1 floats, shape ``(B,)``."""
        return (~self.in_distribution(observations, actions)).float()


class KernelDensityGuardian(OODGuardian):
    """Gaussian kernel density over ``[s, a]`` scaled to ``[-1, 1]``, thresholded at a low percentile.

    Args:
        bandwidth: kernel standard deviation ``b`` in scaled units (OGSRL: 0.535).
        percentile: percentile of leave-one-out training log densities used as threshold (OGSRL: 5).
        max_support: most support points kept (uniform subsample beyond it).
        calibration_size: most training points scored to set the threshold.
        chunk_size: query rows per distance block (bounds memory at ``chunk_size * max_support`` floats).
        seed: seed of the subsampling, so that a fit is reproducible.

    Call :meth:`fit` before querying. Queries run on the device the guardian was moved to with
    :meth:`to` (CPU by default) and return tensors there.
    """

    state_keys = (
        "bandwidth", "percentile", "max_support", "calibration_size", "chunk_size", "seed",
        "centre", "half_range", "support", "threshold",
    )
    """Keys of :meth:`state_dict`."""

    def __init__(
        self,
        bandwidth: float = 0.535,
        percentile: float = 5.0,
        max_support: int = 20_000,
        calibration_size: int = 10_000,
        chunk_size: int = 256,
        seed: int = 0,
    ) -> None:
        if not bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
        _check_percentile(percentile)
        _check_positive_int("max_support", max_support)
        _check_positive_int("calibration_size", calibration_size)
        _check_positive_int("chunk_size", chunk_size)
        if max_support < 2:
            raise ValueError(f"max_support must be at least 2 for leave-one-out calibration, got {max_support}")
        self.bandwidth = float(bandwidth)
        self.percentile = float(percentile)
        self.max_support = max_support
        self.calibration_size = calibration_size
        self.chunk_size = chunk_size
        self.seed = seed
        self.device = torch.device("cpu")
        self.centre: torch.Tensor | None = None
        self.half_range: torch.Tensor | None = None
        self.support: torch.Tensor | None = None
        self.threshold: float | None = None

    # ------------------------------------------------------------------ fitting
    def fit(self, observations: ArrayLike, actions: ArrayLike) -> "KernelDensityGuardian":
        """Set the scaling from the data's ranges, draw the support, calibrate the threshold; return self."""
        joint = self._joint(observations, actions, fitted=False)
        n = joint.shape[0]
        if n < 2:
            raise ValueError(f"fit needs at least 2 data points, got {n}")
        low, high = joint.min(dim=0).values, joint.max(dim=0).values
        self.centre = (high + low) / 2
        half_range = (high - low) / 2
        # A constant dimension has no range: leave it unscaled (centred only) instead of dividing by 0.
        self.half_range = torch.where(half_range > 0, half_range, torch.ones_like(half_range))
        generator = torch.Generator().manual_seed(self.seed)
        support_rows = _subsample_rows(n, self.max_support, generator).to(self.device)
        calibration_rows = _subsample_rows(n, self.calibration_size, generator).to(self.device)
        self.support = self._scale(joint[support_rows])
        loo = self._log_density_scaled(
            self._scale(joint[calibration_rows]), exclude=(calibration_rows, support_rows)
        )
        self.threshold = float(torch.quantile(loo, self.percentile / 100.0))
        return self

    # ------------------------------------------------------------------ queries
    def log_density(self, observations: ArrayLike, actions: ArrayLike) -> torch.Tensor:
        """``log p(z)`` of each pair in scaled coordinates (see the module docstring), shape ``(B,)``."""
        return self._log_density_scaled(self._scale(self._joint(observations, actions, fitted=True)))

    def in_distribution(self, observations: ArrayLike, actions: ArrayLike) -> torch.Tensor:
        """Boolean ``(B,)``: ``log p(z) >= threshold``."""
        return self.log_density(observations, actions) >= self.threshold

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters (plain types) and the fitted scaling, support and threshold (tensors, floats)."""
        self._require_fitted()
        return {
            "bandwidth": self.bandwidth,
            "percentile": self.percentile,
            "max_support": self.max_support,
            "calibration_size": self.calibration_size,
            "chunk_size": self.chunk_size,
            "seed": self.seed,
            "centre": self.centre.cpu(),
            "half_range": self.half_range.cpu(),
            "support": self.support.cpu(),
            "threshold": self.threshold,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a guardian saved by :meth:`state_dict` (onto this guardian's device)."""
        missing = set(self.state_keys) - state.keys()
        if missing:
            raise ValueError(f"KernelDensityGuardian state is missing {sorted(missing)}; save it with state_dict()")
        self.bandwidth = float(state["bandwidth"])
        self.percentile = float(state["percentile"])
        self.max_support = int(state["max_support"])
        self.calibration_size = int(state["calibration_size"])
        self.chunk_size = int(state["chunk_size"])
        self.seed = int(state["seed"])
        self.centre = state["centre"].to(self.device, torch.float32)
        self.half_range = state["half_range"].to(self.device, torch.float32)
        self.support = state["support"].to(self.device, torch.float32)
        self.threshold = float(state["threshold"])

    def to(self, device: torch.device | str) -> "KernelDensityGuardian":
        """Move the fitted tensors (and future queries) to ``device``; return self."""
        self.device = torch.device(device)
        for name in ("centre", "half_range", "support"):
            tensor = getattr(self, name)
            if tensor is not None:
                setattr(self, name, tensor.to(self.device))
        return self

    # ------------------------------------------------------------------ internals
    def _require_fitted(self) -> None:
        """Raise a ValueError naming the fix when :meth:`fit` has not run."""
        if self.support is None:
            raise ValueError("the KernelDensityGuardian is not fitted; call fit(observations, actions) first")

    def _joint(self, observations: ArrayLike, actions: ArrayLike, fitted: bool) -> torch.Tensor:
        """``[s, a]`` as float32 on the guardian's device, with shape checks."""
        if fitted:
            self._require_fitted()
        obs = torch.as_tensor(observations, dtype=torch.float32, device=self.device)
        act = torch.as_tensor(actions, dtype=torch.float32, device=self.device)
        if obs.dim() != 2 or act.dim() != 2 or obs.shape[0] != act.shape[0]:
            raise ValueError(
                f"observations and actions must be (B, obs_dim) and (B, act_dim), got {tuple(obs.shape)} "
                f"and {tuple(act.shape)}"
            )
        joint = torch.cat([obs, act], dim=1)
        if fitted and joint.shape[1] != self.support.shape[1]:
            raise ValueError(
                f"the guardian was fitted on [s, a] of dimension {self.support.shape[1]}, got {joint.shape[1]}"
            )
        return joint

    def _scale(self, joint: torch.Tensor) -> torch.Tensor:
        """``z = (x - centre) / half_range``: the data's range maps to ``[-1, 1]``."""
        return (joint - self.centre) / self.half_range

    def _log_density_scaled(
        self, queries: torch.Tensor, exclude: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Log kernel density of scaled queries over the support, by chunks of rows.

        ``exclude = (query_rows, support_rows)`` gives the data row of every query and support point; a
        pair with the same row is left out of the sum (leave-one-out) and the normaliser shrinks by one.
        """
        support = self.support
        support_sq = support.square().sum(dim=1)
        dim = support.shape[1]
        log_norm = 0.5 * dim * math.log(2 * math.pi * self.bandwidth**2)
        out = []
        for start in range(0, queries.shape[0], self.chunk_size):
            block = queries[start : start + self.chunk_size]
            # ||z - z_j||^2 = ||z||^2 + ||z_j||^2 - 2 z.z_j, in place to keep one (chunk, M) buffer.
            sq_dist = torch.addmm(block.square().sum(dim=1, keepdim=True) + support_sq, block, support.T, alpha=-2)
            logits = sq_dist.clamp_min_(0).mul_(-0.5 / self.bandwidth**2)
            count = torch.full((block.shape[0],), float(support.shape[0]), device=block.device)
            if exclude is not None:
                query_rows, support_rows = exclude
                same = query_rows[start : start + self.chunk_size, None] == support_rows[None, :]
                logits = logits.masked_fill(same, -math.inf)
                count = count - same.sum(dim=1)
            out.append(torch.logsumexp(logits, dim=1) - count.log() - log_norm)
        return torch.cat(out)


class EnsembleDisagreementGuardian(OODGuardian):
    """Flags pairs where a dynamics ensemble disagrees more than it does on most of the training data.

    Args:
        predict: maps ``(observations (B, obs_dim), actions (B, act_dim))`` to member predictions
            ``(n_members, B, out_dim)``, e.g. ``lambda s, a: ensemble(torch.cat([s, a], -1))`` for an
            :class:`saferl.networks.mlp.EnsembleMLP`. The guardian does not own or checkpoint the ensemble.
        percentile: percentile of training disagreement used as threshold (95: about 5 % flagged).
        calibration_size: most training pairs scored to set the threshold.
        chunk_size: pairs per ensemble call during calibration.
        seed: seed of the calibration subsample.
    """

    state_keys = ("percentile", "calibration_size", "chunk_size", "seed", "threshold")
    """Keys of :meth:`state_dict`."""

    def __init__(
        self,
        predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        percentile: float = 95.0,
        calibration_size: int = 100_000,
        chunk_size: int = 8192,
        seed: int = 0,
    ) -> None:
        _check_percentile(percentile)
        _check_positive_int("calibration_size", calibration_size)
        _check_positive_int("chunk_size", chunk_size)
        self.predict = predict
        self.percentile = float(percentile)
        self.calibration_size = calibration_size
        self.chunk_size = chunk_size
        self.seed = seed
        self.threshold: float | None = None

    @torch.no_grad()
    def disagreement(self, observations: ArrayLike, actions: ArrayLike) -> torch.Tensor:
        """``u(s, a) = max_i ||f_i(s, a) - mean_k f_k(s, a)||_2``, shape ``(B,)``."""
        obs = torch.as_tensor(observations, dtype=torch.float32)
        act = torch.as_tensor(actions, dtype=torch.float32)
        predictions = self.predict(obs, act)
        if predictions.dim() != 3 or predictions.shape[1] != obs.shape[0]:
            raise ValueError(
                f"predict must return (n_members, B={obs.shape[0]}, out_dim), got {tuple(predictions.shape)}"
            )
        if predictions.shape[0] < 2:
            raise ValueError("ensemble disagreement needs at least 2 members")
        deviation = predictions - predictions.mean(dim=0, keepdim=True)
        return deviation.norm(dim=2).max(dim=0).values

    def fit(self, observations: ArrayLike, actions: ArrayLike) -> "EnsembleDisagreementGuardian":
        """Set the threshold to the ``percentile`` of disagreement over (a subsample of) training pairs."""
        obs = torch.as_tensor(observations, dtype=torch.float32)
        act = torch.as_tensor(actions, dtype=torch.float32)
        if obs.shape[0] != act.shape[0] or obs.shape[0] == 0:
            raise ValueError(f"fit needs as many observations as actions (>= 1), got {obs.shape[0]} and {act.shape[0]}")
        rows = _subsample_rows(obs.shape[0], self.calibration_size, torch.Generator().manual_seed(self.seed))
        scores = torch.cat(
            [
                self.disagreement(obs[rows[i : i + self.chunk_size]], act[rows[i : i + self.chunk_size]])
                for i in range(0, rows.numel(), self.chunk_size)
            ]
        )
        self.threshold = float(torch.quantile(scores.float().cpu(), self.percentile / 100.0))
        return self

    def in_distribution(self, observations: ArrayLike, actions: ArrayLike) -> torch.Tensor:
        """Boolean ``(B,)``: ``u(s, a) <= threshold``."""
        if self.threshold is None:
            raise ValueError("the EnsembleDisagreementGuardian is not fitted; call fit(observations, actions) first")
        return self.disagreement(observations, actions) <= self.threshold

    def state_dict(self) -> dict[str, Any]:
        """The percentile, sizes and fitted threshold (plain types; the ensemble is saved by its owner)."""
        return {
            "percentile": self.percentile,
            "calibration_size": self.calibration_size,
            "chunk_size": self.chunk_size,
            "seed": self.seed,
            "threshold": self.threshold,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the values saved by :meth:`state_dict`."""
        missing = set(self.state_keys) - state.keys()
        if missing:
            raise ValueError(
                f"EnsembleDisagreementGuardian state is missing {sorted(missing)}; save it with state_dict()"
            )
        self.percentile = float(state["percentile"])
        self.calibration_size = int(state["calibration_size"])
        self.chunk_size = int(state["chunk_size"])
        self.seed = int(state["seed"])
        self.threshold = None if state["threshold"] is None else float(state["threshold"])


__all__ = ["OODGuardian", "KernelDensityGuardian", "EnsembleDisagreementGuardian"]
