"""The task registry: every task saferl knows, with its environment and normalisation constants.

Facts come from the DSRL benchmark (38 tasks: 8 Bullet-Safety-Gym, 21 Safety-Gymnasium, 9 MetaDrive),
D4RL's locomotion tasks (reference scores from d4rl's ``infos.py``) and saferl's built-in point robot.
A task is looked up by its short name (``CarCircle``), its DSRL/D4RL gym id
(``OfflineCarCircle-v0``, ``hopper-medium-v2``) or its simulator id (``SafetyCarCircle-v0``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from .errors import UnknownTaskError

Simulator = Literal["bullet", "safety_gymnasium", "mujoco", "metadrive", "builtin", "toy_dosing"]
DatasetFormat = Literal["dsrl", "d4rl", "builtin"]

DSRL_URL = "https://huggingface.co/datasets/YYY-45/DSRL/resolve/main/{file_name}"
D4RL_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/{file_name}"

METADRIVE_REASON = (
    "MetaDrive tasks need DSRL's fork of MetaDrive on the old `gym` API, which does not install beside "
    "gymnasium 0.28.1 on Python 3.11; their datasets can still be read from a local DSRL file"
)


@dataclass(frozen=True)
class TaskSpec:
    """Everything saferl knows about one task.

    ``reward_max``/``reward_min`` are the normalisation constants (DSRL's R_max/R_min; for D4RL the
    reference max/min scores); ``cost_max`` is the largest episode cost kept in the DSRL data.
    """

    name: str
    dataset_id: str
    env_id: str
    simulator: Simulator
    format: DatasetFormat
    episode_len: int
    reward_max: float
    reward_min: float
    cost_max: float
    num_trajectories: int
    obs_dim: int
    act_dim: int
    file_name: str
    url: str | None
    unavailable_reason: str | None = None

    @property
    def available(self) -> bool:
        """Whether the task's environment can run on a saferl installation at all."""
        return self.unavailable_reason is None

    @property
    def is_safe_task(self) -> bool:
        """Whether the task has a cost signal (DSRL or built-in)."""
        return self.format != "d4rl"


def _dsrl(
    name: str,
    dataset_id: str,
    env_id: str,
    simulator: Simulator,
    T: int,
    r_max: float,
    r_min: float,
    c_max: int,
    n_traj: int,
    obs: int,
    act: int,
    reason: str | None = None,
    file_stem: str | None = None,
) -> TaskSpec:
    file_name = f"{file_stem or env_id}-{c_max}-{n_traj}.hdf5"
    return TaskSpec(
        name, dataset_id, env_id, simulator, "dsrl", T, r_max, r_min, float(c_max), n_traj, obs, act,
        file_name, DSRL_URL.format(file_name=file_name), reason,
    )


_BULLET = [
    # name, T, R_max, R_min, C_max, #traj, obs, act
    ("AntCircle", 500, 460.71, 0.0177, 200, 5728, 34, 8),
    ("AntRun", 200, 955.48, 0.0018, 150, 1816, 33, 8),
    ("BallCircle", 200, 881.46, 0.383, 80, 886, 8, 2),
    ("BallRun", 100, 1327.45, 26.34, 80, 940, 7, 2),
    ("CarCircle", 300, 534.31, 3.484, 100, 1450, 8, 2),
    ("CarRun", 200, 574.65, 204.29, 40, 651, 7, 2),
    ("DroneCircle", 300, 996.39, 207.79, 100, 1923, 18, 4),
    ("DroneRun", 200, 682.83, 10.56, 140, 1990, 17, 4),
]

