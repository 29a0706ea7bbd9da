"""make_env / make_vector_env over every installed simulator, and the vector wrapper's contract.

Simulator tests skip when the simulator's packages are missing (``simulator_available``; safety-gymnasium
cannot go through ``pytest.importorskip`` because a plain import of it fails on Python 3.11 with a
ValueError, not an ImportError). Safety-Gymnasium navigation resets take about a second each, so only a
few navigation tasks are built here.
"""

from __future__ import annotations

import dataclasses
import random
import sys
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from saferl.datasets import SimulatorMissingError, TaskUnavailableError, get_task, list_tasks
from saferl.datasets.envs import (
    INSTALL_COMMANDS,
    SyncVectorSafetyEnv,
    VectorSafetyEnv,
    make_env,
    make_vector_env,
    simulator_available,
)
from saferl.datasets.envs.safety_gymnasium_compat import numpy_array_dataclass_defaults


def requires(simulator: str) -> pytest.MarkDecorator:
    """Skip unless ``simulator`` is installed."""
    return pytest.mark.skipif(not simulator_available(simulator), reason=f"{simulator} is not installed")


def _check_step(env: gym.Env, action: Any) -> tuple[np.ndarray, dict]:
    """One step through the common interface: a 5-tuple with float reward and float info["cost"]."""
    result = env.step(action)
    assert len(result) == 5
    obs, reward, terminated, truncated, info = result
    assert isinstance(reward, float)
    assert isinstance(terminated, bool) and isinstance(truncated, bool)
    assert isinstance(info["cost"], float)
    return obs, info


def _check_seeding(env: gym.Env, atol: float = 0.0) -> np.ndarray:
    """Same seed -> same first observation; another seed -> another one."""
    first, _ = env.reset(seed=3)
    again, _ = env.reset(seed=3)
    other, _ = env.reset(seed=4)
    np.testing.assert_allclose(again, first, rtol=0, atol=atol)
    assert not np.allclose(other, first, rtol=0, atol=1e-6)
    return first


# ---------------------------------------------------------------- availability, errors


def test_simulator_available_names() -> None:
    assert simulator_available("builtin")
    assert not simulator_available("metadrive")
    with pytest.raises(ValueError, match="known simulators: bullet"):
        simulator_available("pybullet")


def test_simulator_available_sees_a_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pybullet", None)
    assert not simulator_available("bullet")
    assert simulator_available("builtin")


@pytest.mark.parametrize(
    ("task", "module", "command"),
    [
        ("CarCircle", "bullet_safety_gym", 'pip install "saferl[bullet]"'),
        (
            "PointGoal1",
            "safety_gymnasium",
            'pip install "saferl[safety-gymnasium]" && pip install --no-deps safety-gymnasium==0.4.0',
        ),
        ("hopper-medium-v2", "mujoco", 'pip install "saferl[mujoco]"'),
    ],
)
def test_missing_simulator_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, task: str, module: str, command: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(SimulatorMissingError) as caught:
        make_env(task)
    assert command in str(caught.value)
    assert f"task '{get_task(task).name}'" in str(caught.value)
    assert INSTALL_COMMANDS[get_task(task).simulator] == command


def test_metadrive_is_unavailable_with_the_registry_reason() -> None:
    spec = get_task("OfflineMetadrive-easysparse-v0")
    assert spec.unavailable_reason
    with pytest.raises(TaskUnavailableError, match="MetaDrive tasks need DSRL's fork"):
        make_env(spec)
    with pytest.raises(TaskUnavailableError, match="cannot run here"):
        make_vector_env("Metadrive-hardmean", 2)


def test_make_vector_env_rejects_zero_envs() -> None:
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        make_vector_env("PointRobot", 0)


# ---------------------------------------------------------------- the Python 3.11 safety-gymnasium fix


def test_array_defaults_become_per_instance_copies_only_inside_the_fix() -> None:
    with numpy_array_dataclass_defaults():

        @dataclasses.dataclass
        class Colour:
            rgba: np.ndarray = np.array([1.0, 0.0, 0.0, 1.0])

    first, second = Colour(), Colour()
    np.testing.assert_array_equal(first.rgba, [1.0, 0.0, 0.0, 1.0])
    first.rgba[0] = 0.5
    assert second.rgba[0] == 1.0  # each instance owns its array
    if sys.version_info >= (3, 11):  # outside the block, dataclasses' own check is back
        with pytest.raises(ValueError, match="mutable default"):

            @dataclasses.dataclass
            class Rejected:
                rgba: np.ndarray = np.zeros(4)


# ---------------------------------------------------------------- built-in point robot


