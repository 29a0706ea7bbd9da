"""Caches, the downloader (against a local HTTP server only) and ``load_dataset``."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import socket
import sys
import threading
import types
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from saferl.datasets import TransitionDataset, get_task
from saferl.datasets.download import (
    d4rl_cache_dir,
    dataset_path,
    download,
    dsrl_cache_dir,
    is_cached,
)
from saferl.datasets.errors import DatasetFormatError, DatasetNotFoundError, UnknownTaskError
from saferl.datasets.formats import write_d4rl, write_dsrl
from saferl.datasets.loading import load_dataset


def tiny_dataset(seed: int = 0, n: int = 12, obs_dim: int = 3) -> TransitionDataset:
    """Two episodes of ``n / 2`` steps: a time-out, then a termination."""
    rng = np.random.default_rng(seed)
    flags = np.zeros(n, bool)
    terminals = flags.copy()
    terminals[-1] = True
    timeouts = flags.copy()
    timeouts[n // 2 - 1] = True
    return TransitionDataset(
        observations=rng.normal(size=(n, obs_dim)), next_observations=rng.normal(size=(n, obs_dim)),
        actions=rng.uniform(-1, 1, (n, 2)), rewards=rng.normal(size=n), costs=rng.integers(0, 2, n),
        terminals=terminals, timeouts=timeouts,
    )


# ---------------------------------------------------------------------------------------------- caches
def test_cache_dirs_follow_the_environment_and_default_to_home(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    monkeypatch.setenv("DSRL_DATASET_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "e"))
    assert dsrl_cache_dir() == tmp_path / "d" and d4rl_cache_dir() == tmp_path / "e"
    monkeypatch.delenv("DSRL_DATASET_DIR")
    monkeypatch.delenv("D4RL_DATASET_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert dsrl_cache_dir() == tmp_path / ".dsrl" / "datasets"
    assert d4rl_cache_dir() == tmp_path / ".d4rl" / "datasets"


def test_dataset_path_uses_the_registered_file_name_in_the_formats_cache(tmp_path: Path) -> None:
    assert dataset_path("CarCircle") == dsrl_cache_dir() / "SafetyCarCircle-v0-100-1450.hdf5"
    assert dataset_path(get_task("hopper-medium-v2")) == d4rl_cache_dir() / "hopper_medium-v2.hdf5"
    assert not is_cached("CarCircle")
    write_dsrl(tiny_dataset(), dataset_path("CarCircle"))
    assert is_cached("OfflineCarCircle-v0")


# ---------------------------------------------------------------------------------------------- local server
class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``routes``: path -> (status, body, announced length)."""

    routes: dict[str, tuple[int, bytes, int]] = {}
    hits: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).hits[self.path] = type(self).hits.get(self.path, 0) + 1
        status, body, announced = self.routes.get(self.path, (404, b"not found", 9))
        self.send_response(status)
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, tuple[int, bytes, int]], dict[str, int]]]:
    """A local HTTP server on 127.0.0.1: yields its base URL, its route table and its hit counts."""
    routes: dict[str, tuple[int, bytes, int]] = {}
    hits: dict[str, int] = {}
    handler = type("Handler", (_Handler,), {"routes": routes, "hits": hits})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", routes, hits
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def dsrl_bytes(tmp_path: Path) -> bytes:
    return write_dsrl(tiny_dataset(), tmp_path / "source.hdf5").read_bytes()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_download_success_with_checksum(server: tuple, dsrl_bytes: bytes, tmp_path: Path) -> None:
    base, routes, _ = server
    routes["/data.hdf5"] = (200, dsrl_bytes, len(dsrl_bytes))
    dest = tmp_path / "cache" / "data.hdf5"
    got = download(f"{base}/data.hdf5", dest, sha256=hashlib.sha256(dsrl_bytes).hexdigest(), retry_delay_s=0)
    assert got == dest and dest.read_bytes() == dsrl_bytes
    assert os.listdir(dest.parent) == ["data.hdf5"]


