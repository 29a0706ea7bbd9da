"""Typed configs: defaults, YAML + overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from saferl.config import ConfigError, RunConfig, field_docs, from_yaml_text, load_config, to_yaml
from saferl.algorithms.bc import BCConfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_yaml_holds_only_differences_and_overrides_win(tmp_path: Path) -> None:
    path = write(tmp_path, "algorithm: bc_all\nsteps: 123\nalgo:\n  lr: 0.01\n")
    config = load_config(path, ["seed=7", "algo.hidden=[64,64]"])
    assert isinstance(config, RunConfig) and isinstance(config.algo, BCConfig)
    assert (config.algorithm, config.steps, config.seed) == ("bc_all", 123, 7)
    assert config.algo.lr == 0.01 and config.algo.hidden == [64, 64]
    assert config.eval_episodes == RunConfig().eval_episodes  # untouched default


def test_unknown_key_names_the_nearest_valid_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'stpes'.*did you mean 'steps'"):
        load_config(write(tmp_path, "stpes: 10\n"))
    with pytest.raises(ConfigError, match=r"unknown config key 'algo.lrr'.*did you mean 'algo.lr'"):
        load_config(None, ["algo.lrr=0.1"])


def test_wrong_type_names_key_and_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bad value for config key 'steps'"):
        load_config(write(tmp_path, "steps: many\n"))


def test_missing_file_and_unknown_algorithm(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"unknown algorithm 'bc_saf'.*did you mean bc_safe"):
        load_config(None, ["algorithm=bc_saf"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "steps: [1,\n"))


def test_resolved_yaml_round_trips() -> None:
    config = load_config(None, ["algorithm=bc_frontier", "steps=5", "algo.lr=0.5"])
    again = from_yaml_text(to_yaml(config))
    assert again == config


def test_field_docs_come_from_attribute_docstrings() -> None:
    docs = field_docs(RunConfig)
    assert docs["steps"] == "Gradient steps."
    assert "cost limit" in docs["cost_limit"]
    assert "learning rate" in field_docs(BCConfig)["lr"]
    assert "Transitions per gradient step" in field_docs(BCConfig)["batch_size"]
