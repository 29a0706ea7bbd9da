"""Build a task's DSRL-style dataset from its committed behaviour policies, resumably.

:func:`build_dataset` does, for one task and seed:

1. **Plan.** Every behaviour (snapshot ``s`` x action-noise level ``sigma`` of the task's
   :class:`~saferl.datasets.builders.recipes.Recipe`) gets ``episodes_per_behaviour`` episodes; episode
   ``k`` is reset with a seed drawn from ``SeedSequence([seed, k])``. The episode list is cut into chunks
   of ``chunk_episodes``; chunk ``c`` draws its action noise from ``SeedSequence([seed, 1, c])``.
2. **Collect.** Each missing chunk is rolled out on a fresh vector environment
   (:func:`~saferl.datasets.builders.collect.collect_episodes`) and saved atomically as
   ``chunk_<c>.npz`` in a work folder beside the output (``.<file>.work``). A restarted build skips the
   chunks already there, so an interrupted build resumes, and since a chunk is a pure function of
   (task, policies, recipe, seed, c), the result is the same file as an uninterrupted build. A
   ``plan.json`` fingerprint (recipe, seed, policy file hash) guards against mixing chunks of another
   plan: stale chunks are deleted.
3. **Assemble.** Chunks are concatenated in order; trajectories with cost return above ``C_max`` are
   dropped; DSRL's grid filter (``cost_bins`` x ``reward_bins`` over the (cost return, reward return)
   box, at most ``n`` random trajectories per cell, cells with ``<= min_per_bin`` dropped) keeps the
   smallest ``n`` whose result reaches the target count (DSRL's count by default). The result is written
   as a DSRL HDF5 file (atomic rename), then a dataset card (YAML) and a reward-cost scatter plot (PNG);
   the work folder is removed.

Deterministic by seed on one machine: the same seed gives a byte-identical file (its SHA-256 is in the
card).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm.auto import tqdm

from ..download import dataset_path
from ..errors import SaferlDataError
from ..formats import read_dsrl, write_dsrl
from ..registry import TaskSpec, get_task
from ..transforms import _density_keep
from ..types import ARRAY_FIELDS, TransitionDataset
from .collect import EpisodeSpec, collect_episodes
from .recipes import Recipe, get_recipe
from .snapshots import PolicySnapshot, file_sha256, load_snapshots

PACKAGE_DIR = Path(__file__).resolve().parents[1]
POLICY_DIR = PACKAGE_DIR / "behaviour_policies"
"""Where the committed behaviour-policy files live (``<Task>.safetensors``)."""
CARD_DIR = PACKAGE_DIR / "cards"
"""Where dataset cards live (``<Task>.yaml``)."""
SAFE_FRACTION_LIMITS = (10.0, 20.0, 40.0)
"""Cost limits kappa at which a card reports the fraction of safe trajectories."""
VERSIONED_PACKAGES = (
    "saferl", "numpy", "torch", "gymnasium", "h5py", "pybullet", "bullet-safety-gym", "safety-gymnasium", "mujoco",
)


def behaviour_policy_path(task: str | TaskSpec) -> Path:
    """The committed behaviour-policy file of ``task``."""
    spec = get_task(task) if isinstance(task, str) else task
    return POLICY_DIR / f"{spec.name}.safetensors"


@dataclass(frozen=True)
class Chunk:
    """A resumable unit of collection: consecutive episodes of the plan and the seed of their noise."""

    index: int
    episodes: tuple[EpisodeSpec, ...]
    noise_seed: int


@dataclass
class BuildResult:
    """What a build produced."""

    path: Path
    """The DSRL HDF5 file."""
    card_path: Path
    figure_path: Path
    card: dict[str, Any]
    reused: bool = False
    """True when the file existed and nothing was rebuilt."""


def _seed_int(*entropy: int) -> int:
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])


def plan_chunks(recipe: Recipe, num_snapshots: int, seed: int) -> list[Chunk]:
    """The chunks of a build (see step 1 of the module docstring)."""
    episodes: list[EpisodeSpec] = []
    for snapshot in range(num_snapshots):
        for noise in recipe.action_noise:
            for _ in range(recipe.episodes_per_behaviour):
                episodes.append(EpisodeSpec(snapshot, float(noise), _seed_int(seed, len(episodes))))
    size = recipe.chunk_episodes
    return [
        Chunk(c, tuple(episodes[start : start + size]), _seed_int(seed, 1, c))
        for c, start in enumerate(range(0, len(episodes), size))
    ]


def package_versions() -> dict[str, str]:
    """Versions of the packages a build depends on (``"not installed"`` for missing ones)."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# ---------------------------------------------------------------------------------------------- chunks
