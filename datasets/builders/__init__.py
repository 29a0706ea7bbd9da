"""Dataset builders: rebuild DSRL-style datasets locally from the real simulators.

- :mod:`.ppo_lagrangian`: the online learner of the behaviour agents (PPO with a Lagrange multiplier on
  the episodic cost, its limit annealed during training), which snapshots its policy all along.
- :mod:`.snapshots`: those snapshots as small numpy policies, one safetensors file per task.
- :mod:`.recipes`: per task, the training runs, the collection plan and the filter settings.
- :mod:`.behaviour`: :func:`train_behaviour_policies` (every run of a recipe into one file).
- :mod:`.collect`: roll snapshots out (with action noise) into whole trajectories.
- :mod:`.build`: :func:`build_dataset`, resumable chunked collection, DSRL's grid filter, the DSRL file,
  its card and scatter plot.
"""

from .behaviour import print_iteration, train_behaviour_policies
from .build import BuildResult, behaviour_policy_path, build_dataset, grid_filter, plan_chunks
from .collect import EpisodeSpec, collect_episodes
from .ppo_lagrangian import CostLimitSchedule, IterationLog, PPOLagConfig, PPOLagrangian
from .recipes import RECIPES, Recipe, TrainingRun, get_recipe
from .snapshots import PolicySnapshot, load_snapshots, save_snapshots

__all__ = [
    "BuildResult",
    "CostLimitSchedule",
    "EpisodeSpec",
    "IterationLog",
    "PPOLagConfig",
    "PPOLagrangian",
    "PolicySnapshot",
    "RECIPES",
    "Recipe",
    "TrainingRun",
    "behaviour_policy_path",
    "build_dataset",
    "collect_episodes",
    "get_recipe",
    "grid_filter",
    "load_snapshots",
    "plan_chunks",
    "save_snapshots",
    "print_iteration",
    "train_behaviour_policies",
]