def test_builtin_point_robot() -> None:
    from saferl.datasets.envs import PointRobotEnv, PointRobotVectorEnv

    env = make_env("PointRobot")
    assert isinstance(env, PointRobotEnv)
    first = _check_seeding(env)
    assert first.shape == (get_task("PointRobot").obs_dim,)
    _check_step(env, np.zeros(2, np.float32))
    vector = make_vector_env("PointRobot", 3)
    assert isinstance(vector, PointRobotVectorEnv) and isinstance(vector, VectorSafetyEnv)
    assert vector.num_envs == 3


# ---------------------------------------------------------------- Bullet-Safety-Gym


@requires("bullet")
@pytest.mark.simulator
@pytest.mark.parametrize("task", [t.name for t in list_tasks("bullet")])
def test_bullet_task_builds_seeds_and_steps(task: str) -> None:
    spec = get_task(task)
    np.random.seed(1234)
    random.seed(1234)
    numpy_state, python_state = np.random.get_state()[1].copy(), random.getstate()
    env = make_env(spec)
    try:
        assert env.observation_space.shape == (spec.obs_dim,), f"{task}: observation size differs from the registry"
        assert env.action_space.shape == (spec.act_dim,), f"{task}: action size differs from the registry"
        first = _check_seeding(env)
        assert first.shape == (spec.obs_dim,)
        for _ in range(5):
            _check_step(env, env.action_space.sample())
    finally:
        env.close()
    # Building, seeding and stepping leave the caller's global generators alone.
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    assert random.getstate() == python_state


@requires("bullet")
@pytest.mark.simulator
def test_bullet_episode_is_fixed_by_its_seed_and_truncated_at_episode_len() -> None:
    spec = get_task("BallRun")
    actions = np.random.default_rng(0).uniform(-1, 1, size=(spec.episode_len, spec.act_dim)).astype(np.float32)
    trajectories = []
    for _ in range(2):
        env = make_env(spec)
        obs, _ = env.reset(seed=7)
        trace = [obs]
        for t, action in enumerate(actions):
            obs, reward, terminated, truncated, info = env.step(action)
            trace.append(np.append(obs, [reward, info["cost"]]))
            if terminated or truncated:
                break
        env.close()
        trajectories.append(trace)
        assert truncated and not terminated and t + 1 == spec.episode_len
    for a, b in zip(*trajectories):
        np.testing.assert_array_equal(a, b)


@requires("bullet")
@pytest.mark.simulator
def test_bullet_vector_env() -> None:
    vector = make_vector_env("CarRun", 2)
    try:
        assert isinstance(vector, SyncVectorSafetyEnv) and isinstance(vector, VectorSafetyEnv)
        obs = vector.reset_envs([0, 1], [5, 5])
        np.testing.assert_array_equal(obs[0], obs[1])
        step = vector.step(np.zeros((2, 2), np.float32))
        assert step.observations.shape == (2, 7) and step.costs.dtype == np.float64
        np.testing.assert_array_equal(step.observations[0], step.observations[1])
    finally:
        vector.close()


# ---------------------------------------------------------------- Safety-Gymnasium


@requires("safety_gymnasium")
@pytest.mark.simulator
@pytest.mark.parametrize("task", [t.name for t in list_tasks("safety_gymnasium") if t.env_id.endswith("-v1")])
def test_safety_gymnasium_velocity_task(task: str) -> None:
    spec = get_task(task)
    env = make_env(spec)
    try:
        assert env.observation_space.shape == (spec.obs_dim,), f"{task}: observation size differs from the registry"
        assert env.action_space.shape == (spec.act_dim,), f"{task}: action size differs from the registry"
        assert env.spec is not None and env.spec.max_episode_steps == spec.episode_len
        _check_seeding(env)
        _check_step(env, [0.0] * spec.act_dim)  # a plain list works (numpy 2 + safety-gymnasium)
    finally:
        env.close()


@requires("safety_gymnasium")
@pytest.mark.simulator
@pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning")  # Car agents
@pytest.mark.parametrize("task", ["PointGoal1", "CarCircle1"])
def test_safety_gymnasium_navigation_task(task: str) -> None:
    spec = get_task(task)
    env = make_env(spec)
    try:
        assert env.observation_space.shape == (spec.obs_dim,), f"{task}: observation size differs from the registry"
        assert env.action_space.shape == (spec.act_dim,), f"{task}: action size differs from the registry"
        # Rebuilding the world at reset leaves float noise (~1e-17) in a few entries.
        _check_seeding(env, atol=1e-9)
        _, info = _check_step(env, env.action_space.sample())
        assert info["cost"] == info["cost_sum"]  # the 6-tuple's cost, moved into info
    finally:
        env.close()


