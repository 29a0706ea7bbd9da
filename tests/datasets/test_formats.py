"""DSRL / D4RL / Minari formats: round trips, files of other writers, and every bad input."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from saferl.datasets import TransitionDataset
from saferl.datasets.errors import DatasetFormatError, DatasetNotFoundError, SaferlDataError
from saferl.datasets.formats import (
    DSRL_KEYS,
    d4rl_normalized_score,
    detect_format,
    read_d4rl,
    read_dsrl,
    read_minari,
    write_d4rl,
    write_dsrl,
    write_minari,
)
from saferl.datasets.formats.hdf5_common import read_float32


def make_dataset(seed: int = 0, lengths: tuple[int, ...] = (7, 5, 9), obs_dim: int = 4, act_dim: int = 2,
                 terminal_last: bool = True) -> TransitionDataset:
    """Trajectories of the given lengths whose next observation is the following row's observation.

    Every trajectory but the last ends in a time-out; the last one in a termination if
    ``terminal_last``. About a third of the steps carry cost 1.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for number, length in enumerate(lengths):
        chain = np.cumsum(rng.normal(size=(length + 1, obs_dim)), axis=0).astype(np.float32)
        terminals = np.zeros(length, bool)
        timeouts = np.zeros(length, bool)
        if number < len(lengths) - 1:
            timeouts[-1] = True
        elif terminal_last:
            terminals[-1] = True
        parts.append(dict(
            observations=chain[:-1], next_observations=chain[1:], actions=rng.uniform(-1, 1, (length, act_dim)),
            rewards=rng.normal(size=length), costs=(rng.random(length) < 0.3).astype(float),
            terminals=terminals, timeouts=timeouts,
        ))
    arrays = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    return TransitionDataset(**arrays, metadata={"task": "Synthetic", "seed": seed})


def assert_same_arrays(expected: TransitionDataset, actual: TransitionDataset) -> None:
    for key, values in expected.arrays().items():
        got = actual.arrays()[key]
        assert got.dtype == values.dtype, key
        np.testing.assert_array_equal(got, values, err_msg=key)


# ---------------------------------------------------------------------------------------------- DSRL
def test_dsrl_round_trip_keeps_every_array_and_the_metadata(tmp_path: Path) -> None:
    dataset = make_dataset()
    path = write_dsrl(dataset, tmp_path / "sub" / "data.hdf5")
    back = read_dsrl(path)
    assert_same_arrays(dataset, back)
    assert back.metadata == {"task": "Synthetic", "seed": 0, "source": str(path), "format": "dsrl"}
    assert back.num_trajectories == 3
    with h5py.File(path) as handle:
        assert sorted(handle.keys()) == sorted(DSRL_KEYS)
        assert all(handle[key].compression == "gzip" and handle[key].dtype == np.float32 for key in DSRL_KEYS)
    assert os.listdir(path.parent) == ["data.hdf5"]


def test_dsrl_reads_a_dsrl_written_file_float64_column_vectors_and_extra_keys(tmp_path: Path) -> None:
    dataset = make_dataset(seed=1)
    path = tmp_path / "dsrl_style.hdf5"
    n = len(dataset)
    with h5py.File(path, "w") as handle:
        for key, values in dataset.arrays().items():
            column = values.astype(np.float64)
            if column.ndim == 1:
                column = column.reshape(n, 1)
            handle.create_dataset(key, data=column, compression="gzip")
        handle.create_dataset("infos/velocity", data=np.arange(n, dtype=np.float64), compression="gzip")
        handle.create_dataset("episode_returns", data=np.zeros(3))
    back = read_dsrl(path)
    assert_same_arrays(dataset, back)
    assert back.metadata == {"source": str(path), "format": "dsrl"}


