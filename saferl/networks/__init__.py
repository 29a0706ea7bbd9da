"""Networks shared by algorithms: MLPs, vectorised ensembles, diffusion denoisers and samplers."""

from saferl.networks.diffusion import (
    DiffusionDenoiser,
    DiffusionSchedule,
    ddpm_sample,
    diffusion_loss,
    vp_beta_schedule,
)
from saferl.networks.mlp import ACTIVATIONS, MLP, EnsembleLayerNorm, EnsembleLinear, EnsembleMLP, make_activation

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "EnsembleMLP",
    "EnsembleLinear",
    "EnsembleLayerNorm",
    "make_activation",
    "DiffusionDenoiser",
    "DiffusionSchedule",
    "ddpm_sample",
    "diffusion_loss",
    "vp_beta_schedule",
]
