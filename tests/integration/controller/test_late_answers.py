"""A late cloud answer travels from the device store to the controller: the agent's real store and
SyncService, a real Mosquitto and a real ControllerService (SQLite, and Postgres where available).
It is applied once per device result, however often it arrives, and is acknowledged end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edgefleet.agent.store import ResultRecord, Store
from edgefleet.agent.store.deferred import CloudAnswer, DeferredStore
from edgefleet.agent.store.records import PRIORITY_RESULTS
from edgefleet.cloud_sync import SyncService
from tests.integration.controller.conftest import RunningController, wait_for
from tests.integration.delivery.harness import device_config
from tests.support.broker import MosquittoBroker
from tests.support.sync_fixtures import open_store

pytestmark = pytest.mark.integration

DEVICE = "late-dev"


def edge(seq: int) -> ResultRecord:
    now = time.time()
    return ResultRecord(
        "imu", now - 2, now, "watch-edge", "1.0.0", "ABD", 0.41, None, 3.0,
        fallback_reason="low_confidence:timeout", window_seq=seq,
    )  # fmt: skip


def test_late_answers_reach_the_controller_once(
    controller: RunningController, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    store: Store = open_store(tmp_path / "store.db")
    deferred = DeferredStore(store, max_bytes=100_000)
    ids = [deferred.keep(edge(i), request_id=f"r{i}", shape=(2,), data=b"12345678")[0] for i in range(3)]
    sync = SyncService(store, device_config(mosquitto), DEVICE)
    sync.start()
    database = controller.service.database
    try:
        wait_for(lambda: store.outbox_backlog() == {}, what="the edge answers to be acknowledged")
        summary = database.results_summary(DEVICE, since=0, until=time.time() + 60, bucket_s=3600)
        assert summary.total == 3

        # Two late answers arrive after the edge answers were synced; one window stays unanswered.
        assert deferred.attach("r0", CloudAnswer("SPN", 0.93, None, "2.0.0")) == ids[0]
        assert deferred.attach("r2", CloudAnswer("FLX", 0.88, None, "2.0.0")) == ids[2]
        wait_for(lambda: len(database.late_answers(DEVICE)) == 2, what="the late answers")
        wait_for(lambda: store.outbox_backlog() == {}, what="the result_update acknowledgements")
        by_id = {a.result_id: a for a in database.late_answers(DEVICE)}
        assert set(by_id) == {ids[0], ids[2]}
        first = by_id[ids[0]]
        assert (first.edge_label, first.cloud_label, first.cloud_score) == ("ABD", "SPN", 0.93)
        assert (first.cloud_model_version, first.edge_model_version) == ("2.0.0", "1.0.0")
        assert (first.stream, first.window_seq, first.fallback_reason) == ("imu", 0, "low_confidence:timeout")

        # The same update again under a new message id (e.g. queued twice before a crash): applied once.
        [row] = store.db.execute("SELECT 0, 0, window_end FROM results WHERE id = ?", [ids[0]]).fetchall()
        again = {
            "result_id": ids[0], "stream": "imu", "window_seq": 0, "window_end": row[2], "edge_label": "ABD",
            "edge_model_version": "1.0.0", "fallback_reason": "low_confidence:timeout",
            "cloud_label": "OTHER", "cloud_score": 0.1, "cloud_model_version": "2.0.0",
        }  # fmt: skip
        store.enqueue("result_update", again, priority=PRIORITY_RESULTS)
        wait_for(lambda: store.outbox_backlog() == {}, what="the duplicate's acknowledgement")
        answers = database.late_answers(DEVICE)
        assert len(answers) == 2
        assert {a.cloud_label for a in answers} == {"SPN", "FLX"}
        # A late answer improves a result; it is not a new one.
        summary = database.results_summary(DEVICE, since=0, until=time.time() + 60, bucket_s=3600)
        assert summary.total == 3
    finally:
        sync.stop()
        store.close()


def test_a_malformed_update_is_refused_and_counted(
    controller: RunningController, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    from tests.integration.controller.conftest import connect_device

    device = connect_device(mosquitto, DEVICE)
    try:
        before = controller.service.ingest.stats.malformed
        bad = json.dumps({"result_id": 0}).encode()
        device.publish_raw("result_update", bad)
        wait_for(lambda: controller.service.ingest.stats.malformed > before, what="the refusal")
        assert controller.service.database.late_answers(DEVICE) == []
    finally:
        device.close()
