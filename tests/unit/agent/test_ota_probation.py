"""Probation verdicts from real counters and a real (SQLite) store."""

from __future__ import annotations

import threading
from pathlib import Path

from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.ota_install import _version_key
from edgefleet.agent.ota_probation import ProbationLimits, ProbationWatch, StoreReader
from edgefleet.agent.store import Store


def results(store: Store, version: str, scores: list[float]) -> None:
    from edgefleet.agent.store import ResultRecord

    store.write_results(
        [
            ResultRecord(
                stream="imu",
                window_start=float(i),
                window_end=float(i) + 1.0,
                model_name="m",
                model_version=version,
                label="a",
                score=score,
                outputs=None,
                latency_ms=1.0,
            )
            for i, score in enumerate(scores)
        ]
    )


def watch(tmp_path: Path, **limits: object) -> tuple[ProbationWatch, PipelineCounters, Store]:
    store = Store.open(tmp_path / "store.db")
    counters = PipelineCounters()
    merged = {"duration_s": 0.0, "min_windows": 10, **limits}
    return ProbationWatch(ProbationLimits(**merged), counters, StoreReader(store.path)), counters, store  # type: ignore[arg-type]


def test_a_model_as_good_as_the_previous_passes(tmp_path: Path) -> None:
    probation, counters, store = watch(tmp_path)
    results(store, "1.0.0", [0.8] * 20)
    for _ in range(5):
        counters.record_batch(8, 2.0)
    probation.baseline("1.0.0")
    probation.start()
    results(store, "1.1.0", [0.79] * 20)
    for _ in range(5):
        counters.record_batch(8, 2.2)
    outcome = probation.run("1.1.0", threading.Event())
    assert outcome.ok, outcome.reason
    assert outcome.metrics["windows"] == 40
    store.close()


def test_low_confidence_and_slow_are_each_named(tmp_path: Path) -> None:
    probation, counters, store = watch(tmp_path, max_p95_ratio=2.0)
    results(store, "1.0.0", [0.8] * 20)
    for _ in range(5):
        counters.record_batch(8, 2.0)
    probation.baseline("1.0.0")
    probation.start()
    results(store, "2.0.0", [0.4] * 20)
    for _ in range(5):
        counters.record_batch(8, 9.0)
    outcome = probation.run("2.0.0", threading.Event())
    assert not outcome.ok
    assert "mean confidence 0.400 is 0.50x the previous model's 0.800" in outcome.reason
    assert "p95 latency 9 ms is 4.50x the previous model's 2 ms" in outcome.reason
    store.close()


def test_errors_end_probation_early(tmp_path: Path) -> None:
    probation, counters, store = watch(tmp_path, duration_s=3600.0)
    probation.baseline("1.0.0")
    probation.start()
    counters.record_batch(8, 1.0)
    for _ in range(4):
        counters.record_inference_error(8)
    outcome = probation.run("2.0.0", threading.Event())
    assert not outcome.ok
    assert "error rate 80.0% over 40 windows" in outcome.reason
    store.close()


def test_fallback_share_and_drift_alerts(tmp_path: Path) -> None:
    probation, counters, store = watch(tmp_path, max_drift_alerts=0, min_confidence_ratio=None)
    counters.record_batch(10, 1.0)
    probation.baseline("1.0.0")
    probation.start()
    counters.record_batch(10, 1.0)
    counters.record_fallback(10)
    store.add_event("drift.alert", "input drift on imu", level="warning")
    outcome = probation.run("2.0.0", threading.Event())
    assert not outcome.ok
    assert "fallback share rose by 50.0%" in outcome.reason
    assert "1 drift alerts during probation (limit 0)" in outcome.reason
    store.close()


def test_an_abort_rolls_back_with_its_reason(tmp_path: Path) -> None:
    probation, _counters, store = watch(tmp_path, duration_s=3600.0)
    probation.start()
    probation.request_abort("rollback_model command")
    outcome = probation.run("2.0.0", threading.Event())
    assert (outcome.ok, outcome.reason) == (False, "rollback_model command")
    store.close()


def test_version_order() -> None:
    assert _version_key("1.10.0") > _version_key("1.9.3")
    assert _version_key("2.0.0-rc.1") < _version_key("2.0.0")
    assert _version_key("0.9.0") < _version_key("1.0.0")
