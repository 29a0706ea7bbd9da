"""Per-task recipes: how each task's behaviour agents are trained and how its dataset is collected.

A :class:`Recipe` fixes everything a build depends on besides the seed: the PPO-Lagrangian runs (each
with its annealed cost-limit schedule and step budget), the action-noise levels of collection, the
number of episodes per behaviour (a behaviour = one snapshot x one noise level), the chunking of the
work, and the grid filter. The numbers were chosen for the CPU budget of a two-core machine (see
``docs/benchmark_data.md``); a card records the recipe it was built with.

The default plan per task: two runs of the same length, one annealing the episodic cost limit upwards
(cautious early, reckless late), one downwards (reckless early, cautious late), snapshots all along
both, and deterministic plus noisy replays of each snapshot. Trajectories whose cost return exceeds the
task's ``C_max`` (the largest kept in DSRL's data) are dropped before the grid filter, as in DSRL.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import SaferlDataError
from ..registry import TaskSpec, get_task
from .ppo_lagrangian import CostLimitSchedule, PPOLagConfig


@dataclass(frozen=True)
class TrainingRun:
    """One PPO-Lagrangian run: a name, its cost-limit schedule, its step budget and seed."""

    name: str
    cost_limits: CostLimitSchedule
    total_steps: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {
            "name": self.name, "cost_limits": [list(p) for p in self.cost_limits.points],
            "total_steps": self.total_steps, "seed": self.seed,
        }


@dataclass(frozen=True)
class Recipe:
    """How to make one task's behaviour policies and dataset (see the module docstring)."""

    task: str
    runs: tuple[TrainingRun, ...]
    ppo: dict[str, Any] = field(default_factory=dict)
    """Overrides of :class:`PPOLagConfig` shared by every run (``num_envs``, ``gamma``, ...)."""
    action_noise: tuple[float, ...] = (0.0, 0.25, 0.5)
    """Std of the Gaussian noise added to each snapshot's mean action (in [-1, 1] units)."""
    episodes_per_behaviour: int = 64
    """Episodes collected per (snapshot, noise level)."""
    chunk_episodes: int = 32
    """Episodes per resumable chunk (one fresh vector environment each)."""
    collect_envs: int = 4
    """Environments stepped together while collecting."""
    cost_bins: int = 60
    """Cost-return bins of the grid filter (DSRL: 60)."""
    reward_bins: int = 50
    """Reward-return bins of the grid filter (DSRL: 50)."""
    min_per_bin: int = 0
    """Bins holding this many trajectories or fewer are dropped (0 keeps every non-empty bin)."""
    target_trajectories: int | None = None
    """The filter keeps the fewest trajectories per bin that reach this count (default: DSRL's count)."""
    cost_cap: float | None = None
    """Trajectories costing more are dropped before filtering (default: the task's C_max)."""

    def __post_init__(self) -> None:
        if not self.runs:
            raise ValueError(f"recipe of {self.task} has no training run")
        if min(self.episodes_per_behaviour, self.chunk_episodes, self.collect_envs) < 1:
            raise ValueError("episodes_per_behaviour, chunk_episodes and collect_envs must be >= 1")
        if not self.action_noise or min(self.action_noise) < 0:
            raise ValueError(f"action_noise needs one or more levels >= 0, got {self.action_noise}")
        unknown = set(self.ppo) - {f.name for f in dataclasses.fields(PPOLagConfig)}
        if unknown:
            raise ValueError(f"unknown PPOLagConfig fields in the recipe of {self.task}: {sorted(unknown)}")

    @property
    def spec(self) -> TaskSpec:
        """The task's registry entry."""
        return get_task(self.task)

    @property
    def target(self) -> int:
        """Trajectories the grid filter aims at."""
        return self.target_trajectories or self.spec.num_trajectories

    @property
    def cap(self) -> float:
        """Largest cost return kept."""
        return self.spec.cost_max if self.cost_cap is None else float(self.cost_cap)

    def ppo_config(self, run: TrainingRun) -> PPOLagConfig:
        """The learner's config for ``run``."""
        return PPOLagConfig(**{**self.ppo, "total_steps": run.total_steps, "cost_limits": run.cost_limits, "seed": run.seed})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (what cards and fingerprints record)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["runs"] = [run.to_dict() for run in self.runs]
        out["action_noise"] = list(self.action_noise)
        out["ppo"] = dict(sorted(self.ppo.items()))
        out["target_trajectories"] = self.target
        out["cost_cap"] = self.cap
        return out


