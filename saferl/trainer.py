"""The one training loop of saferl, for every algorithm.

Per step: sample a batch (one vectorised gather), call the algorithm's ``update``, keep the losses it
returns by name (tensors are read in batches, not one host sync per step). Every ``log_every`` steps the
averages go to ``metrics.csv`` and TensorBoard; every ``eval_every`` steps the policy is evaluated
(``eval.csv``) without touching the training RNG streams; every ``checkpoint_every`` steps, and at the end,
an atomic checkpoint holds every piece of state, so that ``resume=True`` continues exactly as an
uninterrupted run would (same losses, same final metrics).

The reported model is always the last one: evaluation during training is for monitoring only.
"""

from __future__ import annotations

import csv
import json

import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saferl.algorithm import Algorithm, TaskContext
from saferl.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from saferl.config import ConfigError, RunConfig, algo_config_of, from_yaml_text, get_algorithm, to_yaml
from saferl.datasets import TaskSpec, TransitionDataset, get_task
from saferl.datasets.loading import load_dataset
from saferl.evaluation import EpisodeRecords, EvaluationResult, evaluate

CHECKPOINT_NAME = "checkpoint.pt"
EVAL_SEED_OFFSET = 1_000_003
"""Evaluation episodes use seeds ``seed + EVAL_SEED_OFFSET + i``: never the training seed stream."""


class RunFolderError(RuntimeError):
    """A run folder that cannot be used as asked (e.g. it holds a run and ``resume`` was not asked)."""


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def task_context(task: TaskSpec, dataset: TransitionDataset, config: RunConfig) -> TaskContext:
    """The facts an algorithm is built with."""
    return TaskContext(
        obs_dim=dataset.obs_dim,
        act_dim=dataset.act_dim,
        episode_len=task.episode_len,
        cost_limit=config.cost_limit,
        reward_max=task.reward_max,
        reward_min=task.reward_min,
        total_steps=config.steps,
    )


def build_algorithm(config: RunConfig, context: TaskContext) -> Algorithm:
    """Instantiate the configured algorithm on the configured device."""
    cls = get_algorithm(config.algorithm)
    return cls(algo_config_of(config), context).to(config.device)


class _CsvLog:
    """Append-only CSV whose rows after a given step can be dropped (for resuming)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fields: list[str] | None = None

    def truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        with self.path.open(newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= step]
        if rows:
            self.fields = list(rows[0].keys())
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", newline="") as handle:
            if self.fields:
                writer = csv.DictWriter(handle, fieldnames=self.fields)
                writer.writeheader()
                writer.writerows(rows)
        os.replace(tmp, self.path)

    def write(self, row: dict[str, Any]) -> None:
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        if self.fields is None:
            self.fields = list(row)
        elif any(key not in self.fields for key in row):  # a metric that starts later (e.g. staged training)
            self.fields = self.fields + [key for key in row if key not in self.fields]
            if not new_file:
                with self.path.open(newline="") as handle:
                    rows = list(csv.DictReader(handle))
                tmp = self.path.with_suffix(".tmp")
                with tmp.open("w", newline="") as handle:
                    writer = csv.DictWriter(handle, fieldnames=self.fields)
                    writer.writeheader()
                    writer.writerows(rows)
                os.replace(tmp, self.path)
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(row)


class _LogWindow:
    """The values ``update`` returned since the last log row, each averaged over the steps that reported it.

    Tensor values are kept as returned and read all at once (one host sync) when the window is averaged,
    checkpointed, or holds ``READ_EVERY`` steps; the sums are the same float64 sums, in the same order, as
    reading every value as it comes, so logs and resumes do not depend on when the reads happen.
    """

    READ_EVERY = 512

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._pending: dict[str, list[Any]] = {}
        self._pending_steps = 0

    def add(self, values: dict[str, Any]) -> None:
        """Record one step's values (floats or one-element tensors)."""
        for name, value in values.items():
            self._pending.setdefault(name, []).append(value)
            self.counts[name] = self.counts.get(name, 0) + 1
        self._pending_steps += 1
        if self._pending_steps >= self.READ_EVERY:
            self._read()

    def _read(self) -> None:
        for name, values in self._pending.items():
            total = self.sums.get(name, 0.0)
            for value in _as_floats(values):
                total += value
            self.sums[name] = total
        self._pending, self._pending_steps = {}, 0

    def means(self) -> dict[str, float]:
        """The average of every value over the steps that reported it."""
        self._read()
        return {name: total / self.counts[name] for name, total in self.sums.items()}

    def state(self) -> dict[str, dict[str, Any]]:
        """Checkpoint form (plain floats and ints)."""
        self._read()
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    @classmethod
    def from_state(cls, state: dict[str, dict[str, Any]]) -> "_LogWindow":
        """The window :meth:`state` described."""
        window = cls()
        window.sums, window.counts = dict(state["sums"]), dict(state["counts"])
        return window


