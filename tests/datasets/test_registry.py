"""The task registry against REFERENCE.md's table."""

from __future__ import annotations

import pytest

from saferl.datasets import TASKS, UnknownTaskError, get_task, list_tasks


def test_all_38_dsrl_tasks_with_metadrive_unavailable() -> None:
    dsrl = [t for t in TASKS.values() if t.format == "dsrl"]
    assert len(dsrl) == 38
    assert len(list_tasks("bullet")) == 8
    assert len(list_tasks("safety_gymnasium")) == 21
    metadrive = list_tasks("metadrive")
    assert len(metadrive) == 9 and not any(t.available for t in metadrive)
    assert all("MetaDrive" in (t.unavailable_reason or "") for t in metadrive)


@pytest.mark.parametrize(
    "name, T, r_max, r_min, c_max, n_traj, obs, act, file_name",
    [
        ("CarCircle", 300, 534.31, 3.484, 100, 1450, 8, 2, "SafetyCarCircle-v0-100-1450.hdf5"),
        ("DroneRun", 200, 682.83, 10.56, 140, 1990, 17, 4, "SafetyDroneRun-v0-140-1990.hdf5"),
        ("PointGoal1", 1000, 30.07, 0.0120, 100, 2022, 60, 2, "SafetyPointGoal1Gymnasium-v0-100-2022.hdf5"),
        ("HopperVelocity", 1000, 1911.40, 37.05, 250, 2240, 11, 3, "SafetyHopperVelocityGymnasium-v1-250-2240.hdf5"),
    ],
)
def test_reference_rows(name, T, r_max, r_min, c_max, n_traj, obs, act, file_name) -> None:  # type: ignore[no-untyped-def]
    task = get_task(name)
    assert (task.episode_len, task.reward_max, task.reward_min, task.cost_max) == (T, r_max, r_min, c_max)
    assert (task.num_trajectories, task.obs_dim, task.act_dim, task.file_name) == (n_traj, obs, act, file_name)
    assert task.url.endswith(file_name) and "huggingface.co/datasets/YYY-45/DSRL" in task.url


def test_lookup_by_any_id_and_clear_unknown() -> None:
    assert get_task("OfflineCarCircle-v0") is get_task("carcircle") is get_task("SafetyCarCircle-v0")
    assert get_task("OfflinePointGoal1Gymnasium-v0").name == "PointGoal1"
    assert get_task("hopper-medium-v2").reward_max == 3234.3
    with pytest.raises(UnknownTaskError, match="did you mean"):
        get_task("PointGol1")
