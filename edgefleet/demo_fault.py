"""The demo's fourth device: its replay carries an injected sensor fault, so drift shows up.

``edgefleet demo`` runs the BasicMotions test recording on every device; the fourth one
(``demo-04``) replays a copy whose acc_y is offset by one reference standard deviation, as a
knocked sensor mount would. Its ``[drift]`` reports are smaller and closer than the defaults
(64 windows, 640 samples, at least 10 s apart) so the alert comes within the demo's first minute;
on this fault PSI is about 2, far over any threshold, so small reports cannot hide it
(docs/drift.md has the figures).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["FAULTY_DEVICE_INDEX", "faulty_device_toml"]

FAULTY_DEVICE_INDEX = 3
FAULTY_CHANNEL = "acc_y"


def faulty_device_toml(models: Path, workdir: Path, speed: float) -> tuple[str, str]:
    """Write the faulty recording into ``workdir``; its ``[[sources]]`` and ``[drift]`` TOML."""
    stream = np.load(models / "data" / "basicmotions_test_stream.npz")
    samples = np.asarray(stream["samples"], dtype=np.float32).copy()
    names = [str(n) for n in stream["channel_names"]]
    channel = names.index(FAULTY_CHANNEL)
    samples[:, channel] += samples[:, channel].std()
    path = workdir / "demo-04-acc_y-offset.npz"
    np.savez(path, samples=samples)
    source = f"""\
[[sources]]
type = "replay"
name = "imu"
file = "{path}"
rate_hz = 10.0
speed = {speed}
realtime = true
loop = true
"""
    drift = """\
[drift]
windows = 64
interval_s = 30.0
min_interval_s = 10.0
min_samples = 500
"""
    return source, drift
