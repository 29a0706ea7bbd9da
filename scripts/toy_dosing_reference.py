"""Reference rules on saferl's toy dosing simulator (synthetic, not clinical): what fixed dosing targets score.

Evaluates the noise-free scripted rule "dose to a fixed target concentration" (the data's behaviour
family with feedback 0) for several targets, on the same seeded episodes as a training run's final
evaluation (``saferl train ... seed=SEED`` evaluates episodes from ``SEED + EVAL_SEED_OFFSET``), and
prints DSRL-normalised reward and cost at kappa = 10, then one ``RESULT {json}`` line.

    python scripts/toy_dosing_reference.py                       # 20 episodes, as a run's final evaluation
    python scripts/toy_dosing_reference.py --episodes 1000       # the rules' means, less noise
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np

from saferl.datasets.envs.toy_dosing import ToyDosingParams, scripted_doses
from saferl.evaluation import evaluate
from saferl.trainer import EVAL_SEED_OFFSET


def fixed_target_rule(
    target: float, params: ToyDosingParams = ToyDosingParams()
) -> Callable[[np.ndarray], np.ndarray]:
    """A policy that doses towards ``target`` (population elimination rate, no feedback, no noise)."""

    def policy(observations: np.ndarray) -> np.ndarray:
        n = len(observations)
        behaviour = {"target": np.full(n, target), "feedback": np.zeros(n), "noise": np.zeros(n)}
        return scripted_doses(observations, behaviour, params)

    return policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="the training run's seed (evaluation episodes follow)")
    parser.add_argument("--targets", type=float, nargs="+", default=[1.4, 1.6, 1.8, 2.0, 2.4])
    args = parser.parse_args()
    results = {}
    print("| fixed target concentration | normalised reward | normalised cost (kappa 10) | episodes over 10 |")
    print("|---|---|---|---|")
    for target in args.targets:
        result, _ = evaluate(fixed_target_rule(target), "ToyDosing", episodes=args.episodes,
                             seed=args.seed + EVAL_SEED_OFFSET, cost_limits=(10.0,), num_envs=args.episodes)
        at_limit = result.limit(10.0)
        results[target] = {"normalized_reward": result.normalized_reward,
                           "normalized_cost": at_limit.normalized_cost, "violation_rate": at_limit.violation_rate}
        print(f"| {target:g} | {result.normalized_reward:.3f} | {at_limit.normalized_cost:.3f} | "
              f"{at_limit.violation_rate:.0%} |")
    print("RESULT " + json.dumps({"episodes": args.episodes, "seed": args.seed, "rules": results}))


if __name__ == "__main__":
    main()