def test_files_we_write_pass_dsrls_own_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSRL_SUPPRESS_IMPORT_ERROR", "1")  # dsrl warns that old `gym` is missing
    offline_env = pytest.importorskip("dsrl.offline_env", reason="dsrl==0.1.0 installs only with --no-deps")
    import gymnasium as gym

    dataset = make_dataset(obs_dim=5)

    class Env(offline_env.OfflineEnv):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    path = write_dsrl(dataset, tmp_path / "ours.hdf5")
    loaded = Env().get_dataset(h5path=str(path))
    for key, values in dataset.arrays().items():
        np.testing.assert_array_equal(loaded[key], values, err_msg=key)


def test_files_we_write_pass_a_reader_with_dsrls_logic(tmp_path: Path) -> None:
    """DSRL's ``get_dataset``: read every dataset of the file, assert the 7 keys, squeeze (N, 1) columns."""
    dataset = make_dataset()
    path = write_dsrl(dataset, tmp_path / "ours.hdf5")
    data = {}

    def read_every_dataset(name: str, item: h5py.HLObject) -> None:
        if isinstance(item, h5py.Dataset):
            data[name] = item[:]

    with h5py.File(path, "r") as handle:
        handle.visititems(read_every_dataset)
    assert set(DSRL_KEYS) <= set(data)
    assert data["observations"].shape[1:] == (4,) and data["actions"].shape[1:] == (2,)
    for key in ("rewards", "costs", "terminals"):
        assert data[key].shape == (len(dataset),)
    assert (1 - data["terminals"]).sum() == len(dataset) - 1  # flags usable in arithmetic as DSRL/OSRL do


