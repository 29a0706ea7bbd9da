"""The shared constrained-optimisation core of saferl.

Small, standalone pieces, each documented with its maths in ``docs/constraints/``: cost limits,
Lagrange multipliers, trust regions, high-confidence safety certificates, critic ensembles and value
losses, feasibility (Hamilton-Jacobi reachability), dataset nearest neighbours, OOD guardians.
"""

from saferl.constraints.certificates import (
    CERTIFICATE_METHODS,
    NO_SOLUTION_FOUND,
    SafetyTestResult,
    empirical_bernstein_upper_bound,
    hoeffding_upper_bound,
    inflated_bound,
    safety_test,
    student_t_upper_bound,
    upper_confidence_bound,
)
from saferl.constraints.critics import (
    CriticEnsemble,
    ValueNetwork,
    ensemble_mse_loss,
    expectile_loss,
    iql_q_target,
    iql_value_loss,
    polyak_update,
    reduce_ensemble,
    reversed_expectile_loss,
)
from saferl.constraints.feasibility import (
    FeasibilityCritic,
    FeasibilityMode,
    constraint_signal,
    hj_q_target,
    tabular_hj_values,
)
from saferl.constraints.neighbors import BACKENDS as NEIGHBOR_BACKENDS
from saferl.constraints.neighbors import DatasetNeighborIndex, Neighbors, NeighborStats, make_keys
from saferl.constraints.ood import EnsembleDisagreementGuardian, KernelDensityGuardian, OODGuardian
from saferl.constraints.cost_limits import episodic_cost_limit_from_q_threshold, per_step_cost_threshold
from saferl.constraints.multipliers import (
    MULTIPLIER_KINDS,
    LagrangeMultiplier,
    LogLagrangeMultiplier,
    Multiplier,
    PIDLagrangeMultiplier,
    make_multiplier,
)
from saferl.constraints.trust_region import PolicySnapshot, gaussian_anchor_distance, gaussian_kl, squared_distance

__all__ = [
    "NEIGHBOR_BACKENDS",
    "DatasetNeighborIndex",
    "Neighbors",
    "NeighborStats",
    "make_keys",
    "CriticEnsemble",
    "ValueNetwork",
    "ensemble_mse_loss",
    "expectile_loss",
    "iql_q_target",
    "iql_value_loss",
    "polyak_update",
    "reduce_ensemble",
    "reversed_expectile_loss",
    "FeasibilityCritic",
    "FeasibilityMode",
    "constraint_signal",
    "hj_q_target",
    "tabular_hj_values",
    "EnsembleDisagreementGuardian",
    "KernelDensityGuardian",
    "OODGuardian",
    "CERTIFICATE_METHODS",
    "NO_SOLUTION_FOUND",
    "SafetyTestResult",
    "empirical_bernstein_upper_bound",
    "hoeffding_upper_bound",
    "inflated_bound",
    "safety_test",
    "student_t_upper_bound",
    "upper_confidence_bound",
    "episodic_cost_limit_from_q_threshold",
    "per_step_cost_threshold",
    "MULTIPLIER_KINDS",
    "LagrangeMultiplier",
    "LogLagrangeMultiplier",
    "Multiplier",
    "PIDLagrangeMultiplier",
    "make_multiplier",
    "PolicySnapshot",
    "gaussian_anchor_distance",
    "gaussian_kl",
    "squared_distance",
]