def _as_floats(values: list[Any]) -> list[float]:
    """Python floats of ``values`` (floats or one-element tensors), reading all the tensors in one go."""
    tensors = [value.detach().reshape(()) for value in values if isinstance(value, torch.Tensor)]
    read = iter(torch.stack(tensors).tolist() if tensors else ())
    return [float(next(read)) if isinstance(value, torch.Tensor) else float(value) for value in values]


@dataclass
class TrainResult:
    """What a finished run produced."""

    out_dir: Path
    final: EvaluationResult | None
    """The final evaluation (None when the run paused before ``config.steps`` with ``until``)."""
    records: EpisodeRecords | None
    steps: int


class Trainer:
    """Trains ``config.algorithm`` on ``config.task`` (or ``dataset``) into ``config.out_dir``."""

    def __init__(self, config: RunConfig, dataset: TransitionDataset | None = None) -> None:
        self.config = config
        self.out_dir = config.resolved_out_dir()
        self.task = get_task(config.task)
        if config.torch_threads > 0:
            torch.set_num_threads(config.torch_threads)
        seed_everything(config.seed)
        self.dataset = dataset if dataset is not None else load_dataset(config.dataset or config.task)
        self.context = task_context(self.task, self.dataset, config)
        self.algorithm = build_algorithm(config, self.context)
        self.train_data = self.algorithm.setup(self.dataset)
        self.sampler = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self._window = _LogWindow()

    # ------------------------------------------------------------------ state
    def _payload(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "algorithm_name": self.config.algorithm,
            "config_yaml": to_yaml(self.config),
            "context": asdict(self.context),
            "algorithm": self.algorithm.training_state(),
            "rng": capture_rng_state(),
            "sampler": self.sampler.get_state(),
            "log_window": self._window.state(),
        }

    def save(self) -> Path:
        """Write the checkpoint (atomic) and return its path."""
        path = self.out_dir / CHECKPOINT_NAME
        save_checkpoint(path, self._payload())
        return path

    def _restore(self) -> None:
        payload = load_checkpoint(self.out_dir / CHECKPOINT_NAME, map_location=self.config.device)
        self.algorithm.load_training_state(payload["algorithm"])
        restore_rng_state(payload["rng"])
        self.sampler.set_state(payload["sampler"])
        self.step = int(payload["step"])
        self._window = _LogWindow.from_state(payload["log_window"])

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, episodes: int, cost_limits: list[float], record: bool = False) -> tuple[EvaluationResult, EpisodeRecords]:
        """Evaluate the current policy without consuming the training RNG streams."""
        np_state = np.random.get_state()
        py_state = random.getstate()
        devices = [torch.device(self.config.device)] if torch.device(self.config.device).type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed + EVAL_SEED_OFFSET)
            result = evaluate(
                self.algorithm.act,
                self.task,
                episodes=episodes,
                seed=self.config.seed + EVAL_SEED_OFFSET,
                cost_limits=cost_limits,
                record_observations=record,
            )
        np.random.set_state(np_state)
        random.setstate(py_state)
        return result

    # ------------------------------------------------------------------ loop
    def run(self, resume: bool = False, until: int | None = None) -> TrainResult:
        """Train (or resume) to ``config.steps``, evaluate the last model, write the run's files.

        ``until`` pauses the run at that step instead (checkpointed, no final evaluation): a later
        ``run(resume=True)`` continues exactly as if it had never stopped.
        """
        cfg = self.config
        checkpoint = self.out_dir / CHECKPOINT_NAME
        if checkpoint.exists() and not resume:
            raise RunFolderError(
                f"'{self.out_dir}' already holds a run (checkpoint at step "
                f"{load_checkpoint(checkpoint)['step']}); resume it with --resume or choose another out_dir"
            )
        if resume and not checkpoint.exists():
            raise RunFolderError(f"nothing to resume: '{checkpoint}' does not exist")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        metrics, evals = _CsvLog(self.out_dir / "metrics.csv"), _CsvLog(self.out_dir / "eval.csv")
        if resume:
            self._restore()
            metrics.truncate_after(self.step)
            evals.truncate_after(self.step)
        _write_text(self.out_dir / "config.yaml", to_yaml(cfg))

        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=self.step if resume else None)
        wandb_run = _maybe_wandb(cfg, self.out_dir)
        progress = _progress(cfg, self.step)
        started, started_step = time.perf_counter(), self.step
        try:
            stop = cfg.steps if until is None else min(until, cfg.steps)
            while self.step < stop:
                batch = self.train_data.sample(algo_config_of(cfg).batch_size, self.sampler)
                if cfg.device != "cpu":
                    batch = batch.to(cfg.device)
                self._window.add(self.algorithm.update(batch, self.step))
                self.step += 1
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    means = self._window.means()
                    rate = (self.step - started_step) / max(time.perf_counter() - started, 1e-9)
                    metrics.write({"step": self.step, **means, "steps_per_s": round(rate, 2)})
                    for name, value in means.items():
                        writer.add_scalar(f"train/{name}", value, self.step)
                    if wandb_run is not None:
                        wandb_run.log({f"train/{k}": v for k, v in means.items()}, step=self.step)
                    if progress is not None:
                        progress.set_postfix({k: f"{v:.3g}" for k, v in list(means.items())[:4]})
                    self._window = _LogWindow()
                if cfg.eval_every > 0 and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                    result, _ = self.evaluate(cfg.eval_episodes_during, [cfg.cost_limit])
                    row = _eval_row(self.step, result, cfg.cost_limit)
                    evals.write(row)
                    for name, value in row.items():
                        if name != "step":
                            writer.add_scalar(f"eval/{name}", value, self.step)
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save()
                if progress is not None:
                    progress.update(1)
        finally:
            if progress is not None:
                progress.close()
            writer.flush()
        if self.step < cfg.steps:
            self.save()
            writer.close()
            return TrainResult(self.out_dir, None, None, self.step)
        limits = sorted({float(cfg.cost_limit), *map(float, cfg.report_cost_limits)})
        final, records = self.evaluate(cfg.eval_episodes, limits, record=self.task.simulator == "builtin")
        payload = _final_payload(final, self.step)
        if self.task.simulator == "builtin":
            payload["feasibility"] = self._feasibility_report()
        _write_text(self.out_dir / "final_metrics.json", json.dumps(payload, indent=2))
        for name, value in _eval_row(self.step, final, cfg.cost_limit).items():
            if name != "step":
                writer.add_scalar(f"final/{name}", value, self.step)
        writer.close()
        if wandb_run is not None:
            wandb_run.finish()
        if self.task.simulator == "builtin" and records.observations is not None:
            from saferl.report import plot_point_robot_rollouts

            plot_point_robot_rollouts(records, self.out_dir / "rollouts.png", title=f"{cfg.algorithm} (step {self.step})")
        return TrainResult(self.out_dir, final, records, self.step)


    def _feasibility_report(self) -> dict[str, float] | None:
        """Learned vs true feasible region of the point robot (PNG + IoU), for algorithms that have one."""
        probe = torch.zeros(1, self.dataset.obs_dim, device=self.algorithm.device)
        if self.algorithm.feasibility_margin(probe) is None:
            return None
        from saferl.report import feasible_region_figure

        def margin(points: np.ndarray) -> np.ndarray:
            obs = torch.as_tensor(points, device=self.algorithm.device)
            return self.algorithm.feasibility_margin(obs).cpu().numpy()  # type: ignore[union-attr]

        bounds = (self.dataset.observations.min(0), self.dataset.observations.max(0))
        return feasible_region_figure(margin, self.out_dir / "feasibility.png", bounds,
                                      observations=self.dataset.observations, title=f"{self.config.algorithm} V_h <= 0")


