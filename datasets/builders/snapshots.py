"""Behaviour-policy snapshots: small numpy policies, stored together as one safetensors file per task.

A :class:`PolicySnapshot` is what data collection needs of a trained Gaussian policy: the observation
normaliser, the weights of the mean network (tanh MLP) and the log standard deviation. It acts in numpy
(no torch, no threads), which keeps collection deterministic and light.

File layout (:func:`save_snapshots` / :func:`load_snapshots`): tensors named
``snapshot_{i:03d}.{obs_mean|obs_std|log_std|action_low|action_high|w{j}|b{j}}`` in float32, and the
safetensors header metadata ``{"saferl": <JSON>}`` holding each snapshot's training statistics and the
file-level facts (task, recipe, training time, package versions). safetensors stores no code: loading
cannot execute anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_NAME = re.compile(r"^snapshot_(\d{3})\.(\w+)$")
METADATA_KEY = "saferl"


@dataclass
class PolicySnapshot:
    """A Gaussian policy frozen at one moment of training.

    ``mean(obs) = W_L tanh(... tanh(W_1 s_bar + b_1) ...) + b_L`` with
    ``s_bar = clip((obs - obs_mean) / obs_std, -10, 10)``; actions live in ``[-1, 1]`` and are mapped
    linearly onto the simulator's box ``[action_low, action_high]``. ``stats`` holds JSON-able facts of
    its training moment (steps, multiplier, cost limit, episode return and cost).
    """

    obs_mean: np.ndarray
    obs_std: np.ndarray
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    log_std: np.ndarray
    action_low: np.ndarray
    action_high: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.biases) or not self.weights:
            raise ValueError(f"a snapshot needs as many weight matrices as biases (>= 1), got {len(self.weights)}/{len(self.biases)}")
        if self.weights[0].shape[1] != self.obs_mean.shape[0]:
            raise ValueError(
                f"first layer takes {self.weights[0].shape[1]} inputs but the normaliser has {self.obs_mean.shape[0]}"
            )

    @property
    def obs_dim(self) -> int:
        """Observation size."""
        return int(self.obs_mean.shape[0])

    @property
    def act_dim(self) -> int:
        """Action size."""
        return int(self.weights[-1].shape[0])

    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        """Policy mean in ``[-1, 1]``-units (unclipped) for a batch of raw observations ``(n, obs_dim)``."""
        x = np.clip((np.asarray(obs, np.float64) - self.obs_mean) / self.obs_std, -10.0, 10.0)
        last = len(self.weights) - 1
        for j, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = x @ w.T.astype(np.float64) + b
            if j < last:
                x = np.tanh(x)
        return x

    def act(self, obs: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """Actions in the simulator's units: ``mean(obs) + noise``, clipped to ``[-1, 1]`` and mapped onto the box.

        ``noise`` (same shape as the actions, already scaled) is added in ``[-1, 1]``-units; ``None``
        gives the deterministic policy.
        """
        action = self.mean_action(obs)
        if noise is not None:
            action = action + noise
        return scale_to_box(action, self.action_low, self.action_high)

    def num_parameters(self) -> int:
        """Number of stored floats."""
        arrays = [self.obs_mean, self.obs_std, self.log_std, *self.weights, *self.biases]
        return int(sum(a.size for a in arrays))


def scale_to_box(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Clip ``action`` to ``[-1, 1]`` and map it linearly onto the box ``[low, high]`` (float64)."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    return low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)


def _tensors(index: int, snapshot: PolicySnapshot) -> dict[str, np.ndarray]:
    prefix = f"snapshot_{index:03d}."
    named = {
        "obs_mean": snapshot.obs_mean, "obs_std": snapshot.obs_std, "log_std": snapshot.log_std,
        "action_low": snapshot.action_low, "action_high": snapshot.action_high,
    }
    for j, (w, b) in enumerate(zip(snapshot.weights, snapshot.biases)):
        named[f"w{j}"], named[f"b{j}"] = w, b
    return {prefix + key: np.ascontiguousarray(value, dtype=np.float32) for key, value in named.items()}


def save_snapshots(path: str | os.PathLike[str], snapshots: list[PolicySnapshot], metadata: dict[str, Any]) -> Path:
    """Write ``snapshots`` and file-level ``metadata`` (JSON-able) to a safetensors file, atomically."""
    from safetensors.numpy import save_file

    path = Path(path)
    tensors: dict[str, np.ndarray] = {}
    for i, snapshot in enumerate(snapshots):
        tensors.update(_tensors(i, snapshot))
    header = dict(metadata, snapshots=[snapshot.stats for snapshot in snapshots])
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.part")
    save_file(tensors, str(temp), metadata={METADATA_KEY: json.dumps(header, sort_keys=True)})
    os.replace(temp, path)
    return path


def load_snapshots(path: str | os.PathLike[str]) -> tuple[list[PolicySnapshot], dict[str, Any]]:
    """Read a file of :func:`save_snapshots`; return the snapshots (in order) and the file metadata."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no behaviour-policy file at {path}")
    grouped: dict[int, dict[str, np.ndarray]] = {}
    with safe_open(str(path), framework="numpy") as handle:
        header = json.loads((handle.metadata() or {}).get(METADATA_KEY, "{}"))
        for name in handle.keys():
            match = _NAME.match(name)
            if match is None:
                raise ValueError(f"{path}: unexpected tensor '{name}' (not a saferl behaviour-policy file)")
            grouped.setdefault(int(match.group(1)), {})[match.group(2)] = handle.get_tensor(name)
    stats = header.pop("snapshots", [])
    snapshots = []
    for index in sorted(grouped):
        parts = grouped[index]
        layers = sorted(int(k[1:]) for k in parts if k.startswith("w"))
        snapshots.append(
            PolicySnapshot(
                obs_mean=parts["obs_mean"].astype(np.float64), obs_std=parts["obs_std"].astype(np.float64),
                weights=[parts[f"w{j}"] for j in layers], biases=[parts[f"b{j}"].astype(np.float64) for j in layers],
                log_std=parts["log_std"], action_low=parts["action_low"], action_high=parts["action_high"],
                stats=stats[index] if index < len(stats) else {},
            )
        )
    return snapshots, header


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["PolicySnapshot", "scale_to_box", "save_snapshots", "load_snapshots", "file_sha256"]