@requires("safety_gymnasium")
@pytest.mark.simulator
def test_safety_gymnasium_vector_env_idles_finished_envs() -> None:
    vector = make_vector_env("HopperVelocity", 2)
    try:
        vector.reset_envs([0, 1], [0, 1])
        full_throttle = np.tile(vector.single_action_space.high, (2, 1))
        ended = np.zeros(2, bool)
        for _ in range(200):  # the hopper falls over within a few dozen steps
            step = vector.step(full_throttle)
            assert not (ended & (step.terminated | step.truncated)).any(), "an episode end was reported twice"
            assert (step.rewards[ended] == 0).all() and (step.costs[ended] == 0).all()
            ended |= step.terminated | step.truncated
            if ended.all():
                break
        assert ended.all()
        assert vector.reset_envs([1], [3]).shape == (1, 11)
    finally:
        vector.close()


# ---------------------------------------------------------------- MuJoCo (D4RL tasks)


@pytest.mark.simulator
@pytest.mark.parametrize("task", ["hopper-medium-v2", "halfcheetah-expert-v2"])
def test_mujoco_task_has_zero_cost(task: str) -> None:
    pytest.importorskip("mujoco")
    spec = get_task(task)
    env = make_env(spec)
    try:
        assert env.observation_space.shape == (spec.obs_dim,)
        assert env.action_space.shape == (spec.act_dim,)
        assert env.spec is not None and env.spec.max_episode_steps == spec.episode_len
        _check_seeding(env)
        _, info = _check_step(env, env.action_space.sample())
        assert info["cost"] == 0.0
    finally:
        env.close()


# ---------------------------------------------------------------- SyncVectorSafetyEnv on a scripted env


class _Countdown(gym.Env):
    """Observation ``[seed, t]``; reward ``t``; cost 1 (as an int, like Bullet); ends after ``length`` steps."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, length: int) -> None:
        self.length = length
        self.closed = False

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        self.seed_, self.t = seed, 0
        return np.array([seed, 0.0]), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return np.array([self.seed_, self.t]), float(self.t), self.t == self.length, False, {"cost": 1}

    def close(self) -> None:
        self.closed = True


def test_sync_vector_env_runs_resets_and_idles() -> None:
    envs = [_Countdown(length=1), _Countdown(length=3)]
    vector = SyncVectorSafetyEnv(envs)
    assert isinstance(vector, VectorSafetyEnv)
    actions = np.zeros((2, 1), np.float32)

    idle = vector.step(actions)  # nothing reset yet: no sub-environment moves
    np.testing.assert_array_equal(idle.observations, np.zeros((2, 2)))
    assert not idle.terminated.any() and (idle.rewards == 0).all()

    np.testing.assert_array_equal(vector.reset_envs([1, 0], [11, 10]), [[11, 0], [10, 0]])
    first = vector.step(actions)
    np.testing.assert_array_equal(first.observations, [[10, 1], [11, 1]])
    np.testing.assert_array_equal(first.terminated, [True, False])
    np.testing.assert_array_equal(first.costs, [1.0, 1.0])

    second = vector.step(actions)  # env 0 ended: it is not stepped and reports nothing new
    np.testing.assert_array_equal(second.observations, [[10, 1], [11, 2]])
    np.testing.assert_array_equal(second.rewards, [0.0, 2.0])
    np.testing.assert_array_equal(second.costs, [0.0, 1.0])
    np.testing.assert_array_equal(second.terminated, [False, False])
    assert envs[0].t == 1

    vector.reset_envs([0], [20])
    third = vector.step(actions)
    np.testing.assert_array_equal(third.observations, [[20, 1], [11, 3]])
    np.testing.assert_array_equal(third.terminated, [True, True])
    vector.close()
    assert all(env.closed for env in envs)


def test_sync_vector_env_rejects_bad_input() -> None:
    vector = SyncVectorSafetyEnv([_Countdown(2), _Countdown(2)])
    with pytest.raises(ValueError, match="one seed per index"):
        vector.reset_envs([0, 1], [1])
    with pytest.raises(ValueError, match="repeated indices"):
        vector.reset_envs([1, 1], [1, 2])
    with pytest.raises(IndexError, match="out of range for num_envs=2"):
        vector.reset_envs([2], [1])
    with pytest.raises(ValueError, match=r"expected \(2, 1\)"):
        vector.step(np.zeros((3, 1)))
    with pytest.raises(ValueError, match="at least one environment"):
        SyncVectorSafetyEnv([])

    class Wider(_Countdown):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)

    with pytest.raises(ValueError, match="same task"):
        SyncVectorSafetyEnv([_Countdown(2), Wider(2)])
