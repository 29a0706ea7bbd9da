"""The Python API: the same typed config and trainer as the CLI, from a notebook or a script.

    >>> from saferl import Agent
    >>> agent = Agent("bc_safe", task="PointRobot", steps=2000, out_dir="runs/demo")
    >>> result = agent.fit()                 # loads (or builds) the task's dataset, trains, evaluates
    >>> actions = agent.act(observations)    # batched numpy in, numpy out
    >>> agent.save("runs/demo-copy")         # a run folder: checkpoint.pt + config.yaml
    >>> agent = Agent.load("runs/demo")
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from saferl.algorithm import Algorithm
from saferl.config import RunConfig, load_config, to_yaml
from saferl.datasets import TransitionDataset
from saferl.evaluation import EvaluationResult, evaluate
from saferl.trainer import CHECKPOINT_NAME, TrainResult, Trainer, load_trained


def _overrides(values: dict[str, Any]) -> list[str]:
    items = []
    for key, value in values.items():
        if isinstance(value, dict):
            items += [f"{key}.{item}" for item in _overrides(value)]
        elif isinstance(value, (list, tuple)):
            items.append(f"{key}=[{','.join(map(str, value))}]")
        elif value is None:
            items.append(f"{key}=null")
        else:
            items.append(f"{key}={value}")
    return items


class Agent:
    """An algorithm together with its run config: fit, act, evaluate, save, load.

    Keyword arguments are config overrides (``steps=1000``, ``algo={"lr": 3e-4}``); ``config`` may name a
    YAML file whose keys are applied first.
    """

    def __init__(self, algorithm: str | None = None, config: str | Path | None = None, **overrides: Any) -> None:
        if algorithm is not None:
            overrides = {"algorithm": algorithm, **overrides}
        self.config: RunConfig = load_config(config, _overrides(overrides))
        self.algorithm: Algorithm | None = None
        self.result: TrainResult | None = None

    def fit(
        self, dataset: TransitionDataset | None = None, resume: bool = False, until: int | None = None
    ) -> EvaluationResult | None:
        """Train on ``dataset`` (default: the task's dataset) and return the final evaluation.

        ``until`` pauses at that step (checkpointed; returns None); ``resume=True`` continues a run.
        """
        trainer = Trainer(self.config, dataset)
        self.result = trainer.run(resume=resume, until=until)
        self.algorithm = trainer.algorithm
        return self.result.final

    def _require(self) -> Algorithm:
        if self.algorithm is None:
            raise RuntimeError("the agent is not trained: call fit() or Agent.load(run_dir) first")
        return self.algorithm

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Actions for a batch (or one) of observations."""
        return self._require().act(observations)

    def evaluate(self, episodes: int = 20, cost_limits: Sequence[float] = (10.0,), seed: int = 0) -> EvaluationResult:
        """Evaluate the current policy on the config's task."""
        result, _ = evaluate(self._require().act, self.config.task, episodes=episodes, seed=seed, cost_limits=cost_limits)
        return result

    @property
    def run_dir(self) -> Path:
        """The run folder of this agent's config."""
        return self.config.resolved_out_dir()

    def save(self, path: str | Path) -> Path:
        """Copy the trained run's checkpoint and config into the folder ``path``."""
        self._require()
        source = self.run_dir / CHECKPOINT_NAME
        target = Path(path)
        target.mkdir(parents=True, exist_ok=True)
        if source.resolve() != (target / CHECKPOINT_NAME).resolve():
            shutil.copy2(source, target / CHECKPOINT_NAME)
            (target / "config.yaml").write_text(to_yaml(self.config))
        return target

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "Agent":
        """An agent from a run folder (its last checkpoint), ready to act or evaluate."""
        algorithm, config, _ = load_trained(path, device=device)
        agent = cls.__new__(cls)
        agent.config, agent.algorithm, agent.result = config, algorithm, None
        return agent


__all__ = ["Agent"]
