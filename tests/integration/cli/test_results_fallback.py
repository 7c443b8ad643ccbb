"""`edgefleet results` says who answered and why, and shows both answers where both exist."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest

from edgefleet.agent.store import ResultRecord, Store, StoreConfig
from edgefleet.agent.store.deferred import CloudAnswer, DeferredStore
from edgefleet.cli.main import main

pytestmark = pytest.mark.integration


def record(seq: int, *, by: str = "edge", reason: str | None = None, label: str = "ABD") -> ResultRecord:
    now = time.time() - 60 + seq
    return ResultRecord(
        "imu", now, now + 2, "watch-edge", "1.0.0", label, 0.42, None, 2.0,
        answered_by=by, fallback_reason=reason, window_seq=seq, created_at=now,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> Path:
    store_path = tmp_path / "store.db"
    with Store.open(store_path, StoreConfig.model_validate({"path": store_path})) as store:
        store.write_results([record(0), record(1, by="cloud", reason="low_confidence", label="FLX")])
        deferred = DeferredStore(store, max_bytes=10_000)
        deferred.keep(record(2, reason="low_confidence:timeout"), request_id="a", shape=(1,), data=b"0000")
        deferred.keep(record(3, reason="low_confidence:offline"), request_id="b", shape=(1,), data=b"0000")
        assert deferred.attach("a", CloudAnswer("SPN", 0.91, None, "2.0.0")) is not None
        store.write_results([record(4, reason="low_confidence:cloud_error")])
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[device]\nid = "t"\nstate_dir = "{tmp_path}"\n\n'
        '[[sources]]\ntype = "synthetic"\nname = "imu"\nchannels = 6\n\n'
        f'[model]\nbundle = "{tmp_path / "none"}"\n\n[store]\npath = "{store_path}"\n'
    )
    return path


def test_json_has_the_outcome_and_both_answers(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results", "--config", str(config), "--format", "json"]) == 0
    rows = {r["window_seq"]: r for r in json.loads(capsys.readouterr().out)}
    assert {s: r["fallback_outcome"] for s, r in rows.items()} == {
        0: "edge", 1: "cloud", 2: "late", 3: "deferred", 4: "cloud_error",
    }  # fmt: skip
    late = rows[2]
    assert (late["label"], late["cloud_label"], late["cloud_score"], late["late"]) == (
        "ABD",
        "SPN",
        0.91,
        True,
    )
    assert late["cloud_model_version"] == "2.0.0"
    assert late["fallback_reason"] == "low_confidence:timeout"
    assert rows[0]["cloud_label"] is None
    assert rows[0]["late"] is False


def test_the_table_shows_who_answered_and_the_late_cloud_answer(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["results", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "outcome" in lines[0]
    assert "cloud answer" in lines[0]
    late = next(line for line in lines if "SPN" in line)
    assert "ABD" in late  # the edge answer, still the label
    assert "SPN 0.910 (v2.0.0) late" in late
    assert "edge (low_confidence:timeout)" in late
    assert " late " in late
    cloud = next(line for line in lines if "FLX" in line)
    assert "cloud (low_confidence)" in cloud


def test_csv_has_the_new_columns(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results", "--config", str(config), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {"fallback_outcome", "late", "cloud_label", "cloud_score", "cloud_model_version"} <= set(rows[0])
    assert sorted(r["fallback_outcome"] for r in rows) == ["cloud", "cloud_error", "deferred", "edge", "late"]
