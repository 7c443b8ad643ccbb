"""An agent replaying held-out watch recordings with ``[fallback]`` on, for the e2e fallback tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.e2e.agent.agentproc import write_config

MODELS = Path(__file__).resolve().parents[2] / "models"
WATCH_HOP = 50
WATCH_WINDOW = 100


def held_out_recording(path: Path, recordings: int = 3) -> int:
    """Write the first ``recordings`` held-out watch recordings, joined, to ``path``; their samples."""
    with np.load(MODELS / "data" / "watch.npz") as d:
        samples, offsets, test = d["samples"], d["offsets"], d["test"]
    chosen = np.flatnonzero(test)[:recordings]
    data = np.concatenate([samples[offsets[i] : offsets[i + 1]] for i in chosen])
    np.savez(path, samples=data.astype(np.float32))
    return len(data)


def watch_fallback_agent(
    workdir: Path, *, host: str, port: int, device_id: str, latency_slo_ms: int, recordings: int = 3
) -> tuple[Path, int]:
    """Config of an agent replaying held-out recordings at 20x real time through the int8 TFLite
    edge model, asking the cloud below 0.75 confidence; the config's path and the windows to expect."""
    recording = workdir / "watch.npz"
    n = held_out_recording(recording, recordings=recordings)
    config = write_config(
        workdir / "agent.toml",
        state_dir=workdir / "state",
        bundle=MODELS / "bundles" / "watch-edge-tflite",
        sources=[
            {
                "type": "replay",
                "name": "imu",
                "file": recording,
                "rate_hz": 50.0,
                "realtime": True,
                "speed": 20.0,
            }
        ],
        sync={"host": host, "port": port, "drain_interval_s": 0.2},
        batching={"backpressure": "block"},
        device_id=device_id,
    )
    with config.open("a") as fh:
        fh.write(
            f"\n[fallback]\nenabled = true\nmin_confidence = 0.75\nlatency_slo_ms = {latency_slo_ms}\n"
            "[drift]\nenabled = false\n"
        )
    return config, (n - WATCH_WINDOW) // WATCH_HOP + 1