def _two_runs(steps: int, low: float, high: float) -> tuple[TrainingRun, ...]:
    """A rising (low -> high) and a falling (high -> low) limit schedule of ``steps`` each."""
    return (
        TrainingRun("rising", CostLimitSchedule.linear(low, high), steps, seed=1),
        TrainingRun("falling", CostLimitSchedule.linear(high, low), steps, seed=2),
    )


# Longer runs halve the gradient steps of each update (the update is a third of an iteration's time).
_BIG_MINIBATCH = {"minibatch_size": 512}
_LONG_EPISODES = {**_BIG_MINIBATCH, "rollout_steps": 500, "cost_window": 8}
# The first three tasks were trained with six evenly spaced snapshots per run (before the learner's
# default became denser early on); their recipes keep that schedule so that retraining reproduces them.
_EVEN_SIX = {"snapshot_fractions": tuple(k / 6 for k in range(1, 7))}

RECIPES: dict[str, Recipe] = {
    recipe.task: recipe
    for recipe in [
        Recipe("BallRun", _two_runs(200_000, 5, 100), ppo=_EVEN_SIX, episodes_per_behaviour=64, chunk_episodes=64,
               collect_envs=8),
        Recipe("CarRun", _two_runs(300_000, 5, 50), ppo=_EVEN_SIX, episodes_per_behaviour=32),
        Recipe("BallCircle", _two_runs(300_000, 5, 100), ppo=_EVEN_SIX, episodes_per_behaviour=48),
        Recipe("CarCircle", _two_runs(400_000, 5, 120), episodes_per_behaviour=40),
        Recipe("DroneRun", _two_runs(600_000, 5, 150), ppo=_BIG_MINIBATCH, episodes_per_behaviour=48),
        Recipe("DroneCircle", _two_runs(600_000, 5, 120), ppo=_BIG_MINIBATCH, episodes_per_behaviour=48),
        # Ant: 500k steps per run (not 1M) to fit the 2-core budget; the rising run runs (return ~500) by 330k.
        Recipe("AntRun", _two_runs(500_000, 5, 180), ppo=_BIG_MINIBATCH, episodes_per_behaviour=48),
        # AntCircle: 1M steps per run (20 min with --jobs 2). 300k steps were too few (best return 22, 99 % of the
        # trajectories cost-free; not kept). At 1M the agents move but circle poorly (returns up to ~95, DSRL's
        # R_max is 461): with 24 episodes per behaviour and DSRL's target (5728, more than were collected) the
        # filter kept all 1227 trajectories, 70 % of them near-motionless and cost-free (86 % safe at kappa 10),
        # and BC-All came out as safe as BC-Safe. So: more episodes, and a target of 1500 whose per-cell cap
        # thins that dense cluster, which is what DSRL's density filter is for (docs/benchmark_data.md).
        Recipe("AntCircle", _two_runs(1_000_000, 5, 200), ppo=_BIG_MINIBATCH, episodes_per_behaviour=64,
               target_trajectories=1500),
        # Safety-Gymnasium: episodes of 1000 steps, so longer rollouts and a shorter cost window.
        Recipe("HalfCheetahVelocity", _two_runs(1_000_000, 5, 300), ppo=_LONG_EPISODES, episodes_per_behaviour=64,
               chunk_episodes=16),
        Recipe("SwimmerVelocity", _two_runs(1_000_000, 5, 250), ppo={**_LONG_EPISODES, "gamma": 0.999},
               episodes_per_behaviour=48, chunk_episodes=16),
        # Navigation resets rebuild the MuJoCo world (about a second each): fewer, longer chunks.
        # 100k steps per run and 10 episodes per behaviour (540 trajectories, DSRL: 1098): the 2-core budget,
        # where a PPO iteration here takes ~20 s (slow resets and Python-side sensors).
        Recipe("PointCircle1", _two_runs(100_000, 5, 250), ppo={"cost_window": 8}, episodes_per_behaviour=10,
               chunk_episodes=8),
    ]
}


def get_recipe(task: str | TaskSpec) -> Recipe:
    """The recipe of ``task`` (a registry name or id); a clear error if the task has none."""
    spec = get_task(task) if isinstance(task, str) else task
    if spec.name not in RECIPES:
        raise SaferlDataError(
            f"no dataset recipe for '{spec.name}'; tasks with one: {', '.join(RECIPES)} "
            "(add a Recipe in saferl/datasets/builders/recipes.py)"
        )
    return RECIPES[spec.name]


__all__ = ["TrainingRun", "Recipe", "RECIPES", "get_recipe"]