def _save_chunk(path: Path, dataset: TransitionDataset, seconds: float) -> None:
    temp = path.with_name(f".{path.stem}.part.npz")
    np.savez(temp, seconds=np.float64(seconds), **dataset.arrays())
    os.replace(temp, path)


def _load_chunk(path: Path) -> tuple[TransitionDataset, float]:
    with np.load(path) as data:
        arrays = {name: data[name] for name in ARRAY_FIELDS}
        return TransitionDataset(**arrays), float(data["seconds"])


def _prepare_work_dir(work_dir: Path, fingerprint: str) -> None:
    """Create the work folder, or empty it when it holds chunks of another plan."""
    plan_file = work_dir / "plan.json"
    if work_dir.exists():
        try:
            same = json.loads(plan_file.read_text()).get("fingerprint") == fingerprint
        except (OSError, ValueError):
            same = False
        if same:
            return
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    plan_file.write_text(json.dumps({"fingerprint": fingerprint}))


# ---------------------------------------------------------------------------------------------- filter
def grid_filter(
    cost_returns: np.ndarray, reward_returns: np.ndarray, recipe: Recipe, seed: int
) -> tuple[np.ndarray, int]:
    """Mask of DSRL's grid filter at the smallest per-cell cap that keeps ``recipe.target`` trajectories.

    Returns ``(mask, per_cell)``. Each cap ``n`` reruns the filter with the same generator seed, so the
    kept sets grow with ``n``; if even keeping whole cells falls short of the target, every trajectory of
    the cells that survive ``min_per_bin`` is kept.
    """
    lo, hi = 1, max(1, cost_returns.size)

    def mask_at(cap: int) -> np.ndarray:
        rng = np.random.default_rng(_seed_int(seed, 2))
        return _density_keep(cost_returns, reward_returns, recipe.cost_bins, recipe.reward_bins, cap, recipe.min_per_bin, rng)

    if mask_at(hi).sum() <= recipe.target:
        return mask_at(hi), hi
    while lo < hi:  # smallest cap whose kept count reaches the target (counts grow with the cap)
        mid = (lo + hi) // 2
        if mask_at(mid).sum() >= recipe.target:
            hi = mid
        else:
            lo = mid + 1
    return mask_at(lo), lo


# ---------------------------------------------------------------------------------------------- report
def _range(values: np.ndarray) -> dict[str, float]:
    return {"min": round(float(values.min()), 4), "mean": round(float(values.mean()), 4), "max": round(float(values.max()), 4)}


def _training_progress(snapshot: PolicySnapshot) -> float:
    """Fraction of its run's steps a snapshot had trained for (0 for the initial policy)."""
    steps, total = snapshot.stats.get("steps", 0), snapshot.stats.get("total_steps", 0)
    return float(steps) / float(total) if total else 0.0


