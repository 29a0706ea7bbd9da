"""The one transition dataset type of saferl.

A :class:`TransitionDataset` holds contiguous float32 arrays (one row per transition), keeps true
terminations (``terminals``) and time-limit truncations (``timeouts``) apart, and knows its episode
boundaries. Random batches go straight into torch tensors by one vectorised gather (no per-sample
Python), and trajectory views (return, cost return, length) serve the filtering transforms.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from .errors import DatasetFormatError

FLOAT_FIELDS = ("observations", "actions", "rewards", "costs", "next_observations")
BOOL_FIELDS = ("terminals", "timeouts")
ARRAY_FIELDS = FLOAT_FIELDS + BOOL_FIELDS


@dataclass(frozen=True)
class Batch:
    """A batch of transitions as torch tensors (float32; ``terminals``/``timeouts`` as 0/1 floats)."""


    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    costs: torch.Tensor
    next_observations: torch.Tensor
    terminals: torch.Tensor
    timeouts: torch.Tensor
    indices: torch.Tensor
    """Row of each sampled transition in its dataset (int64), e.g. for per-state precomputed lookups."""

    def to(self, device: torch.device | str) -> "Batch":
        """Return the batch on ``device``."""
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})

    def rows(self, start: int, stop: int) -> "Batch":
        """The sub-batch of rows ``start:stop`` (views, no copy)."""
        return Batch(**{f.name: getattr(self, f.name)[start:stop] for f in dataclasses.fields(self)})

    def __len__(self) -> int:
        return int(self.observations.shape[0])


@dataclass
class TransitionDataset:
    """Transitions of an offline dataset, with episode boundaries.

    Arrays have ``N`` rows: ``observations``/``next_observations`` ``(N, obs_dim)``, ``actions``
    ``(N, act_dim)``, ``rewards``/``costs`` ``(N,)`` as float32, ``terminals``/``timeouts`` ``(N,)``
    as bool. A trajectory ends at a row whose ``terminals`` or ``timeouts`` is set, or at the last row.
    ``metadata`` holds plain JSON-able facts (task id, source file, ...).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    costs: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in FLOAT_FIELDS:
            setattr(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float32))
        for name in BOOL_FIELDS:
            setattr(self, name, np.ascontiguousarray(getattr(self, name)).astype(bool, copy=False))
        self.validate()
        self._tensors: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check shapes, lengths and finiteness; raise :class:`DatasetFormatError` naming the problem."""
        source = self.metadata.get("source", "dataset")
        n = self.observations.shape[0] if self.observations.ndim >= 1 else -1
        if self.observations.ndim != 2:
            raise DatasetFormatError(
                f"{source}: 'observations' must be 2-D (N, obs_dim), got shape {self.observations.shape}"
            )
        if self.actions.ndim != 2:
            raise DatasetFormatError(f"{source}: 'actions' must be 2-D (N, act_dim), got shape {self.actions.shape}")
        if self.next_observations.shape != self.observations.shape:
            raise DatasetFormatError(
                f"{source}: 'next_observations' has shape {self.next_observations.shape}, "
                f"expected {self.observations.shape} like 'observations'"
            )
        for name in ("rewards", "costs", "terminals", "timeouts"):
            arr = getattr(self, name)
            if arr.ndim != 1:
                raise DatasetFormatError(f"{source}: '{name}' must be 1-D (N,), got shape {arr.shape}")
        for name in ARRAY_FIELDS:
            length = getattr(self, name).shape[0]
            if length != n:
                raise DatasetFormatError(
                    f"{source}: length mismatch: '{name}' has {length} rows but 'observations' has {n}"
                )
        if n == 0:
            raise DatasetFormatError(f"{source}: the dataset is empty (0 transitions)")
        for name in FLOAT_FIELDS:
            arr = getattr(self, name)
            finite = np.isfinite(arr)
            if not finite.all():
                bad = int(np.argwhere(~finite)[0][0])
                kind = "NaN" if np.isnan(arr).any() else "inf"
                raise DatasetFormatError(
                    f"{source}: '{name}' holds {int((~finite).sum())} {kind} value(s) (first at row {bad}); "
                    "clean or drop those transitions before loading"
                )

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return int(self.observations.shape[0])

    @property
    def obs_dim(self) -> int:
        """Observation dimension."""
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        """Action dimension."""
        return int(self.actions.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by the transition arrays."""
        return int(sum(getattr(self, name).nbytes for name in ARRAY_FIELDS))

    # ------------------------------------------------------------------ trajectories
    @property
    def episode_ends(self) -> np.ndarray:
        """Exclusive end index of every trajectory, ascending; the last one is ``len(self)``."""
        ends = np.flatnonzero(self.terminals | self.timeouts) + 1
        if ends.size == 0 or ends[-1] != len(self):
            ends = np.append(ends, len(self))
        return ends.astype(np.int64)

    @property
    def episode_starts(self) -> np.ndarray:
        """Start index of every trajectory."""
        ends = self.episode_ends
        return np.concatenate([[0], ends[:-1]]).astype(np.int64)

    @property
    def num_trajectories(self) -> int:
        """Number of trajectories."""
        return int(self.episode_ends.size)

    def trajectory_ids(self) -> np.ndarray:
        """Trajectory index of every transition, shape ``(N,)``."""
        return np.repeat(np.arange(self.num_trajectories), self.trajectory_lengths())

    def trajectory_lengths(self) -> np.ndarray:
        """Length of every trajectory."""
        return np.diff(np.concatenate([[0], self.episode_ends]))

    def trajectory_returns(self) -> np.ndarray:
        """Undiscounted reward return of every trajectory."""
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts)

    def trajectory_cost_returns(self) -> np.ndarray:
        """Undiscounted cost return of every trajectory."""
        return np.add.reduceat(self.costs.astype(np.float64), self.episode_starts)

    def select_trajectories(self, indices: np.ndarray | list[int]) -> "TransitionDataset":
        """A new dataset holding only the trajectories ``indices`` (in the order given)."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            raise DatasetFormatError("the selection keeps no trajectory; loosen the filter")
        starts, ends = self.episode_starts, self.episode_ends
        lengths = ends[indices] - starts[indices]
        offsets = np.repeat(starts[indices] - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        rows = np.arange(int(lengths.sum())) + offsets
        return self.select_rows(rows)

    def select_rows(self, rows: np.ndarray) -> "TransitionDataset":
        """A new dataset of the given transition rows (boundaries follow the flags of those rows)."""
        arrays = {name: getattr(self, name)[rows] for name in ARRAY_FIELDS}
        return TransitionDataset(**arrays, metadata=dict(self.metadata))

    def iter_trajectories(self) -> Iterator[dict[str, np.ndarray]]:
        """Yield each trajectory as a dict of array views."""
        for start, end in zip(self.episode_starts, self.episode_ends):
            yield {name: getattr(self, name)[start:end] for name in ARRAY_FIELDS}

    def arrays(self) -> dict[str, np.ndarray]:
        """The transition arrays by name (no copy)."""
        return {name: getattr(self, name) for name in ARRAY_FIELDS}

    def replace(self, **arrays: np.ndarray) -> "TransitionDataset":
        """A copy with some arrays replaced (the others shared)."""
        merged = {**self.arrays(), **arrays}
        return TransitionDataset(**merged, metadata=dict(self.metadata))

    @staticmethod
    def concatenate(parts: list["TransitionDataset"]) -> "TransitionDataset":
        """Concatenate datasets (each keeps its own trajectory boundaries)."""
        if not parts:
            raise DatasetFormatError("nothing to concatenate")
        ends_closed = []
        for part in parts:
            arrays = part.arrays()
            if not (part.terminals[-1] or part.timeouts[-1]):
                timeouts = arrays["timeouts"].copy()
                timeouts[-1] = True
                arrays["timeouts"] = timeouts
            ends_closed.append(arrays)
        merged = {name: np.concatenate([a[name] for a in ends_closed]) for name in ARRAY_FIELDS}
        return TransitionDataset(**merged, metadata=dict(parts[0].metadata))

    # ------------------------------------------------------------------ sampling
    def tensors(self) -> dict[str, torch.Tensor]:
        """Torch views of the arrays (shared memory; terminals and timeouts as float32)."""
        if self._tensors is None:
            tensors = {name: torch.from_numpy(getattr(self, name)) for name in FLOAT_FIELDS}
            for name in BOOL_FIELDS:
                tensors[name] = torch.from_numpy(getattr(self, name).astype(np.float32))
            self._tensors = tensors
        return self._tensors

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """Draw ``batch_size`` transitions uniformly with replacement, as one vectorised gather."""
        tensors = self.tensors()
        index = torch.randint(len(self), (batch_size,), generator=generator)
        return Batch(**{name: tensor.index_select(0, index) for name, tensor in tensors.items()}, indices=index)


__all__ = ["Batch", "TransitionDataset", "ARRAY_FIELDS", "FLOAT_FIELDS", "BOOL_FIELDS"]
