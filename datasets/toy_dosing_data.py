"""The toy dosing dataset: scripted dosing behaviours from reckless to cautious on saferl's toy simulator.

The data are synthetic: simulated patients of :mod:`.envs.toy_dosing`, a toy written by saferl, dosed by
scripted rules. They are not patient data and carry no clinical meaning. ``build_toy_dosing_dataset``
rolls every behaviour out at once as one numpy batch and returns a :class:`TransitionDataset`
(deterministic by seed, about a second for the default 1000 trajectories).
"""

from __future__ import annotations

import numpy as np

from .envs.toy_dosing import DosingBehaviourFamily, ToyDosingParams, ToyDosingVectorEnv, scripted_doses
from .scripted import scripted_rollouts
from .types import TransitionDataset


def build_toy_dosing_dataset(
    num_trajectories: int = 1000,
    seed: int = 0,
    params: ToyDosingParams = ToyDosingParams(),
    family: DosingBehaviourFamily = DosingBehaviourFamily(),
) -> TransitionDataset:
    """Roll out ``num_trajectories`` scripted behaviours (one patient each) and return their transitions.

    Deterministic by ``seed``: behaviours, episode seeds (hence patients and simulator noise) and action
    noise all come from one ``numpy.random.Generator(seed)``. Every trajectory lasts ``episode_len`` steps.
    """
    if num_trajectories < 1:
        raise ValueError(f"num_trajectories must be >= 1, got {num_trajectories}")
    rng = np.random.default_rng(seed)
    behaviour = family.sample(num_trajectories, rng)
    env = ToyDosingVectorEnv(num_trajectories, params)
    return scripted_rollouts(
        env, lambda obs: scripted_doses(obs, behaviour, params, rng), num_trajectories, params.episode_len, rng,
        {"task": "ToyDosing", "source": f"saferl toy dosing simulator, synthetic (seed {seed})", "format": "dsrl"},
    )


__all__ = ["build_toy_dosing_dataset"]
