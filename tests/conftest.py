"""Shared test set-up: one torch thread (the machine has 2 cores), temporary dataset caches."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point every dataset cache at a fresh temporary folder so tests never touch the user's caches."""
    root = tmp_path_factory.mktemp("caches")
    monkeypatch.setenv("DSRL_DATASET_DIR", str(root / "dsrl"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(root / "d4rl"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
