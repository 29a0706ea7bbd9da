"""A toy dosing simulator written by saferl: a made-up drug, a made-up biomarker, no patient data.

**This is not a clinical model.** It has the *shape* of a dosing problem (a drug that accumulates, an
effect that saturates, a toxicity threshold, patients who differ in ways the dosing policy cannot see)
so that safe offline RL can be demonstrated on a task whose every number is known and reproducible. Its
parameters were chosen for that, not fitted to any drug, trial or patient, and nothing it outputs is
evidence about any real treatment.

**Model.** One compartment for the drug concentration ``C`` and an indirect-response biomarker ``B``
(high = disease), one step per dosing interval. The action ``a in [-1, 1]`` is the dose
``u = u_max (a + 1) / 2 in [0, u_max]``; a fraction ``exp(eta_t)`` of it is absorbed
(``eta_t ~ N(0, dose_noise^2)``):

.. math::

    C_{t+1} = C_t\\, e^{-k} + u_t\\, e^{\\eta_t}, \\qquad
    E(C) = E_{\\max} \\frac{C}{EC_{50} + C}, \\qquad
    B_{t+1} = B_t + k_{\\mathrm{out}} \\big(B_0 - B_t (1 + E(C_{t+1}))\\big) + \\sigma_B\\, \\epsilon_t

so that a constant concentration ``C`` holds the biomarker at ``B_0 / (1 + E(C))``. Each episode draws
its own patient: elimination rate ``k``, untreated level ``B_0`` and sensitivity ``EC_50`` (log-normal),
none of which is observed. The observation is ``(C, B)``.

**Reward and cost.** The reward of a step is ``1`` when ``B_{t+1}`` lies in the target band
``[band_low, band_high]`` and minus its distance to the band otherwise; the cost is
``1[C_{t+1} > toxic_concentration]``. Episodes never terminate; they are truncated after
``episode_len`` steps. With the defaults, an average patient reaches the band at concentrations well
under the toxicity threshold, while an insensitive one (high ``EC_50``) reaches it only above the
threshold: more drug buys reward at the price of cost, which is the trade-off a cost limit arbitrates.

**Randomness.** Everything random in an episode (the patient and every step's noise) is drawn at reset
from that episode's seed, so an episode is a function of its seed and actions only, whatever batch it
is stepped in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from .base import VectorStep, step_first_env


@dataclass(frozen=True)
class ToyDosingParams:
    """Parameters of the toy dosing simulator (defaults are the registry's ``ToyDosing`` task).

    Units are arbitrary: concentrations and doses share one unit, the biomarker another.
    """

    episode_len: int = 60
    max_dose: float = 1.5
    elimination_range: tuple[float, float] = (0.2, 0.4)
    dose_noise: float = 0.1
    baseline_range: tuple[float, float] = (1.8, 2.2)
    ec50_median: float = 1.8
    ec50_log_std: float = 0.4
    e_max: float = 2.5
    turnover: float = 0.2
    biomarker_noise: float = 0.03
    band_low: float = 0.6
    band_high: float = 1.0
    toxic_concentration: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 < self.turnover * (1.0 + self.e_max) < 1.0:
            raise ValueError("ToyDosingParams needs 0 < turnover * (1 + e_max) < 1 (a stable, positive biomarker)")
        if not self.band_low < self.band_high:
            raise ValueError("ToyDosingParams needs band_low < band_high")


@dataclass(frozen=True)
class Patients:
    """Per-episode parameters of a batch of simulated patients (arrays of length ``n``)."""

    elimination: np.ndarray
    baseline: np.ndarray
    ec50: np.ndarray


def dose_of_action(actions: np.ndarray, params: ToyDosingParams) -> np.ndarray:
    """Map actions in ``[-1, 1]`` (clipped) to doses in ``[0, max_dose]``."""
    return params.max_dose * (np.clip(actions, -1.0, 1.0) + 1.0) / 2.0


def action_of_dose(doses: np.ndarray, params: ToyDosingParams) -> np.ndarray:
    """Inverse of :func:`dose_of_action` (doses clipped to ``[0, max_dose]``)."""
    return 2.0 * np.clip(doses, 0.0, params.max_dose) / params.max_dose - 1.0


def effect(concentrations: np.ndarray, ec50: np.ndarray, params: ToyDosingParams) -> np.ndarray:
    """Saturating drug effect ``E_max C / (EC50 + C)``."""
    return params.e_max * concentrations / (ec50 + concentrations)


def band_reward(biomarker: np.ndarray, params: ToyDosingParams) -> np.ndarray:
    """1 inside the target band, minus the distance to the band outside it."""
    distance = np.maximum(params.band_low - biomarker, 0.0) + np.maximum(biomarker - params.band_high, 0.0)
    return np.where(distance == 0.0, 1.0, -distance)


def step_dynamics(
    concentrations: np.ndarray,
    biomarkers: np.ndarray,
    actions: np.ndarray,
    patients: Patients,
    dose_noise: np.ndarray,
    biomarker_noise: np.ndarray,
    params: ToyDosingParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One step for a batch, given standard-normal noise draws: ``(next_C, next_B, rewards, costs)``."""
    doses = dose_of_action(np.asarray(actions, dtype=np.float64), params)
    absorbed = doses * np.exp(params.dose_noise * dose_noise)
    next_c = concentrations * np.exp(-patients.elimination) + absorbed
    drive = patients.baseline - biomarkers * (1.0 + effect(next_c, patients.ec50, params))
    next_b = biomarkers + params.turnover * drive + params.biomarker_noise * biomarker_noise
    costs = (next_c > params.toxic_concentration).astype(np.float64)
    return next_c, next_b, band_reward(next_b, params), costs


def draw_episodes(seeds: Sequence[int], params: ToyDosingParams) -> tuple[Patients, np.ndarray, np.ndarray]:
    """Patients and the standard-normal noise ``(n, episode_len, 2)`` of episodes, one generator per seed.

    Returns ``(patients, start_biomarkers, noise)``; ``noise[..., 0]`` is the absorption noise and
    ``noise[..., 1]`` the biomarker noise of each step.
    """
    elimination, baseline, ec50, noise = [], [], [], []
    for seed in seeds:
        rng = np.random.default_rng(int(seed))
        elimination.append(rng.uniform(*params.elimination_range))
        baseline.append(rng.uniform(*params.baseline_range))
        ec50.append(params.ec50_median * np.exp(params.ec50_log_std * rng.normal()))
        noise.append(rng.normal(size=(params.episode_len, 2)))
    patients = Patients(np.array(elimination), np.array(baseline), np.array(ec50))
    return patients, patients.baseline.copy(), np.array(noise).reshape(len(seeds), params.episode_len, 2)


def _observation_space() -> gym.spaces.Box:
    return gym.spaces.Box(low=0.0, high=np.inf, shape=(2,), dtype=np.float32)


def _action_space() -> gym.spaces.Box:
    return gym.spaces.Box(low=-1.0, high=1.0, shape=(1,), dtype=np.float32)


class ToyDosingVectorEnv:
    """``num_envs`` simulated patients stepped as one numpy batch (implements ``VectorSafetyEnv``).

    Observations are ``(C, B)``. Sub-environments never reset themselves: the caller resets finished
    ones with ``reset_envs``; a finished one must not be stepped again before its reset.
    """

    def __init__(self, num_envs: int, params: ToyDosingParams = ToyDosingParams()) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = num_envs
        self.params = params
        self.single_observation_space = _observation_space()
        self.single_action_space = _action_space()
        self.concentrations = np.zeros(num_envs)
        self.biomarkers = np.zeros(num_envs)
        self.patients = Patients(np.zeros(num_envs), np.zeros(num_envs), np.ones(num_envs))
        self.noise = np.zeros((num_envs, params.episode_len, 2))
        self.steps = np.zeros(num_envs, dtype=np.int64)

    def observations(self) -> np.ndarray:
        """The current ``(C, B)`` of every sub-environment, float32 ``(num_envs, 2)``."""
        return np.stack([self.concentrations, self.biomarkers], axis=1).astype(np.float32)

    def reset_envs(self, indices: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
        """Start new episodes in ``indices``: a new patient (drug-free, at its untreated level) per seed."""
        indices = np.asarray(indices, dtype=np.int64)
        patients, starts, noise = draw_episodes(seeds, self.params)
        for name in ("elimination", "baseline", "ec50"):
            getattr(self.patients, name)[indices] = getattr(patients, name)
        self.concentrations[indices] = 0.0
        self.biomarkers[indices] = starts
        self.noise[indices] = noise
        self.steps[indices] = 0
        return self.observations()[indices]

    def step(self, actions: np.ndarray) -> VectorStep:
        """Dose every patient; ``truncated`` marks the time limit (there are no terminations)."""
        actions = np.asarray(actions, dtype=np.float64).reshape(self.num_envs)
        if (self.steps >= self.params.episode_len).any():
            raise RuntimeError("a sub-environment past its time limit was stepped; reset it first")
        noise = self.noise[np.arange(self.num_envs), self.steps]
        self.concentrations, self.biomarkers, rewards, costs = step_dynamics(
            self.concentrations, self.biomarkers, actions, self.patients, noise[:, 0], noise[:, 1], self.params
        )
        self.steps += 1
        truncated = self.steps >= self.params.episode_len
        return VectorStep(self.observations(), rewards, costs, np.zeros(self.num_envs, bool), truncated)

    def close(self) -> None:
        """Nothing to release."""


class ToyDosingEnv(gym.Env):
    """The toy dosing simulator as a single gymnasium environment, with the step cost in ``info["cost"]``."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, params: ToyDosingParams = ToyDosingParams()) -> None:
        self.params = params
        self.observation_space = _observation_space()
        self.action_space = _action_space()
        self._batch = ToyDosingVectorEnv(1, params)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode with a new patient drawn from ``seed`` (or the env's own generator)."""
        super().reset(seed=seed)
        episode_seed = int(self.np_random.integers(2**31 - 1)) if seed is None else seed
        return self._batch.reset_envs([0], [episode_seed])[0], {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Gymnasium 5-tuple step; ``info["cost"]`` is 1.0 above the toxicity threshold."""
        return step_first_env(self._batch, action)


@dataclass(frozen=True)
class DosingBehaviourFamily:
    """Scripted dosing behaviours from reckless to cautious, for building datasets.

    Each trajectory draws a ``target`` concentration (high: reckless), a ``feedback`` gain that raises
    the target while the biomarker is above the band and lowers it below, and ``noise`` (std of Gaussian
    noise on the action). Every behaviour assumes the population's mean elimination rate.
    """

    target_range: tuple[float, float] = (0.6, 3.0)
    feedback_range: tuple[float, float] = (0.0, 2.0)
    noise_range: tuple[float, float] = (0.05, 0.3)

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw the parameters of ``n`` behaviours."""
        return {
            "target": rng.uniform(*self.target_range, size=n),
            "feedback": rng.uniform(*self.feedback_range, size=n),
            "noise": rng.uniform(*self.noise_range, size=n),
        }


def scripted_doses(
    observations: np.ndarray,
    behaviour: dict[str, np.ndarray],
    params: ToyDosingParams,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Actions ``(n, 1)`` of the scripted behaviours (noise-free when ``rng`` is None).

    Each doses what would bring the concentration to its current target after one interval of decay at
    the population's mean elimination rate; the target moves with the biomarker's distance to the band.
    """
    concentrations, biomarkers = observations[:, 0], observations[:, 1]
    above = np.maximum(biomarkers - params.band_high, 0.0)
    below = np.maximum(params.band_low - biomarkers, 0.0)
    target = np.maximum(behaviour["target"] + behaviour["feedback"] * (above - below), 0.0)
    mean_elimination = float(np.mean(params.elimination_range))
    actions = action_of_dose(target - concentrations * np.exp(-mean_elimination), params)
    if rng is not None:
        actions = actions + rng.normal(size=actions.shape) * behaviour["noise"]
    return np.clip(actions, -1.0, 1.0)[:, None]


__all__ = [
    "ToyDosingParams",
    "ToyDosingEnv",
    "ToyDosingVectorEnv",
    "DosingBehaviourFamily",
    "Patients",
    "scripted_doses",
    "step_dynamics",
    "draw_episodes",
    "dose_of_action",
    "action_of_dose",
    "effect",
    "band_reward",
]
