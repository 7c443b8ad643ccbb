"""bench/fallback_curve.py --quick: real agent processes, a real inference worker, a real Mosquitto.

The stored-result accuracies are checked against the same held-out windows run through the shipped
bundles directly: the agent must cut exactly those windows, and the policy must send exactly the
windows whose edge score is under the threshold.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefleet.bench.fallback_curve import (
    CLOUD_BUNDLE,
    EDGE_BUNDLE,
    HOP,
    QUICK_THRESHOLDS,
    WINDOW_LENGTH,
    CurveError,
    held_out_recordings,
    score_store,
)
from edgefleet.runtime.bundle import load_bundle
from tests.support.broker import find_mosquitto

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def _direct(
    bundle_dir: Path, windows: np.ndarray[Any, Any]
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    bundle = load_bundle(bundle_dir)
    with bundle.open_model(threads=1) as model:
        predictions = bundle.interpret(model.predict(bundle.preprocess(windows)))
    scores = np.array([p.score for p in predictions], dtype=np.float64)
    return np.array([str(p.label) for p in predictions]), scores


@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
def test_quick_curve_json_matches_the_bundles_run_directly() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fallback_curve.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    curve = json.loads(proc.stdout)
    assert set(curve) == {"edge_only", "cloud_only", "points"}
    assert [set(p) for p in curve["points"]] == [{"policy", "threshold", "cloud_share", "accuracy"}] * 4
    points = {p["threshold"]: p for p in curve["points"] if p["policy"] == "confidence"}
    assert sorted(points) == sorted(QUICK_THRESHOLDS)
    (share,) = [p for p in curve["points"] if p["policy"] != "confidence"]
    assert (share["policy"], share["threshold"]) == ("target_share:margin", 0.25)

    recordings, labels = held_out_recordings(7)
    windows = np.concatenate(
        [
            np.stack(
                [r.samples[s : s + WINDOW_LENGTH] for s in range(0, len(r.samples) - WINDOW_LENGTH + 1, HOP)]
            )
            for r in recordings
        ]
    )
    truth = np.concatenate([[labels[r.label]] * r.windows for r in recordings])
    edge_labels, edge_scores = _direct(EDGE_BUNDLE, windows)
    cloud_labels, _ = _direct(CLOUD_BUNDLE, windows)
    n = len(windows)

    assert points[0.0]["cloud_share"] == 0.0
    assert points[1.0]["cloud_share"] == 1.0
    assert (
        curve["edge_only"] == points[0.0]["accuracy"] == pytest.approx(float(np.mean(edge_labels == truth)))
    )
    assert curve["cloud_only"] == points[1.0]["accuracy"]
    assert curve["cloud_only"] == pytest.approx(float(np.mean(cloud_labels == truth)), abs=1 / n)
    sent = edge_scores < 0.7
    mixed = np.where(sent, cloud_labels, edge_labels)
    assert points[0.7]["cloud_share"] == pytest.approx(float(sent.mean()))
    assert 0.0 < points[0.7]["cloud_share"] < 1.0
    assert points[0.7]["accuracy"] == pytest.approx(float(np.mean(mixed == truth)), abs=1 / n)

    # The share target sends about its share (which windows exactly depends on how the agent
    # batched the streams: each is ranked against those before it), and sending the least sure
    # windows to the better model pays.
    assert 0.18 <= share["cloud_share"] <= 0.32
    assert share["accuracy"] > curve["edge_only"]


def _store(path: Path, rows: list[tuple[str, int, str, str]]) -> Path:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "CREATE TABLE results (stream TEXT, window_seq INTEGER, label TEXT, answered_by TEXT, "
            "fallback_reason TEXT)"
        )
        conn.executemany("INSERT INTO results VALUES (?, ?, ?, ?, NULL)", rows)
        conn.commit()
    return path


def test_score_store_counts_cloud_answers_and_refuses_duplicates_and_gaps(tmp_path: Path) -> None:
    labels = ["a", "b"]
    truth = {"rec-1": 0}
    good = _store(tmp_path / "good.db", [("rec-1", 0, "a", "edge"), ("rec-1", 1, "b", "cloud")])
    scored = score_store(good, truth, labels, expected=2)
    assert (scored.accuracy, scored.cloud_share) == (0.5, 0.5)
    twice = _store(tmp_path / "twice.db", [("rec-1", 0, "a", "edge"), ("rec-1", 0, "a", "cloud")])
    with pytest.raises(CurveError, match="stored twice"):
        score_store(twice, truth, labels, expected=2)
    short = _store(tmp_path / "short.db", [("rec-1", 0, "a", "edge")])
    with pytest.raises(CurveError, match="1 windows stored, 2 expected"):
        score_store(short, truth, labels, expected=2)