_SAFETY_GYM_NAV = [
    ("CarButton1", 1000, 44.42, 0.0029, 250, 2656, 88, 2),
    ("CarButton2", 1000, 42.00, 0.0018, 300, 3755, 88, 2),
    ("CarCircle1", 500, 24.94, 8.037, 250, 1271, 40, 2),
    ("CarCircle2", 500, 25.95, 5.113, 400, 940, 40, 2),
    ("CarGoal1", 1000, 39.91, 0.0122, 120, 1671, 72, 2),
    ("CarGoal2", 1000, 28.90, 0.0010, 200, 4105, 72, 2),
    ("CarPush1", 1000, 16.30, 0.0137, 200, 2871, 88, 2),
    ("CarPush2", 1000, 15.14, 0.0003, 250, 4407, 88, 2),
    ("PointButton1", 1000, 41.19, 0.0088, 200, 2268, 76, 2),
    ("PointButton2", 1000, 42.90, 0.0141, 250, 3288, 76, 2),
    ("PointCircle1", 500, 61.73, 20.07, 200, 1098, 28, 2),
    ("PointCircle2", 500, 54.02, 20.48, 300, 895, 28, 2),
    ("PointGoal1", 1000, 30.07, 0.0120, 100, 2022, 60, 2),
    ("PointGoal2", 1000, 27.72, 0.0026, 200, 3442, 60, 2),
    ("PointPush1", 1000, 16.52, 0.0014, 150, 2379, 76, 2),
    ("PointPush2", 1000, 14.69, 0.0012, 200, 3242, 76, 2),
]

_SAFETY_GYM_VEL = [
    ("AntVelocity", 1000, 2976.28, 6.152, 250, 2249, 27, 8),
    ("HalfCheetahVelocity", 1000, 2806.93, 5.751, 250, 2495, 17, 6),
    ("HopperVelocity", 1000, 1911.40, 37.05, 250, 2240, 11, 3),
    ("SwimmerVelocity", 1000, 238.96, 0.0711, 200, 1686, 8, 2),
    ("Walker2dVelocity", 1000, 3418.22, 18.67, 300, 2729, 17, 6),
]

_METADRIVE_COST = {"easy": 85, "medium": 50, "hard": 85}

# D4RL reference scores (d4rl infos.py REF_MIN_SCORE / REF_MAX_SCORE), shared by every dataset of an env.
_D4RL_REF = {
    "halfcheetah": (-280.178953, 12135.0, 17, 6),
    "hopper": (-20.272305, 3234.3, 11, 3),
    "walker2d": (1.629008, 4592.3, 17, 6),
    "ant": (-325.6, 3879.7, 27, 8),
}
_D4RL_ENV_ID = {"halfcheetah": "HalfCheetah-v4", "hopper": "Hopper-v4", "walker2d": "Walker2d-v4", "ant": "Ant-v4"}
_D4RL_LEVELS = ["random", "medium", "medium-replay", "medium-expert", "expert"]

# The built-in point robot (datasets/envs/point_robot.py). R_max/R_min and C_max are the best and worst
# returns and the largest cost return of the default dataset (1000 scripted behaviours, seed 0:
# `saferl.datasets.point_robot_data.build_point_robot_dataset`); a test rebuilds it and checks them.
POINT_ROBOT = TaskSpec(
    name="PointRobot",
    dataset_id="OfflinePointRobot-v0",
    env_id="PointRobot-v0",
    simulator="builtin",
    format="builtin",
    episode_len=200,
    reward_max=3.7701,
    reward_min=0.7547,
    cost_max=51.0,
    num_trajectories=1000,
    obs_dim=2,
    act_dim=2,
    file_name="PointRobot-v0-51-1000.hdf5",
    url=None,
)

# saferl's toy dosing simulator (datasets/envs/toy_dosing.py): synthetic, not patient data, no clinical
# meaning. It has a simulator kind of its own because the app draws the point robot's figures for the
# "builtin" one; its data are built on first use like the point robot's. R_max/R_min and C_max are the
# best and worst returns and the largest cost return of the default dataset (1000 scripted behaviours,
# seed 0: `saferl.datasets.toy_dosing_data.build_toy_dosing_dataset`); a test rebuilds it and checks them.
TOY_DOSING = TaskSpec(
    name="ToyDosing",
    dataset_id="OfflineToyDosing-v0",
    env_id="ToyDosing-v0",
    simulator="toy_dosing",
    format="builtin",
    episode_len=60,
    reward_max=58.8112,
    reward_min=-32.3398,
    cost_max=59.0,
    num_trajectories=1000,
    obs_dim=2,
    act_dim=1,
    file_name="ToyDosing-v0-59-1000.hdf5",
    url=None,
)


