"""One typed config behind the CLI and the Python API.

A run is described by :class:`RunConfig` (the common fields) with the chosen algorithm's config
dataclass under ``algo``. YAML files hold only what differs from the defaults; ``key=value`` overrides
follow omegaconf's dot-list syntax (``algo.lr=3e-4``). An unknown key is an error naming the nearest
valid key, a wrong type an error naming the expected type, and the fully resolved config is written
beside every run (``config.yaml``).

Field documentation lives in attribute docstrings (a string literal right under each field, as in
cleanrl); :func:`field_docs` reads them for ``--help``.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import textwrap
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from saferl.algorithm import Algorithm, AlgorithmConfig

ENTRY_POINT_GROUP = "saferl.algorithms"


class ConfigError(ValueError):
    """A config that cannot be used: unknown key, wrong type, missing file, unknown algorithm."""


@dataclass
class RunConfig:
    """A training run: which algorithm on which data, for how long, and how it is evaluated."""

    algorithm: str = "bc_safe"
    """Registered algorithm name (`saferl algorithms` lists them)."""
    task: str = "PointRobot"
    """Task id from the registry (`saferl data list`); gives the environment and normalisation."""
    dataset: str | None = None
    """Path of a dataset file to train on instead of the task's default dataset."""
    steps: int = 20_000
    """Gradient steps."""
    seed: int = 0
    """Seed of every random number generator of the run."""
    cost_limit: float = 10.0
    """Episodic cost limit kappa used for training (where the algorithm uses one) and evaluation."""
    report_cost_limits: list[float] = field(default_factory=lambda: [10.0, 20.0, 40.0])
    """Cost limits at which evaluation metrics are also reported."""
    eval_episodes: int = 20
    """Episodes of the final evaluation."""
    eval_every: int = 5_000
    """Evaluate every this many steps during training (0: only at the end). Never used to pick a model."""
    eval_episodes_during: int = 10
    """Episodes of each evaluation during training."""
    log_every: int = 500
    """Write averaged losses to CSV and TensorBoard every this many steps."""
    checkpoint_every: int = 5_000
    """Write an atomic checkpoint every this many steps (and at the end)."""
    out_dir: str | None = None
    """Run folder (default: runs/<algorithm>-<task>-seed<seed>)."""
    device: str = "cpu"
    """Torch device: cpu, cuda, cuda:1, ..."""
    torch_threads: int = 0
    """torch.set_num_threads value (0: leave torch's default)."""
    progress: bool = True
    """Show a progress bar (steps/s, losses, ETA)."""
    wandb: bool = False
    """Also log to Weights & Biases (needs the `wandb` package; never required)."""
    algo: Any = None
    """The algorithm's own config (see `saferl config ALGORITHM`)."""

    def resolved_out_dir(self) -> Path:
        """The run folder."""
        return Path(self.out_dir or f"runs/{self.algorithm}-{self.task}-seed{self.seed}")


