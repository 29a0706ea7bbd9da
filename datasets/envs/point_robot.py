"""The built-in point robot: FISOR's toy, needing no simulator package.

A point robot in a river must reach a goal downstream of a whirlpool (the hazard). The current pushes it
with constant velocity ``w = (current, 0)``; the robot adds a controlled velocity of norm at most
``u_max < current``, so it can steer but never stop or go back:

.. math::

    p_{t+1} = p_t + \\Delta t\\,(w + u_{\\max}\\,\\pi_D(a_t)), \\qquad
    \\pi_D(a) = a / \\max(1, \\lVert a \\rVert)

(actions live in the box ``[-1, 1]^2`` and are projected onto the unit disc). The step cost is
``c_t = 1[\\lVert p_{t+1} - c \\rVert < r]`` (inside the hazard disc of centre ``c``, radius ``r``); the reward
is the progress towards the goal minus a time penalty, plus a bonus on reaching the goal, which ends the
episode (a true termination); otherwise the episode is truncated after ``episode_len`` steps.

**True feasible region.** Every velocity lies in the disc ``D`` of radius ``u_max`` around ``w``, which sees
the origin under a cone of half-angle ``alpha = asin(u_max / current)`` around ``+x``. Every path from ``p``
stays in the cone ``p + {t v : v in D}`` and moves right at speed at least ``current - u_max`` forever, so it
must cross any convex obstacle that cuts the cone; and a straight ray that misses the disc is itself a safe
path. Hence ``p`` (outside the hazard) is infeasible iff the whole cone of directions hits the hazard disc:

.. math::

    \\text{infeasible}(p) \\iff d \\le r \\;\\lor\\; |\\varphi| + \\alpha \\le \\arcsin(r/d),

with ``d = ||c - p||`` and ``phi`` the angle of ``c - p`` from ``+x``. This is the continuous-time answer;
the discrete-time env agrees with it away from a band of one step (``dt * speed``) around the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from .base import VectorStep, step_first_env


@dataclass(frozen=True)
class PointRobotParams:
    """Geometry and dynamics of the point robot (defaults are the registry's ``PointRobot`` task)."""

    dt: float = 0.05
    current: float = 1.0
    u_max: float = 0.5
    hazard_center: tuple[float, float] = (0.0, 0.0)
    hazard_radius: float = 0.8
    goal: tuple[float, float] = (2.5, 0.0)
    goal_radius: float = 0.4
    goal_bonus: float = 1.0
    time_penalty: float = 0.03
    start_x: float = -2.5
    start_y_range: tuple[float, float] = (-0.5, 0.5)
    episode_len: int = 200

    def __post_init__(self) -> None:
        if not 0.0 < self.u_max < self.current:
            raise ValueError("PointRobotParams needs 0 < u_max < current (the robot can steer but not stop)")


def project_to_disc(actions: np.ndarray) -> np.ndarray:
    """Project actions ``(..., 2)`` onto the unit disc: ``a / max(1, ||a||)``."""
    norm = np.linalg.norm(actions, axis=-1, keepdims=True)
    return actions / np.maximum(norm, 1.0)


def step_dynamics(
    positions: np.ndarray, actions: np.ndarray, params: PointRobotParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One step for a batch: returns ``(next_positions, rewards, costs, reached_goal)``."""
    actions = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
    velocity = np.array([params.current, 0.0]) + params.u_max * project_to_disc(actions)
    next_positions = positions + params.dt * velocity
    goal = np.asarray(params.goal)
    dist_before = np.linalg.norm(positions - goal, axis=-1)
    dist_after = np.linalg.norm(next_positions - goal, axis=-1)
    reached = dist_after < params.goal_radius
    rewards = dist_before - dist_after - params.time_penalty + params.goal_bonus * reached
    inside = np.linalg.norm(next_positions - np.asarray(params.hazard_center), axis=-1) < params.hazard_radius
    return next_positions, rewards, inside.astype(np.float64), reached


def true_feasible_mask(positions: np.ndarray, params: PointRobotParams = PointRobotParams()) -> np.ndarray:
    """Closed-form feasible set (see the module docstring): True where a hazard-free future exists."""
    positions = np.asarray(positions, dtype=np.float64)
    to_center = np.asarray(params.hazard_center) - positions
    d = np.linalg.norm(to_center, axis=-1)
    r = params.hazard_radius
    alpha = np.arcsin(params.u_max / params.current)
    phi = np.abs(np.arctan2(to_center[..., 1], to_center[..., 0]))
    with np.errstate(invalid="ignore", divide="ignore"):
        half_width = np.arcsin(np.clip(r / np.maximum(d, 1e-12), 0.0, 1.0))
    shadowed = phi + alpha <= half_width
    return ~((d <= r) | shadowed)


def _observation_space() -> gym.spaces.Box:
    return gym.spaces.Box(low=-np.inf, high=np.inf, shape=(2,), dtype=np.float32)


def _action_space() -> gym.spaces.Box:
    return gym.spaces.Box(low=-1.0, high=1.0, shape=(2,), dtype=np.float32)


class PointRobotVectorEnv:
    """``num_envs`` point robots stepped as one numpy batch (implements ``VectorSafetyEnv``).

    Sub-environments never reset themselves: the caller resets finished ones with ``reset_envs``.
    A finished sub-environment keeps moving if stepped; its results are meaningless until reset.
    ``reset_envs`` accepts ``starts`` to place robots at chosen positions (for tests and figures).
    """

    def __init__(self, num_envs: int, params: PointRobotParams = PointRobotParams()) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        self.params = params
        self.single_observation_space = _observation_space()
        self.single_action_space = _action_space()
        self.positions = np.zeros((num_envs, 2))
        self.steps = np.zeros(num_envs, dtype=np.int64)

    def reset_envs(
        self, indices: Sequence[int], seeds: Sequence[int], starts: np.ndarray | None = None
    ) -> np.ndarray:
        """Reset the sub-environments ``indices``; each start height is drawn from its own seed."""
        indices = np.asarray(indices, dtype=np.int64)
        if starts is None:
            low, high = self.params.start_y_range
            ys = np.array([np.random.default_rng(int(s)).uniform(low, high) for s in seeds])
            starts = np.stack([np.full(len(indices), self.params.start_x), ys], axis=1)
        self.positions[indices] = np.asarray(starts, dtype=np.float64).reshape(len(indices), 2)
        self.steps[indices] = 0
        return self.positions[indices].astype(np.float32)

    def step(self, actions: np.ndarray) -> VectorStep:
        """Step every robot; ``truncated`` marks the time limit, ``terminated`` the goal."""
        actions = np.asarray(actions).reshape(self.num_envs, 2)
        self.positions, rewards, costs, reached = step_dynamics(self.positions, actions, self.params)
        self.steps += 1
        truncated = (self.steps >= self.params.episode_len) & ~reached
        return VectorStep(self.positions.astype(np.float32), rewards, costs, reached, truncated)

    def close(self) -> None:
        """Nothing to release."""


class PointRobotEnv(gym.Env):
    """The point robot as a single gymnasium environment, with the step cost in ``info["cost"]``.

    ``reset(options={"start": (x, y)})`` places the robot; otherwise the start height comes from the seed.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, params: PointRobotParams = PointRobotParams()) -> None:
        self.params = params
        self.observation_space = _observation_space()
        self.action_space = _action_space()
        self._batch = PointRobotVectorEnv(1, params)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; the start height is drawn from ``seed`` (or the env's own generator)."""
        super().reset(seed=seed)
        start = None if not options or "start" not in options else np.asarray(options["start"])[None]
        episode_seed = int(self.np_random.integers(2**31 - 1)) if seed is None else seed
        obs = self._batch.reset_envs([0], [episode_seed], starts=start)
        return obs[0], {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Gymnasium 5-tuple step; ``info["cost"]`` is 1.0 inside the hazard."""
        return step_first_env(self._batch, action)


@dataclass(frozen=True)
class BehaviourFamily:
    """A scripted behaviour family from reckless to cautious, for building datasets.

    Each trajectory draws its own ``margin`` (clearance kept from the hazard; ``-radius`` means straight
    through its centre), ``speed`` (desired ground speed) and ``noise`` (std of Gaussian action noise).
    """

    margin_range: tuple[float, float] = (-0.8, 0.6)
    speed_range: tuple[float, float] = (0.6, 1.5)
    noise_range: tuple[float, float] = (0.05, 0.3)

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw the parameters of ``n`` behaviours, plus the side (+1/-1) each passes the hazard on."""
        return {
            "margin": rng.uniform(*self.margin_range, size=n),
            "speed": rng.uniform(*self.speed_range, size=n),
            "noise": rng.uniform(*self.noise_range, size=n),
            "side": rng.choice([-1.0, 1.0], size=n),
        }


def scripted_actions(
    positions: np.ndarray,
    behaviour: dict[str, np.ndarray],
    params: PointRobotParams,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Actions of the scripted behaviours for a batch of positions (noise-free when ``rng`` is None).

    Before the hazard, a robot whose straight line to the goal passes closer than ``radius + margin`` to
    the hazard centre heads for the waypoint ``(cx, cy + side * (radius + margin))``; otherwise (and after the
    hazard) it heads for the goal, at its desired speed, as closely as the current allows.
    """
    center, goal = np.asarray(params.hazard_center), np.asarray(params.goal)
    clearance = np.maximum(params.hazard_radius + behaviour["margin"], 0.0)
    to_goal = goal - positions
    seg_len = np.linalg.norm(to_goal, axis=-1, keepdims=True)
    direction = to_goal / np.maximum(seg_len, 1e-9)
    rel = center - positions
    along = np.clip((rel * direction).sum(-1), 0.0, seg_len[:, 0])
    closest = positions + direction * along[:, None]
    blocked = (np.linalg.norm(closest - center, axis=-1) < clearance) & (positions[:, 0] < center[0])
    side = np.where(positions[:, 1] - center[1] != 0, np.sign(positions[:, 1] - center[1]), behaviour["side"])
    waypoint = np.stack([np.full(len(positions), center[0]), center[1] + side * clearance], axis=1)
    target = np.where(blocked[:, None], waypoint, goal)
    heading = target - positions
    heading /= np.maximum(np.linalg.norm(heading, axis=-1, keepdims=True), 1e-9)
    desired_velocity = heading * behaviour["speed"][:, None]
    actions = project_to_disc((desired_velocity - np.array([params.current, 0.0])) / params.u_max)
    if rng is not None:
        actions = actions + rng.normal(size=actions.shape) * behaviour["noise"][:, None]
    return np.clip(actions, -1.0, 1.0)


__all__ = [
    "PointRobotParams",
    "PointRobotEnv",
    "PointRobotVectorEnv",
    "BehaviourFamily",
    "scripted_actions",
    "step_dynamics",
    "project_to_disc",
    "true_feasible_mask",
]