def _build_registry() -> dict[str, TaskSpec]:
    tasks: list[TaskSpec] = []
    for name, T, r_max, r_min, c_max, n, obs, act in _BULLET:
        tasks.append(_dsrl(name, f"Offline{name}-v0", f"Safety{name}-v0", "bullet", T, r_max, r_min, c_max, n, obs, act))
    for name, T, r_max, r_min, c_max, n, obs, act in _SAFETY_GYM_NAV:
        tasks.append(
            _dsrl(name, f"Offline{name}Gymnasium-v0", f"Safety{name}-v0", "safety_gymnasium", T, r_max, r_min,
                  c_max, n, obs, act, file_stem=f"Safety{name}Gymnasium-v0")
        )
    for name, T, r_max, r_min, c_max, n, obs, act in _SAFETY_GYM_VEL:
        tasks.append(
            _dsrl(name, f"Offline{name}Gymnasium-v1", f"Safety{name}-v1", "safety_gymnasium", T, r_max, r_min,
                  c_max, n, obs, act, file_stem=f"Safety{name}Gymnasium-v1")
        )
    for level, c_max in _METADRIVE_COST.items():
        for density in ("sparse", "mean", "dense"):
            short = f"Metadrive-{level}{density}"
            tasks.append(
                _dsrl(short, f"Offline{short}-v0", f"SafeMetaDrive-{level}{density}-v0", "metadrive", 1000,
                      float("nan"), float("nan"), c_max, 1000, 261, 2, reason=METADRIVE_REASON)
            )
    for env, (ref_min, ref_max, obs, act) in _D4RL_REF.items():
        for level in _D4RL_LEVELS:
            dataset_id = f"{env}-{level}-v2"
            file_name = f"{env}_{level.replace('-', '_')}-v2.hdf5"
            tasks.append(
                TaskSpec(dataset_id, dataset_id, _D4RL_ENV_ID[env], "mujoco", "d4rl", 1000, ref_max, ref_min,
                         0.0, 0, obs, act, file_name, D4RL_URL.format(file_name=file_name))
            )
    tasks.append(POINT_ROBOT)
    tasks.append(TOY_DOSING)
    return {task.name: task for task in tasks}


TASKS: dict[str, TaskSpec] = _build_registry()
_ALIASES: dict[str, str] = {}
for _task in TASKS.values():
    for _alias in (_task.name, _task.dataset_id, _task.env_id):
        _ALIASES.setdefault(_alias.lower(), _task.name)


def get_task(name: str) -> TaskSpec:
    """Look a task up by short name, dataset id or simulator id (case-insensitive).

    Raises :class:`UnknownTaskError` naming the closest known ids.
    """
    key = _ALIASES.get(name.lower())
    if key is None:
        close = difflib.get_close_matches(name.lower(), list(_ALIASES), n=3, cutoff=0.5)
        hint = ", ".join(TASKS[_ALIASES[c]].name for c in close)
        raise UnknownTaskError(
            f"unknown task '{name}'" + (f"; did you mean {hint}?" if hint else "") + " (`saferl data list` shows all)"
        )
    return TASKS[key]


def list_tasks(simulator: Simulator | None = None) -> list[TaskSpec]:
    """All registered tasks, optionally of one simulator, in registry order."""
    return [t for t in TASKS.values() if simulator is None or t.simulator == simulator]


__all__ = ["TaskSpec", "TASKS", "get_task", "list_tasks", "POINT_ROBOT", "TOY_DOSING", "DSRL_URL", "D4RL_URL"]