def scatter_plot(
    path: Path, spec: TaskSpec, raw_costs: np.ndarray, raw_returns: np.ndarray, kept: np.ndarray,
    progress: np.ndarray, title_note: str = "",
) -> Path:
    """Reward-cost scatter of every collected trajectory (grey) and of the kept ones (coloured by training progress)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
    ax.scatter(raw_costs[~kept], raw_returns[~kept], s=4, c="0.8", label="collected, not kept", rasterized=True)
    points = ax.scatter(raw_costs[kept], raw_returns[kept], s=6, c=progress[kept], cmap="viridis", vmin=0, vmax=1,
                        label="kept", rasterized=True)
    fig.colorbar(points, ax=ax, label="training progress of the behaviour snapshot")
    for kappa, style in zip(SAFE_FRACTION_LIMITS, (":", "--", "-.")):
        ax.axvline(kappa, color="tab:red", linestyle=style, linewidth=0.8, label=f"kappa = {kappa:g}")
    ax.axvline(spec.cost_max, color="black", linewidth=0.8, label=f"C_max = {spec.cost_max:g}")
    ax.set_xlabel("cost return")
    ax.set_ylabel("reward return")
    ax.set_title(f"{spec.name}: {int(kept.sum())} kept of {kept.size} trajectories{title_note}", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.part.png")
    fig.savefig(temp)
    plt.close(fig)
    os.replace(temp, path)
    return path


def _write_yaml(path: Path, content: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.part")
    temp.write_text(yaml.safe_dump(content, sort_keys=False, width=110))
    os.replace(temp, path)
    return path


# ---------------------------------------------------------------------------------------------- build
def _card_path(spec: TaskSpec, output: Path, card_dir: str | os.PathLike[str] | None) -> Path:
    """``<card_dir>/<Task>.yaml``; by default in :data:`CARD_DIR`, or beside the output if that is read-only."""
    if card_dir is not None:
        return Path(card_dir) / f"{spec.name}.yaml"
    if os.access(CARD_DIR, os.W_OK) or (not CARD_DIR.exists() and os.access(CARD_DIR.parent, os.W_OK)):
        return CARD_DIR / f"{spec.name}.yaml"
    return output.with_suffix(".card.yaml")


def build_dataset(
    task: str | TaskSpec,
    seed: int = 0,
    force: bool = False,
    *,
    recipe: Recipe | None = None,
    policy_file: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    card_dir: str | os.PathLike[str] | None = None,
    figure_path: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
) -> BuildResult:
    """Build ``task``'s dataset (see the module docstring) and return where everything went.

    Defaults: the task's recipe, its committed policy file (:func:`behaviour_policy_path`), the DSRL
    cache under the registry's file name (:func:`~saferl.datasets.download.dataset_path`), cards in
    :data:`CARD_DIR` (beside the output as ``<file stem>.card.yaml`` when the package folder is read-only,
    as in a non-editable install) and the scatter plot beside the output (``<file stem>.png``). An existing output is
    kept (``reused=True``) unless ``force``; ``force`` also discards the chunks of an interrupted build.
    """
    spec = get_task(task) if isinstance(task, str) else task
    recipe = recipe or get_recipe(spec)
    policy_file = Path(policy_file) if policy_file is not None else behaviour_policy_path(spec)
    output = Path(output) if output is not None else dataset_path(spec)
    card_path = _card_path(spec, output, card_dir)
    figure_path = Path(figure_path) if figure_path is not None else output.with_suffix(".png")
    work_dir = output.with_name(f".{output.name}.work")

    if output.exists() and not force:
        card = yaml.safe_load(card_path.read_text()) if card_path.exists() else {}
        return BuildResult(output, card_path, figure_path, card, reused=True)
    if force:
        output.unlink(missing_ok=True)
        if work_dir.exists():
            shutil.rmtree(work_dir)
    if not policy_file.is_file():
        raise SaferlDataError(
            f"no behaviour policies for '{spec.name}' at {policy_file}; train them first with "
            f"`python scripts/train_behaviour.py {spec.name}`"
        )
    snapshots, policy_meta = load_snapshots(policy_file)
    if snapshots[0].obs_dim != spec.obs_dim or snapshots[0].act_dim != spec.act_dim:
        raise SaferlDataError(
            f"{policy_file} holds policies of obs/act {snapshots[0].obs_dim}/{snapshots[0].act_dim}, but "
            f"'{spec.name}' has {spec.obs_dim}/{spec.act_dim}: retrain them"
        )
    policy_hash = file_sha256(policy_file)
    chunks = plan_chunks(recipe, len(snapshots), seed)
    fingerprint = hashlib.sha256(
        json.dumps({"recipe": recipe.to_dict(), "seed": seed, "policies": policy_hash}, sort_keys=True).encode()
    ).hexdigest()
    _prepare_work_dir(work_dir, fingerprint)

    # ALGO LOGIC: collect the missing chunks.
    todo = [c for c in chunks if not (work_dir / f"chunk_{c.index:05d}.npz").exists()]
    with tqdm(total=len(chunks), initial=len(chunks) - len(todo), desc=f"{spec.name} chunks", unit="chunk",
              disable=not show_progress) as bar:
        for chunk in todo:
            started = time.perf_counter()
            part = collect_episodes(spec, snapshots, chunk.episodes, num_envs=recipe.collect_envs,
                                    noise_seed=chunk.noise_seed)
            _save_chunk(work_dir / f"chunk_{chunk.index:05d}.npz", part, time.perf_counter() - started)
            bar.update(1)

    # ALGO LOGIC: assemble, cap the cost, grid-filter, write.
    started = time.perf_counter()
    loaded = [_load_chunk(work_dir / f"chunk_{c.index:05d}.npz") for c in chunks]
    collect_seconds = sum(seconds for _, seconds in loaded)
    raw = TransitionDataset.concatenate([part for part, _ in loaded])
    episodes = [episode for chunk in chunks for episode in chunk.episodes]
    if raw.num_trajectories != len(episodes):
        raise SaferlDataError(f"the chunks in {work_dir} hold {raw.num_trajectories} trajectories, expected "
                              f"{len(episodes)}: delete that folder and build again")
    raw_costs, raw_returns = raw.trajectory_cost_returns(), raw.trajectory_returns()
    capped = np.flatnonzero(raw_costs <= recipe.cap)
    if capped.size == 0:
        raise SaferlDataError(f"no collected trajectory of '{spec.name}' costs <= C_max={recipe.cap:g}")
    mask, per_cell = grid_filter(raw_costs[capped], raw_returns[capped], recipe, seed)
    kept_ids = capped[mask]
    dataset = raw.select_trajectories(kept_ids)
    dataset.metadata = {
        "task": spec.name, "dataset_id": spec.dataset_id, "env_id": spec.env_id, "format": "dsrl",
        "builder": "saferl.datasets.builders.build_dataset", "seed": seed, "recipe_fingerprint": fingerprint,
    }
    write_dsrl(dataset, output)
    sha256 = file_sha256(output)
    written = read_dsrl(output)

    kept = np.zeros(raw.num_trajectories, bool)
    kept[kept_ids] = True
    returns, costs = written.trajectory_returns(), written.trajectory_cost_returns()
    lengths = written.trajectory_lengths()
    progress = np.array([_training_progress(snapshots[e.snapshot]) for e in episodes])
    scatter_plot(figure_path, spec, raw_costs, raw_returns, kept, progress,
                 title_note=f" (C <= {recipe.cap:g}, seed {seed})")
    assemble_seconds = time.perf_counter() - started

    card = {
        "task": spec.name,
        "dataset_id": spec.dataset_id,
        "env_id": spec.env_id,
        "file_name": output.name,
        "sha256": sha256,
        "seed": seed,
        "counts": {
            "trajectories": written.num_trajectories,
            "transitions": len(written),
            "dsrl_trajectories": spec.num_trajectories,
            "collected_trajectories": raw.num_trajectories,
            "collected_transitions": len(raw),
            "within_cost_cap": int(capped.size),
            "grid_filter_per_cell": per_cell,
            "terminals": int(written.terminals.sum()),
            "timeouts": int(written.timeouts.sum()),
            "length": {"min": int(lengths.min()), "max": int(lengths.max())},
        },
        "reward_return": _range(returns),
        "cost_return": _range(costs),
        "R_max": round(float(returns.max()), 4),
        "R_min": round(float(returns.min()), 4),
        "dsrl_R_max": spec.reward_max,
        "dsrl_R_min": spec.reward_min,
        "safe_fraction": {f"{kappa:g}": round(float((costs <= kappa).mean()), 4) for kappa in SAFE_FRACTION_LIMITS},
        "timing_s": {
            "behaviour_training": round(float(policy_meta.get("training_seconds", float("nan"))), 1),
            "collection": round(collect_seconds, 1),
            "assembly": round(assemble_seconds, 1),
        },
        "recipe": recipe.to_dict(),
        "behaviour_policies": {
            "file": f"datasets/behaviour_policies/{policy_file.name}",
            "sha256": policy_hash,
            "snapshots": len(snapshots),
            "learner": "PPO-Lagrangian (saferl.datasets.builders.ppo_lagrangian)",
            "runs": [
                {key: run.get(key) for key in ("name", "cost_limits", "total_steps", "seed", "seconds",
                                               "final_episode_return", "final_episode_cost")}
                for run in policy_meta.get("runs", [])
            ],
        },
        "packages": package_versions(),
        "figure": figure_path.name,
    }
    _write_yaml(card_path, card)
    shutil.rmtree(work_dir, ignore_errors=True)
    return BuildResult(output, card_path, figure_path, card)


__all__ = ["build_dataset", "plan_chunks", "grid_filter", "behaviour_policy_path", "BuildResult", "Chunk",
           "scatter_plot", "package_versions", "POLICY_DIR", "CARD_DIR"]