def _eval_row(step: int, result: EvaluationResult, cost_limit: float) -> dict[str, float]:
    at_limit = result.limit(cost_limit)
    return {
        "step": step,
        "return": result.mean_return,
        "cost": result.mean_cost,
        "normalized_reward": result.normalized_reward,
        "normalized_cost": at_limit.normalized_cost,
        "violation_rate": at_limit.violation_rate,
    }


def _final_payload(result: EvaluationResult, step: int) -> dict[str, Any]:
    return {"checkpoint": CHECKPOINT_NAME, "checkpoint_step": step, "selection": "last", **result.to_dict()}


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _progress(cfg: RunConfig, start: int) -> Any:
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.steps, initial=start, desc=f"{cfg.algorithm} {cfg.task}", mininterval=1.0, unit="step")


def _maybe_wandb(cfg: RunConfig, out_dir: Path) -> Any:
    if not cfg.wandb:
        return None
    try:
        import wandb
    except ImportError:
        raise RunFolderError("wandb=true needs the `wandb` package: pip install wandb (or set wandb=false)") from None
    return wandb.init(project="saferl", name=out_dir.name, dir=str(out_dir), config=json.loads(json.dumps(asdict(cfg), default=str)))


def train(config: RunConfig, dataset: TransitionDataset | None = None, resume: bool = False) -> TrainResult:
    """Train ``config`` (resuming its run folder if asked) and return the final evaluation."""
    return Trainer(config, dataset).run(resume=resume)


