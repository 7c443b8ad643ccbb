"""Drift through the real ``edgefleet agent run`` process, `agent status` and `drift check`.

The BasicMotions test recording, looped three times, is replayed as fast as possible; with a
stuck gyr_x the agent raises one ``drift.alert`` naming gyr_x and `agent status` shows the
channel flagged; with gyr_x and gyr_y swapped it flags both (the swap statistic); clean,
nothing is flagged; ``[drift] enabled = false`` turns it off.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgefleet.agent.store import Store, StoreConfig
from tests.e2e.agent.agentproc import AgentProcess, demo_bundle, run_cli, write_config

RECORDING = Path(__file__).resolve().parents[3] / "models" / "data" / "basicmotions_test_stream.npz"


# Replaying as fast as possible is saturation, where the default CPU budget (max_cpu) would
# skip most batches (tests/integration/agent/test_drift_observer.py covers that); count them all.
EVERY_BATCH = "max_cpu = 1.0"


def _agent(tmp_path: Path, *, stuck: bool, drift: str = EVERY_BATCH, swap: bool = False) -> tuple[Path, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = np.tile(np.load(RECORDING)["samples"].astype(np.float32), (3, 1))
    if stuck:
        data[:, 3] = data[0, 3]
    if swap:
        data[:, [3, 4]] = data[:, [4, 3]]
    recording = tmp_path / "imu.npy"
    np.save(recording, data)
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=state,
        sources=[{"type": "replay", "name": "imu", "file": recording, "realtime": False, "rate_hz": 10.0}],
        bundle=demo_bundle(),
        batching={"backpressure": "block"},
    )
    config.write_text(config.read_text() + f"\n[drift]\n{drift}\n")
    with AgentProcess(config, tmp_path / "agent.log", args=("--until-sources-finish",)) as agent:
        assert agent.wait(timeout=120) == 0, agent.output()
    return config, state / "store.db"


def _status(config: Path) -> dict[str, object]:
    out = run_cli("agent", "status", "--config", str(config), "--json")
    status: dict[str, object] = json.loads(out.stdout)
    return status


def _events(db: Path, kind: str) -> list[dict[str, object]]:
    store = Store.open(db, StoreConfig(path=db))
    try:
        return store.query_events(kind=kind)
    finally:
        store.close()


def test_a_stuck_sensor_is_flagged_by_the_running_agent(tmp_path: Path) -> None:
    config, db = _agent(tmp_path, stuck=True)
    alerts = _events(db, "drift.alert")
    assert [e["data"]["channel"] for e in alerts] == ["gyr_x"]  # type: ignore[index]
    drift = _status(config)["drift"]
    assert isinstance(drift, dict)
    assert drift["enabled"] is True
    assert drift["channels"]["gyr_x"]["drifted"] is True
    assert [name for name, c in drift["channels"].items() if c["drifted"]] == ["gyr_x"]
    text = run_cli("agent", "status", "--config", str(config)).stdout
    assert "DRIFTED: gyr_x" in text


def test_two_swapped_gyroscope_axes_are_flagged_by_the_running_agent(tmp_path: Path) -> None:
    # Invisible to per-channel statistics (the two axes are alike); the swap statistic names both.
    config, db = _agent(tmp_path, stuck=False, swap=True)
    alerts = _events(db, "drift.alert")
    found = sorted((e["data"]["channel"], e["data"]["metric"], e["data"]["report"]) for e in alerts)  # type: ignore[index]
    assert found == [("gyr_x", "swap", 1), ("gyr_y", "swap", 1)]
    drift = _status(config)["drift"]
    assert isinstance(drift, dict)
    assert drift["channels"]["gyr_x"]["swap_with"] == "gyr_y"
    text = run_cli("agent", "status", "--config", str(config)).stdout
    assert "DRIFTED: gyr_x, gyr_y" in text
    assert "(with gyr_y)" in text


def test_clean_replay_flags_nothing_and_disabled_drift_is_off(tmp_path: Path) -> None:
    config, db = _agent(tmp_path / "clean", stuck=False)
    assert _events(db, "drift.alert") == []
    status = _status(config)
    drift = status["drift"]
    assert isinstance(drift, dict)
    assert drift["reports"] == 5  # four of 256 windows and, flushed at stop, the last 172
    assert drift["drifted"] is False
    store = Store.open(db, StoreConfig(path=db))
    try:
        reports: list[dict[str, Any]] = [
            i.payload for i in store.outbox_peek(1000) if i.kind == "drift" and isinstance(i.payload, dict)
        ]
    finally:
        store.close()
    assert [r["windows"] for r in reports] == [256, 256, 256, 256, 172]
    assert sum(r["windows"] for r in reports) == status["totals"]["windows_inferred"]  # type: ignore[index]
    off_config, off_db = _agent(tmp_path / "off", stuck=True, drift="enabled = false")
    assert _events(off_db, "drift.alert") == []
    assert _status(off_config)["drift"] == {"enabled": False, "reason": "disabled"}
    assert "drift:      off (disabled)" in run_cli("agent", "status", "--config", str(off_config)).stdout
