"""The demo's fallback devices: held-out smartwatch recordings, an edge model that asks the cloud.

``edgefleet demo`` runs its first three devices on the shoulder-exercise recordings of the test
subjects (9 and 10 of ``models/data/watch.npz``, never seen in training) through the shipped watch
edge bundles, with ``[fallback]`` on: windows the edge model is unsure of go over the demo's broker
to the controller's inference workers, which answer with the ``watch-cloud`` bundle. The policy is
the share target chosen on validation subjects (``chosen`` in
``models/demo/watch_share_validation.json``: each device sends its least confident quarter of
windows, ranked by top-2 margin), which met the fallback goal on the held-out subjects where the
fixed threshold chosen the same way did not (README, "Fallback curve"); without that file, the
``min_confidence`` the build chose (``fallback_policy`` in ``models/demo/watch_metrics.json``).
Each device replays the held-out recordings back to back, starting at a different recording, so the
three show different exercises at any moment.

Their drift reports span about one pass over the recordings (:data:`DRIFT_WINDOWS`), one report
every few minutes. They may still be flagged after two of them: subjects 9 and 10 move differently
from the training subjects whose windows make the reference profile (``edgefleet drift check`` on the
held-out recordings: accelerometer PSI 0.1-0.4 over reports of 320 windows), which is what the drift
monitor is for.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = [
    "CLOUD_BUNDLE",
    "EDGE_BUNDLES",
    "fallback_share",
    "fallback_threshold",
    "training_windows",
    "watch_device_toml",
]

EDGE_BUNDLES = ("watch-edge-tflite", "watch-edge-onnx", "watch-edge-tflite")
CLOUD_BUNDLE = "watch-cloud"
SAMPLE_RATE_HZ = 50.0
# A drift report must span every exercise, as the reference does (training subjects, all seven):
# 256-window reports cover a few exercises each and would flag a change of exercise as drift.
# 1024 windows is about one pass over the held-out recordings (1,002 windows at hop 50).
DRIFT_WINDOWS = 1024
DRIFT_INTERVAL_S = 600.0
# How models/build_watch.py cuts the training subjects for its bundles' reference profile: windows
# every TRAIN_HOP samples, every REFERENCE_STRIDE-th of them (one per 2 s).
WINDOW_LENGTH = 100
TRAIN_HOP = 20
REFERENCE_STRIDE = 5
_DEFAULT_THRESHOLD = 0.6  # FallbackConfig's own default, for a models/ folder without the build's choice


def fallback_threshold(models: Path) -> float:
    """``min_confidence`` chosen by ``models/build_watch.py`` on validation subjects."""
    try:
        metrics = json.loads((models / "demo" / "watch_metrics.json").read_text(encoding="utf-8"))
        return float(metrics["fallback_policy"]["min_confidence"])
    except (OSError, ValueError, KeyError, TypeError):
        return _DEFAULT_THRESHOLD


def fallback_share(models: Path) -> tuple[float, str] | None:
    """``target_share`` and ``score`` chosen by ``models/build_watch.py --shares``, if any."""
    try:
        table = json.loads((models / "demo" / "watch_share_validation.json").read_text(encoding="utf-8"))
        return float(table["chosen"]["target_share"]), str(table["chosen"]["score"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fallback_toml(models: Path) -> str:
    """The ``[fallback]`` policy keys of the demo's watch devices."""
    share = fallback_share(models)
    if share is None:
        return f"min_confidence = {fallback_threshold(models)}\n"
    return f'target_share = {share[0]}\nscore = "{share[1]}"\n'


def held_out_stream(models: Path, start: int) -> np.ndarray[tuple[int, int], np.dtype[np.float32]]:
    """The test subjects' recordings back to back, beginning with recording ``start`` of them."""
    with np.load(models / "data" / "watch.npz") as data:
        samples, offsets, test = data["samples"], data["offsets"], data["test"]
    recordings = [samples[offsets[i] : offsets[i + 1]] for i in np.flatnonzero(test)]
    start %= len(recordings)
    return np.concatenate(recordings[start:] + recordings[:start]).astype(np.float32)


def training_windows(models: Path) -> np.ndarray[tuple[int, int, int], np.dtype[np.float32]]:
    """The training subjects' (1-8) windows the shipped watch bundles' reference profile was made of."""
    with np.load(models / "data" / "watch.npz") as data:
        samples, offsets, test = data["samples"], data["offsets"], data["test"]
    windows = [
        samples[offsets[i] + s : offsets[i] + s + WINDOW_LENGTH]
        for i in np.flatnonzero(~test)
        for s in range(0, int(offsets[i + 1] - offsets[i]) - WINDOW_LENGTH + 1, TRAIN_HOP)
    ]
    return np.stack(windows[::REFERENCE_STRIDE]).astype(np.float32)


def watch_device_toml(
    models: Path, workdir: Path, index: int, speed: float, device_id: str
) -> tuple[Path, str]:
    """Write device ``index``'s replay file into ``workdir``; its bundle and its sources/fallback TOML."""
    with np.load(models / "data" / "watch.npz") as data:
        count = int(np.count_nonzero(data["test"]))
    path = workdir / f"{device_id}-watch-held-out.npz"
    np.savez(path, samples=held_out_stream(models, index * count // len(EDGE_BUNDLES)))
    bundle = models / "bundles" / EDGE_BUNDLES[index % len(EDGE_BUNDLES)]
    toml = f"""\
[[sources]]
type = "replay"
name = "imu"
file = "{path}"
rate_hz = {SAMPLE_RATE_HZ}
speed = {speed}
realtime = true
loop = true

[fallback]
enabled = true
{fallback_toml(models)}
[drift]
windows = {DRIFT_WINDOWS}
interval_s = {DRIFT_INTERVAL_S}
"""
    return bundle, toml