def test_write_dsrl_is_atomic_when_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "data.hdf5"
    write_dsrl(make_dataset(seed=0), path)
    before = path.read_bytes()
    original = h5py.Group.create_dataset
    calls = []

    def interrupted(self: h5py.Group, name: str, *args: object, **kwargs: object) -> h5py.Dataset:
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_dsrl(make_dataset(seed=1), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["data.hdf5"]


def test_write_dsrl_rejects_metadata_that_is_not_json(tmp_path: Path) -> None:
    dataset = make_dataset()
    dataset.metadata["array"] = np.zeros(2)
    with pytest.raises(DatasetFormatError, match="not JSON-serialisable"):
        write_dsrl(dataset, tmp_path / "x.hdf5")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------- bad input
def _write_raw(path: Path, columns: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as handle:
        for key, values in columns.items():
            handle.create_dataset(key, data=values)
    return path


def _valid_columns(n: int = 6) -> dict[str, np.ndarray]:
    return {key: values for key, values in make_dataset(lengths=(n,)).arrays().items()}


def _spiked(shape: tuple[int, ...], index: tuple[int, ...], value: float) -> np.ndarray:
    values = np.zeros(shape)
    values[index] = value
    return values


BAD_COLUMNS = {  # case: (column, its replacement or None to delete it, expected message)
    "missing key": ("costs", None, "missing 'costs'"),
    "observations 1-D": ("observations", np.zeros(6), "'observations' must be 2-D"),
    "rewards (N, 2)": ("rewards", np.zeros((6, 2)), "'rewards' must have shape"),
    "length mismatch": ("costs", np.zeros(5), "length mismatch: 'costs' has 5 rows"),
    "next_observations shape": ("next_observations", np.zeros((6, 3)), "'next_observations' has shape"),
    "NaN": ("rewards", _spiked((6,), (2,), np.nan), "'rewards' holds 1 NaN"),
    "inf": ("observations", _spiked((6, 4), (4, 1), np.inf), "'observations' holds 1 inf"),
    "strings": ("costs", np.array([b"a"] * 6), "'costs' holds"),
    "flags not 0/1": ("terminals", np.full(6, 0.5), "'terminals' must hold only 0/1"),
}


@pytest.mark.parametrize("case", sorted(BAD_COLUMNS))
def test_bad_columns_give_one_clear_error_naming_the_file(tmp_path: Path, case: str) -> None:
    columns = _valid_columns()
    key, replacement, message = BAD_COLUMNS[case]
    if replacement is None:
        del columns[key]
    else:
        columns[key] = replacement
    path = _write_raw(tmp_path / "bad.hdf5", columns)
    with pytest.raises(DatasetFormatError, match=message) as caught:
        read_dsrl(path)
    assert str(path) in str(caught.value)


def test_an_empty_file_is_a_format_error(tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "empty.hdf5", {key: values[:0] for key, values in _valid_columns().items()})
    with pytest.raises(DatasetFormatError, match="empty"):
        read_dsrl(path)


def test_truncated_file_is_a_format_error(tmp_path: Path) -> None:
    path = write_dsrl(make_dataset(lengths=(300,)), tmp_path / "cut.hdf5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetFormatError, match="not a readable HDF5 file") as caught:
        read_dsrl(path)
    assert str(path) in str(caught.value) and "download" in str(caught.value)


@pytest.mark.parametrize("content", [b"", b"<html>404 Not Found</html>"])
def test_non_hdf5_file_is_a_format_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "page.hdf5"
    path.write_bytes(content)
    with pytest.raises(DatasetFormatError, match="not a readable HDF5 file"):
        read_dsrl(path)


def test_corrupt_chunk_is_a_format_error_not_a_zlib_traceback(tmp_path: Path) -> None:
    path = write_dsrl(make_dataset(lengths=(400,), obs_dim=8), tmp_path / "corrupt.hdf5")
    with h5py.File(path) as handle:
        info = handle["observations"].id.get_chunk_info(0)
    with open(path, "r+b") as raw:
        raw.seek(info.byte_offset + info.size // 2)
        raw.write(b"\xff" * 64)
    with pytest.raises(DatasetFormatError, match="corrupt") as caught:
        read_dsrl(path)
    assert str(path) in str(caught.value)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="no dataset file at"):
        read_dsrl(tmp_path / "absent.hdf5")
    with pytest.raises(DatasetFormatError, match="is a folder"):
        read_dsrl(tmp_path)


# ---------------------------------------------------------------------------------------------- chunk reader
@pytest.mark.parametrize(
    "dtype, shape, options",
    [
        (np.float32, (1000, 7), dict(chunks=(96, 7), compression="gzip", shuffle=True)),
        (np.float32, (1000, 7), dict(chunks=(96, 7), compression="gzip", shuffle=False)),
        (np.float64, (1000, 7), dict(chunks=(96, 7), compression="gzip", shuffle=True)),
        (np.float64, (1000,), dict(chunks=(300,), compression="gzip", shuffle=False)),
        (np.float32, (1000, 1), dict(chunks=(1000, 1), compression="gzip", shuffle=True)),
        (np.float32, (1000, 7), dict(chunks=(96, 7), compression="lzf")),
        (np.float32, (1000, 7), dict(chunks=(100, 4), compression="gzip")),
        (np.float32, (1000, 7), dict()),
        (np.int16, (1000, 3), dict(chunks=(96, 3), compression="gzip")),
        (">f4", (1000, 3), dict(chunks=(96, 3), compression="gzip", shuffle=True)),
    ],
)
def test_read_float32_matches_hdf5_on_every_layout(tmp_path: Path, dtype: object, shape: tuple, options: dict) -> None:
    values = (np.random.default_rng(0).normal(size=shape) * 100).astype(dtype)
    with h5py.File(tmp_path / "c.hdf5", "w") as handle:
        handle.create_dataset("x", data=values, **options)
    with h5py.File(tmp_path / "c.hdf5", "r") as handle:
        got = read_float32(handle["x"])
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_array_equal(got, values.astype(np.float32))


# ---------------------------------------------------------------------------------------------- D4RL
def test_d4rl_round_trip_with_next_observations(tmp_path: Path) -> None:
    dataset = make_dataset(seed=2)
    path = write_d4rl(dataset, tmp_path / "hopper.hdf5")
    back = read_d4rl(path)
    assert_same_arrays(dataset.replace(costs=np.zeros(len(dataset), np.float32)), back)
    assert back.metadata["format"] == "d4rl" and detect_format(path) == "d4rl"


def test_d4rl_without_next_observations_derives_them_like_qlearning_dataset(tmp_path: Path) -> None:
    # rows 0-2: episode cut by a time-out at 2; rows 3-4: episode ending terminal at 4;
    # rows 5-6: episode the file cuts off (no flag). Observation of row i is [i, 10 i].
    n = 7
    observations = np.stack([np.arange(n), 10 * np.arange(n)], axis=1).astype(np.float32)
    columns = {
        "observations": observations,
        "actions": np.arange(n, dtype=np.float32).reshape(n, 1),
        "rewards": np.arange(n, dtype=np.float32) / 10,
        "terminals": np.array([0, 0, 0, 0, 1, 0, 0], bool),
        "timeouts": np.array([0, 0, 1, 0, 0, 0, 0], bool),
    }
    path = _write_raw(tmp_path / "old.hdf5", columns)
    data = read_d4rl(path)
    kept = [0, 1, 3, 4, 5]  # the time-out row 2 and the file's last row 6 have no successor
    np.testing.assert_array_equal(data.observations, observations[kept])
    np.testing.assert_array_equal(data.next_observations, observations[[1, 2, 4, 5, 6]])
    np.testing.assert_array_equal(data.rewards, np.array(kept, np.float32) / 10)
    np.testing.assert_array_equal(data.terminals, [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(data.timeouts, [0, 1, 0, 0, 1])  # rows 1 and 5 now end their episode
    np.testing.assert_array_equal(data.costs, np.zeros(5))
    np.testing.assert_array_equal(data.trajectory_lengths(), [2, 2, 1])


def test_d4rl_write_without_next_observations_round_trips_through_the_derivation(tmp_path: Path) -> None:
    dataset = make_dataset(seed=3, lengths=(6, 4))
    path = write_d4rl(dataset, tmp_path / "old.hdf5", next_observations=False)
    with h5py.File(path) as handle:
        assert "next_observations" not in handle
    back = read_d4rl(path)
    # the first episode loses its time-out row; the second (terminal) keeps all rows
    assert len(back) == 9
    np.testing.assert_array_equal(back.observations, np.delete(dataset.observations, 5, axis=0))
    np.testing.assert_array_equal(back.next_observations[:4], dataset.next_observations[:4])
    assert back.timeouts[4] and back.terminals[-1]


def test_d4rl_file_missing_a_key(tmp_path: Path) -> None:
    columns = _valid_columns()
    del columns["timeouts"]
    path = _write_raw(tmp_path / "x.hdf5", columns)
    with pytest.raises(DatasetFormatError, match="missing 'timeouts'.*D4RL"):
        read_d4rl(path)


def test_d4rl_normalized_score_is_zero_at_ref_min_and_100_at_ref_max() -> None:
    from saferl.datasets import get_task

    spec = get_task("hopper-medium-v2")
    assert d4rl_normalized_score(spec, spec.reward_min) == pytest.approx(0.0)
    assert d4rl_normalized_score("hopper-medium-v2", spec.reward_max) == pytest.approx(100.0)
    middle = (spec.reward_min + spec.reward_max) / 2
    np.testing.assert_allclose(
        d4rl_normalized_score(spec, np.array([middle, spec.reward_max])), [50.0, 100.0]
    )
    # hopper: ref_min -20.272305, ref_max 3234.3 (d4rl infos.py): R = 1000 scores 31.35...
    assert d4rl_normalized_score(spec, 1000.0) == pytest.approx(100 * 1020.272305 / 3254.572305)
    with pytest.raises(ValueError, match="not a D4RL one"):
        d4rl_normalized_score("CarCircle", 1.0)


def test_detect_format(tmp_path: Path) -> None:
    dataset = make_dataset()
    assert detect_format(write_dsrl(dataset, tmp_path / "a.hdf5")) == "dsrl"
    assert detect_format(write_d4rl(dataset, tmp_path / "b.hdf5")) == "d4rl"
    with pytest.raises(DatasetFormatError, match="neither a DSRL dataset"):
        detect_format(_write_raw(tmp_path / "c.hdf5", {"images": np.zeros(3)}))


# ---------------------------------------------------------------------------------------------- Minari
def test_minari_round_trip_with_costs() -> None:
    minari = pytest.importorskip("minari")
    dataset = make_dataset(seed=4)
    folder = write_minari(dataset, "saferl/synthetic-v0")
    assert folder.is_dir()
    back = read_minari("saferl/synthetic-v0")
    assert_same_arrays(dataset, back)
    assert back.metadata == {"source": str(folder), "task": "saferl/synthetic-v0", "format": "minari"}
    episodes = list(minari.load_dataset("saferl/synthetic-v0").iterate_episodes())
    assert [len(e) for e in episodes] == [7, 5, 9]
    first = episodes[0]
    assert first.observations.shape == (8, 4)
    np.testing.assert_array_equal(first.infos["cost"], np.concatenate([[0.0], dataset.costs[:7]]))


def test_minari_round_trip_keeps_an_open_last_episode() -> None:
    pytest.importorskip("minari")
    dataset = make_dataset(seed=5, terminal_last=False)
    write_minari(dataset, "open-v0")
    assert_same_arrays(dataset, read_minari("open-v0"))


@pytest.mark.filterwarnings("ignore::UserWarning")  # Minari asks for author, permalink, ...
def test_minari_reads_datasets_without_costs_as_zero_cost() -> None:
    minari = pytest.importorskip("minari")
    from gymnasium.spaces import Box
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(0)
    steps = [4, 3]  # the first episode has no flag at its end: the reader marks a time-out there
    buffers = [
        EpisodeBuffer(id=i, observations=rng.normal(size=(t + 1, 2)).astype(np.float32),
                      actions=rng.normal(size=(t, 1)).astype(np.float32), rewards=np.ones(t),
                      terminations=np.zeros(t, bool), truncations=np.zeros(t, bool))
        for i, t in enumerate(steps)
    ]
    minari.create_dataset_from_buffers("plain-v0", buffers, observation_space=Box(-1, 1, (2,)),
                                       action_space=Box(-1, 1, (1,)))
    data = read_minari("plain-v0")
    np.testing.assert_array_equal(data.costs, np.zeros(7))
    np.testing.assert_array_equal(data.timeouts, [0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(data.observations[:4], buffers[0].observations[:4])
    np.testing.assert_array_equal(data.next_observations[4:], buffers[1].observations[1:])


def test_minari_failed_write_leaves_no_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("minari")
    from minari.dataset._storages.hdf5_storage import HDF5Storage
    from minari.storage.datasets_root_dir import get_dataset_path

    def broken(self: object, episodes: object) -> None:
        raise RuntimeError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(HDF5Storage, "update_episodes", broken)
        with pytest.raises(DatasetFormatError, match="could not write Minari dataset 'broken-v0'.*disk full"):
            write_minari(make_dataset(), "broken-v0")
    assert not get_dataset_path("broken-v0").exists()
    write_minari(make_dataset(), "broken-v0")  # the retry starts clean
    assert read_minari("broken-v0").num_trajectories == 3


def test_minari_refuses_an_existing_id_and_a_broken_observation_chain() -> None:
    pytest.importorskip("minari")
    dataset = make_dataset()
    write_minari(dataset, "twice-v0")
    with pytest.raises(SaferlDataError, match="already exists"):
        write_minari(dataset, "twice-v0")
    shifted = dataset.next_observations.copy()
    shifted[2] += 1.0
    with pytest.raises(DatasetFormatError, match=r"next_observations\[2\] differs from observations\[3\]"):
        write_minari(dataset.replace(next_observations=shifted), "chain-v0")


def test_minari_missing_dataset_is_not_found() -> None:
    pytest.importorskip("minari")
    with pytest.raises(DatasetNotFoundError, match="no local Minari dataset 'absent-v0'.*MINARI_DATASETS_PATH"):
        read_minari("absent-v0")