def test_download_truncated_body_is_retried_then_reported_and_leaves_nothing(
    server: tuple, dsrl_bytes: bytes, tmp_path: Path
) -> None:
    base, routes, hits = server
    routes["/cut.hdf5"] = (200, dsrl_bytes[: len(dsrl_bytes) // 2], len(dsrl_bytes))
    dest = tmp_path / "cache" / "cut.hdf5"
    with pytest.raises(DatasetNotFoundError, match="could not download cut.hdf5") as caught:
        download(f"{base}/cut.hdf5", dest, retries=2, retry_delay_s=0, timeout_s=5)
    assert hits["/cut.hdf5"] == 3
    assert str(dest) in str(caught.value)
    assert os.listdir(dest.parent) == []


@pytest.mark.parametrize(
    "body, sha, message",
    [
        (b"<html>rate limited</html>", None, "not a readable HDF5 file"),
        (None, "0" * 64, "SHA-256"),
    ],
)
def test_download_of_a_corrupt_file_is_rejected_and_leaves_nothing(
    server: tuple, dsrl_bytes: bytes, tmp_path: Path, body: bytes | None, sha: str | None, message: str
) -> None:
    base, routes, _ = server
    content = dsrl_bytes if body is None else body
    routes["/bad.hdf5"] = (200, content, len(content))
    dest = tmp_path / "cache" / "bad.hdf5"
    with pytest.raises(DatasetFormatError, match=message):
        download(f"{base}/bad.hdf5", dest, sha256=sha, retry_delay_s=0)
    assert os.listdir(dest.parent) == []


def test_download_of_an_hdf5_file_without_the_keys_is_rejected(server: tuple, tmp_path: Path) -> None:
    base, routes, _ = server
    content = write_d4rl(tiny_dataset(), tmp_path / "d4rl.hdf5", next_observations=False).read_bytes()
    routes["/d4rl.hdf5"] = (200, content, len(content))
    with pytest.raises(DatasetFormatError, match="missing 'next_observations', 'costs'"):
        download(f"{base}/d4rl.hdf5", tmp_path / "cache" / "x.hdf5", retry_delay_s=0)


def test_download_http_error_is_not_found_without_retrying(server: tuple, tmp_path: Path) -> None:
    base, _, hits = server
    with pytest.raises(DatasetNotFoundError, match="HTTP 404"):
        download(f"{base}/absent.hdf5", tmp_path / "absent.hdf5", retries=3, retry_delay_s=0)
    assert hits["/absent.hdf5"] == 1


def test_download_offline_names_the_file_the_url_the_folder_and_the_variable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/SafetyCarCircle-v0-100-1450.hdf5"
    dest = tmp_path / "cache" / "SafetyCarCircle-v0-100-1450.hdf5"
    with pytest.raises(DatasetNotFoundError) as caught:
        download(url, dest, retries=1, retry_delay_s=0, env_var="DSRL_DATASET_DIR")
    message = str(caught.value)
    for part in ("SafetyCarCircle-v0-100-1450.hdf5", url, str(dest.parent), "$DSRL_DATASET_DIR"):
        assert part in message
    assert not dest.exists()


# ---------------------------------------------------------------------------------------------- load_dataset
def test_load_a_path_detects_the_format_and_names_the_task(tmp_path: Path) -> None:
    dataset = tiny_dataset()
    dsrl_file = write_dsrl(dataset, tmp_path / "SafetyCarCircle-v0-100-1450.hdf5")
    loaded = load_dataset(dsrl_file)
    np.testing.assert_array_equal(loaded.costs, dataset.costs)
    assert loaded.metadata == {"source": str(dsrl_file), "format": "dsrl", "task": "CarCircle"}
    d4rl_file = write_d4rl(dataset, tmp_path / "mine.hdf5")
    loaded = load_dataset(str(d4rl_file))
    assert loaded.metadata == {"source": str(d4rl_file), "format": "d4rl"}
    np.testing.assert_array_equal(loaded.costs, np.zeros(len(dataset)))


def test_load_a_cached_task_by_any_of_its_ids() -> None:
    dataset = tiny_dataset(seed=1)
    path = write_dsrl(dataset, dataset_path("BallRun"))
    for name in ("BallRun", "OfflineBallRun-v0", "SafetyBallRun-v0"):
        loaded = load_dataset(name, download=False)
        np.testing.assert_array_equal(loaded.observations, dataset.observations)
        assert loaded.metadata == {"source": str(path), "format": "dsrl", "task": "BallRun"}


def test_load_an_uncached_task_without_download_says_where_to_put_it() -> None:
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("CarRun", download=False)
    message = str(caught.value)
    assert str(dataset_path("CarRun")) in message and "$DSRL_DATASET_DIR" in message
    assert get_task("CarRun").url in message


def test_load_an_uncached_task_downloads_it_into_the_cache(server: tuple, dsrl_bytes: bytes) -> None:
    base, routes, hits = server
    spec = get_task("DroneRun")
    routes["/" + spec.file_name] = (200, dsrl_bytes, len(dsrl_bytes))
    local = dataclasses.replace(spec, url=f"{base}/{spec.file_name}")
    loaded = load_dataset(local)
    assert dataset_path(spec).read_bytes() == dsrl_bytes
    assert loaded.metadata["task"] == "DroneRun" and len(loaded) == 12
    load_dataset(local)
    assert hits["/" + spec.file_name] == 1  # the second load reads the cache


def test_load_offline_raises_not_found_and_leaves_the_cache_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("saferl.datasets.download.RETRY_DELAY_S", 0.0)
    spec = dataclasses.replace(get_task("AntRun"), url=f"http://127.0.0.1:{_closed_port()}/x.hdf5")
    with pytest.raises(DatasetNotFoundError, match="could not download"):
        load_dataset(spec)
    assert not dsrl_cache_dir().exists() or os.listdir(dsrl_cache_dir()) == []


def test_load_a_d4rl_task_from_its_cache() -> None:
    dataset = tiny_dataset(seed=2)
    write_d4rl(dataset, dataset_path("walker2d-medium-v2"))
    loaded = load_dataset("walker2d-medium-v2")
    assert loaded.metadata["format"] == "d4rl" and loaded.metadata["task"] == "walker2d-medium-v2"
    np.testing.assert_array_equal(loaded.rewards, dataset.rewards)


def test_metadrive_tasks_load_from_a_local_file() -> None:
    spec = get_task("OfflineMetadrive-easysparse-v0")
    assert not spec.available
    write_dsrl(tiny_dataset(obs_dim=261), dataset_path(spec))
    assert load_dataset(spec.dataset_id, download=False).obs_dim == 261


def test_builtin_tasks_are_built_into_the_dsrl_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    def ensure_builtin_dataset(task: object) -> Path:
        built.append(task.name)
        return write_dsrl(tiny_dataset(seed=3, obs_dim=2), dsrl_cache_dir() / task.file_name)

    stub = types.ModuleType("saferl.datasets.point_robot_data")
    stub.ensure_builtin_dataset = ensure_builtin_dataset
    monkeypatch.setitem(sys.modules, "saferl.datasets.point_robot_data", stub)
    loaded = load_dataset("PointRobot")
    assert built == ["PointRobot"]
    assert loaded.metadata["task"] == "PointRobot" and loaded.obs_dim == 2
    assert loaded.metadata["source"] == str(dsrl_cache_dir() / get_task("PointRobot").file_name)


def test_unknown_names_and_missing_paths() -> None:
    with pytest.raises(UnknownTaskError, match="did you mean CarCircle"):
        load_dataset("CarCirle")
    with pytest.raises(DatasetNotFoundError, match="no dataset file at"):
        load_dataset("missing/data.hdf5")
    with pytest.raises(DatasetNotFoundError, match="no dataset file at"):
        load_dataset(Path("absent"))


def test_a_corrupt_cached_file_is_reported_not_overwritten() -> None:
    path = dataset_path("CarCircle")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"partial")
    with pytest.raises(DatasetFormatError, match="not a readable HDF5 file"):
        load_dataset("CarCircle")
    assert path.read_bytes() == b"partial"