# ---------------------------------------------------------------------------- algorithm registry
@lru_cache(maxsize=1)
def _load_entry_points() -> tuple[dict[str, type[Algorithm]], dict[str, str]]:
    registry: dict[str, type[Algorithm]] = {}
    broken: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            registry[ep.name] = ep.load()
        except Exception as exc:  # a broken plug-in must not take the others down
            broken[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
    return dict(sorted(registry.items())), broken


def algorithm_registry() -> dict[str, type[Algorithm]]:
    """Algorithms registered under the ``saferl.algorithms`` entry-point group, by name.

    A user's package adds one by declaring ``[project.entry-points."saferl.algorithms"]`` ``name =
    "package.module:Class"``. Entry points that fail to import are left out (see :func:`get_algorithm`).
    """
    return dict(_load_entry_points()[0])


def get_algorithm(name: str) -> type[Algorithm]:
    """The algorithm class registered as ``name``; the error names the closest registered ones."""
    registry, broken = _load_entry_points()
    if name in broken:
        raise ConfigError(f"algorithm '{name}' is registered but failed to import ({broken[name]})")
    if name not in registry:
        close = difflib.get_close_matches(name, list(registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown algorithm '{name}'{hint} (registered: {', '.join(registry)})")
    return registry[name]


# ---------------------------------------------------------------------------- field docs
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass and its bases: ``{field_name: doc}``."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, following in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def describe(cls: type, prefix: str = "") -> str:
    """Human-readable listing of a config dataclass: ``name: type = default  # doc`` per field."""
    docs = field_docs(cls)
    lines = []
    defaults = cls()
    for f in dataclasses.fields(cls):
        if f.name == "algo":
            continue
        value = getattr(defaults, f.name)
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        lines.append(f"  {prefix}{f.name}: {type_name} = {value!r}\n      {docs.get(f.name, '')}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- loading
def _schema(algorithm: str) -> DictConfig:
    algo_cls = get_algorithm(algorithm)
    schema = OmegaConf.structured(RunConfig(algorithm=algorithm))
    schema.algo = OmegaConf.structured(algo_cls.config_class)
    OmegaConf.set_struct(schema, True)
    return schema


def _valid_keys(node: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for key in node.keys():
        full = f"{prefix}{key}"
        keys.append(full)
        child = node._get_node(key)  # noqa: SLF001 - read-only inspection of the schema
        if isinstance(child, DictConfig):
            keys += _valid_keys(child, f"{full}.")
    return keys


def _explain(exc: OmegaConfBaseException, schema: DictConfig, where: str) -> ConfigError:
    key = getattr(exc, "full_key", None) or ""
    if isinstance(exc, (ConfigKeyError, ConfigAttributeError)):
        close = difflib.get_close_matches(key, _valid_keys(schema), n=1, cutoff=0.4)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return ConfigError(f"unknown config key '{key}' in {where}{hint} (`saferl config ALGORITHM` lists the keys)")
    if isinstance(exc, ValidationError):
        return ConfigError(f"bad value for config key '{key}' in {where}: {exc.msg.splitlines()[0]}")
    return ConfigError(f"invalid config in {where}: {exc}")


def _merge(schema: DictConfig, other: DictConfig, where: str) -> DictConfig:
    try:
        return OmegaConf.merge(schema, other)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise _explain(exc, schema, where) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Build a :class:`RunConfig` from an optional YAML file and ``key=value`` overrides.

    The algorithm is read first (file, then overrides) so that ``algo`` gets that algorithm's schema.
    """
    file_cfg = OmegaConf.create({})
    where = "the defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist (the shipped configs are under configs/)")
        try:
            file_cfg = OmegaConf.load(path)
        except Exception as exc:  # yaml's own errors: say which file
            raise ConfigError(f"config file '{path}' is not valid YAML: {exc}") from None
        if not isinstance(file_cfg, DictConfig):
            raise ConfigError(f"config file '{path}' must hold a mapping of keys to values")
        where = f"'{path}'"
    try:
        cli_cfg = OmegaConf.from_dotlist(list(overrides or []))
    except Exception as exc:
        raise ConfigError(f"bad override {overrides}: use key=value, e.g. steps=1000 ({exc})") from None
    algorithm = cli_cfg.get("algorithm", file_cfg.get("algorithm", RunConfig.algorithm))
    schema = _schema(str(algorithm))
    merged = _merge(schema, file_cfg, where)
    merged = _merge(merged, cli_cfg, "the command-line overrides")
    try:
        run: RunConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        raise _explain(exc, schema, where) from None
    return run


def to_yaml(config: RunConfig) -> str:
    """The fully resolved config as YAML."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def from_yaml_text(text: str, overrides: list[str] | None = None) -> RunConfig:
    """Parse a resolved config written by :func:`to_yaml` (e.g. from a checkpoint or a run folder).

    ``overrides`` (``key=value``) are merged on top, with the same checks as :func:`load_config`.
    """
    raw = OmegaConf.create(text)
    schema = _schema(str(raw.get("algorithm")))
    merged = _merge(schema, raw, "the saved config")
    if overrides:
        try:
            cli_cfg = OmegaConf.from_dotlist(list(overrides))
        except Exception as exc:
            raise ConfigError(f"bad override {overrides}: use key=value, e.g. algo.selection=reward_aware ({exc})") from None
        merged = _merge(merged, cli_cfg, "the command-line overrides")
    try:
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise _explain(exc, schema, "the command-line overrides") from None


def default_config(algorithm: str) -> RunConfig:
    """The default run config of ``algorithm``."""
    return load_config(overrides=[f"algorithm={algorithm}"])


def algo_config_of(config: RunConfig) -> AlgorithmConfig:
    """The algorithm config inside a run config (always a dataclass instance after loading)."""
    if not isinstance(config.algo, AlgorithmConfig):
        raise ConfigError("the run config has no algorithm config; build it with load_config()")
    return config.algo


__all__ = [
    "RunConfig",
    "ConfigError",
    "load_config",
    "to_yaml",
    "from_yaml_text",
    "default_config",
    "field_docs",
    "describe",
    "algorithm_registry",
    "get_algorithm",
    "algo_config_of",
]