def load_trained(
    run_dir: str | Path, device: str = "cpu", overrides: list[str] | None = None
) -> tuple[Algorithm, RunConfig, int]:
    """Rebuild a trained algorithm from a run folder's checkpoint, ready to ``act``.

    ``overrides`` (``algo.FIELD=VALUE``) change fields that only matter when acting, listed by the
    algorithm's ``act_time_fields`` (FISOR: ``selection``, ``num_candidates``); anything else would
    describe another training run and is refused with a :class:`~saferl.config.ConfigError`.
    """
    payload = load_checkpoint(Path(run_dir) / CHECKPOINT_NAME, map_location=device)
    if overrides:
        saved = from_yaml_text(payload["config_yaml"])
        allowed = get_algorithm(saved.algorithm).act_time_fields
        for item in overrides:
            key = item.split("=", 1)[0].strip()
            field_name = key[len("algo."):] if key.startswith("algo.") else None
            if field_name not in allowed:
                fields = ", ".join(f"algo.{name}" for name in allowed) or "none"
                raise ConfigError(
                    f"'{key}' cannot be changed at evaluation: it shapes training. Fields {saved.algorithm} reads "
                    f"only when acting: {fields}. Train a new run to change it."
                )
    config = from_yaml_text(payload["config_yaml"], overrides)
    context = TaskContext(**payload["context"])
    config.device = device
    algorithm = build_algorithm(config, context)
    algorithm.load_training_state(payload["algorithm"])
    algorithm.eval()
    return algorithm, config, int(payload["step"])


__all__ = ["Trainer", "TrainResult", "train", "load_trained", "seed_everything", "RunFolderError", "CHECKPOINT_NAME"]

