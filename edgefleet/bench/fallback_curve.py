"""The cloud-fallback curve: held-out watch recordings through a real agent and a real inference worker.

What ``bench/fallback_curve.py`` runs. Every point of the curve is one real ``edgefleet agent run``
process with ``[fallback] enabled`` at one setting of one policy (:data:`POLICY_KEYS`), replaying the held-out
recordings (subjects 9 and 10 of ``models/data/watch.npz``, one replay stream per recording, as fast
as it can) through the shipped edge bundle, sending its unsure windows over a local Mosquitto to one
``edgefleet controller infer`` process serving the cloud bundle. Accuracy is read back from the
agent's **stored** results (``answered_by`` edge or cloud) against the recordings' labels, matched by
stream and ``window_seq``. Edge-only is the point at threshold 0 (nothing sent), cloud-only the one at
threshold 1 (every window sent: the int8 edge model's top probability is at most 255/256).

The latency objective is set far above the round trip (:data:`LATENCY_SLO_MS`), so the curve measures
the policy, not the link; a window whose cloud answer still missed it would keep its edge answer and
is counted in ``timeouts``.

Policies swept (a point's ``policy``): ``confidence`` (``min_confidence``), ``margin``
(``min_margin``, with ``min_confidence = 0``), ``entropy`` (``max_entropy``, likewise) and
``target_share:<score>`` (``target_share`` with ``score`` = confidence, margin or entropy: the
device's least confident share of recent windows, :mod:`edgefleet.agent.fallback_share`). The
share-targeted points depend a little on how the agent happens to batch the 28 concurrent streams
(each window is ranked against the windows before it), so they move by a window or two between runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_SETTINGS",
    "DEFAULT_THRESHOLDS",
    "POLICY_KEYS",
    "QUICK_SETTINGS",
    "QUICK_THRESHOLDS",
    "CurveError",
    "CurvePoint",
    "CurveResult",
    "HeldOut",
    "Setting",
    "chosen_share",
    "chosen_threshold",
    "held_out_recordings",
    "run_curve",
    "score_store",
    "write_recordings",
]

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
DATA = MODELS / "data" / "watch.npz"
EDGE_BUNDLE = MODELS / "bundles" / "watch-edge-tflite"
CLOUD_BUNDLE = MODELS / "bundles" / "watch-cloud"
WINDOW_LENGTH = 100
HOP = 50
SAMPLE_RATE_HZ = 50.0
LATENCY_SLO_MS = 60_000.0
DEFAULT_THRESHOLDS = (0.0, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
QUICK_THRESHOLDS = (0.0, 0.7, 1.0)
SHARE_VALIDATION = MODELS / "demo" / "watch_share_validation.json"

Setting = tuple[str, float]
"""One point's policy (a key of :data:`POLICY_KEYS`) and its threshold or share."""
POLICY_KEYS: dict[str, str] = {
    "confidence": "min_confidence = {value!r}\n",
    "margin": "min_confidence = 0.0\nmin_margin = {value!r}\n",
    "entropy": "min_confidence = 0.0\nmax_entropy = {value!r}\n",
    **{
        f"target_share:{score}": f'target_share = {{value!r}}\nscore = "{score}"\n'
        for score in ("confidence", "margin", "entropy")
    },
}
"""Per policy swept, its ``[fallback]`` keys at one value (thresholds and shares all lie in 0..1)."""
SHARES = (0.15, 0.2, 0.25, 0.3)
DEFAULT_SETTINGS: tuple[Setting, ...] = (
    *(("confidence", t) for t in DEFAULT_THRESHOLDS),
    *(("margin", t) for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)),
    *(("entropy", t) for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)),
    *((f"target_share:{score}", t) for score in ("confidence", "margin", "entropy") for t in SHARES),
)
QUICK_SETTINGS: tuple[Setting, ...] = (
    *(("confidence", t) for t in QUICK_THRESHOLDS),
    ("target_share:margin", 0.25),
)


class CurveError(RuntimeError):
    """A part of the bench (broker, worker, agent) did not do its job; the message says which."""


@dataclass(frozen=True)
class HeldOut:
    """One held-out recording: its replay stream name, samples and exercise index."""

    stream: str
    samples: np.ndarray[Any, np.dtype[np.float32]]
    label: int

    @property
    def windows(self) -> int:
        return max(0, (len(self.samples) - WINDOW_LENGTH) // HOP + 1)


@dataclass(frozen=True)
class CurvePoint:
    policy: str
    threshold: float
    cloud_share: float
    accuracy: float


@dataclass
class CurveResult:
    edge_only: float
    cloud_only: float
    points: list[CurvePoint]
    windows: int = 0
    timeouts: int = 0
    run_seconds: dict[Setting, float] = field(default_factory=dict)

    def point(self, policy: str, threshold: float) -> CurvePoint | None:
        return next((p for p in self.points if (p.policy, p.threshold) == (policy, threshold)), None)

    def as_json(self) -> dict[str, Any]:
        """Exactly the documented shape: edge_only, cloud_only, points."""
        return {
            "edge_only": self.edge_only,
            "cloud_only": self.cloud_only,
            "points": [asdict(p) for p in self.points],
        }


def held_out_recordings(limit: int | None = None, data: Path = DATA) -> tuple[list[HeldOut], list[str]]:
    """The test split's recordings (subjects 9, 10) and the label names, in the file's order;
    ``limit`` keeps the first recordings of each exercise until that many are taken (quick runs)."""
    with np.load(data) as d:
        samples, offsets, y, test = d["samples"], d["offsets"], d["y"], d["test"]
        labels = [str(s) for s in d["labels"]]
    recordings = [
        HeldOut(f"rec-{i:03d}", samples[offsets[i] : offsets[i + 1]].astype(np.float32), int(y[i]))
        for i in np.flatnonzero(test)
    ]
    if limit is not None:
        # Round-robin over exercises so a quick run still sees every class.
        by_class: dict[int, list[HeldOut]] = {}
        for rec in recordings:
            by_class.setdefault(rec.label, []).append(rec)
        picked: list[HeldOut] = []
        while len(picked) < min(limit, len(recordings)):
            for recs in by_class.values():
                if recs and len(picked) < limit:
                    picked.append(recs.pop(0))
        recordings = picked
    return recordings, labels


def chosen_threshold(models: Path = MODELS) -> float | None:
    """The ``min_confidence`` that ``models/build_watch.py`` chose on validation subjects, if any."""
    try:
        metrics = json.loads((models / "demo" / "watch_metrics.json").read_text(encoding="utf-8"))
        return float(metrics["fallback_policy"]["min_confidence"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def chosen_share(models: Path = MODELS) -> Setting | None:
    """The ``target_share`` and ``score`` that ``models/build_watch.py --shares`` chose on
    validation subjects, as a setting (``("target_share:margin", 0.25)``), if any."""
    try:
        table = json.loads((models / "demo" / SHARE_VALIDATION.name).read_text(encoding="utf-8"))
        return f"target_share:{table['chosen']['score']}", float(table["chosen"]["target_share"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(condition: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise CurveError(f"{what} within {timeout:.0f} s\n{tail}")
        time.sleep(0.05)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("EDGEFLEET_", "NOTIFY_", "WATCHDOG_"))}


class _Fleet:
    """The broker and the inference worker shared by every point, and one agent per point."""

    def __init__(self, workdir: Path, edge_bundle: Path, cloud_bundle: Path) -> None:
        self.workdir = workdir
        self.edge_bundle = edge_bundle
        self.cloud_bundle = cloud_bundle
        self.children: list[subprocess.Popen[bytes]] = []
        self.port = 0

    def _spawn(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                list(argv), stdout=out, stderr=subprocess.STDOUT, env=_child_env(), cwd=self.workdir
            )

    def start(self) -> None:
        mosquitto = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
        )
        if mosquitto is None:
            raise CurveError("mosquitto is not installed (apt-get install mosquitto)")
        self.port = _free_port()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 100000\nmax_inflight_messages 1000\n"
        )
        broker_log = self.workdir / "broker.log"
        self.children.append(self._spawn([mosquitto, "-c", str(conf)], broker_log))
        _wait(lambda: _port_open(self.port), 15, "the broker did not listen", broker_log)
        config = self.workdir / "controller.toml"
        config.write_text(
            f'[mqtt]\nhost = "127.0.0.1"\nport = {self.port}\n\n'
            f'[inference]\nbundle = "{self.cloud_bundle}"\nmax_wait_ms = 2.0\n'
        )
        worker_log = self.workdir / "worker.log"
        argv = [sys.executable, "-m", "edgefleet", "controller", "infer", "--config", str(config)]
        worker = self._spawn(argv, worker_log)
        self.children.append(worker)
        _wait(
            lambda: "serving" in worker_log.read_text(errors="replace") or worker.poll() is not None,
            60,
            "the inference worker did not start",
            worker_log,
        )
        if worker.poll() is not None:
            raise CurveError(f"the inference worker exited: {worker_log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        for proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.children.clear()

    def agent_config(self, point_dir: Path, recordings: Sequence[Path], setting: Setting) -> Path:
        sources = "".join(
            f'[[sources]]\ntype = "replay"\nname = "{path.stem}"\nfile = "{path}"\n'
            'timestamps = "recorded"\nrealtime = false\nblock_size = 500\n\n'
            for path in recordings
        )
        config = point_dir / "agent.toml"
        config.write_text(
            f'[device]\nid = "curve-{point_dir.name}"\nstate_dir = "{point_dir / "state"}"\n\n'
            f"{sources}"
            f'[model]\nbundle = "{self.edge_bundle}"\nthreads = 1\n\n'
            "[batching]\nmax_batch_size = 32\nbatch_timeout_s = 0.02\nbuffer_capacity = 4096\n"
            'backpressure = "block"\n\n'
            f'[store]\npath = "{point_dir / "store.db"}"\ncommit_interval_s = 0\n\n'
            f'[sync]\nenabled = true\nhost = "127.0.0.1"\nport = {self.port}\nend_to_end_ack = false\n\n'
            f"[fallback]\nenabled = true\n{POLICY_KEYS[setting[0]].format(value=setting[1])}"
            f"max_queue_windows = 100000\nlatency_slo_ms = {LATENCY_SLO_MS!r}\n\n"
            "[drift]\nenabled = false\n\n"
            '[logging]\nlevel = "WARNING"\n'
        )
        return config

    def run_point(self, point_dir: Path, recordings: Sequence[Path], setting: Setting, expected: int) -> Path:
        """Run one agent until every expected window has a stored result; the store's path."""
        point_dir.mkdir(parents=True)
        config = self.agent_config(point_dir, recordings, setting)
        db = point_dir / "store.db"
        log = point_dir / "agent.log"
        agent = self._spawn([sys.executable, "-m", "edgefleet", "agent", "run", "--config", str(config)], log)
        try:
            _wait(
                lambda: agent.poll() is not None or _count(db) >= expected,
                300,
                f"the agent at {setting[0]} {setting[1]} did not store {expected} results",
                log,
            )
            if agent.poll() is not None:
                raise CurveError(
                    f"the agent exited with {agent.returncode}: {log.read_text(errors='replace')[-2000:]}"
                )
        finally:
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
                try:
                    agent.wait(60)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait()
        if agent.returncode not in (0, -signal.SIGTERM):
            raise CurveError(
                f"the agent exited with {agent.returncode}: {log.read_text(errors='replace')[-2000:]}"
            )
        return db


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            return int(conn.execute("SELECT count(*) FROM results").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@dataclass(frozen=True)
class _Scored:
    accuracy: float
    cloud_share: float
    timeouts: int


def score_store(db: Path, truth: dict[str, int], labels: Sequence[str], expected: int) -> _Scored:
    """Accuracy and cloud share of one agent's stored results; every window exactly once."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT stream, window_seq, label, answered_by, fallback_reason FROM results"
        ).fetchall()
    seen: set[tuple[str, int]] = set()
    correct = cloud = timeouts = 0
    for stream, seq, label, answered_by, reason in rows:
        key = (str(stream), int(seq))
        if key in seen:
            raise CurveError(f"window {key} stored twice")
        seen.add(key)
        correct += int(label == labels[truth[key[0]]])
        cloud += int(answered_by == "cloud")
        timeouts += int(bool(reason) and str(reason).endswith(":timeout"))
    if len(seen) != expected:
        raise CurveError(f"{len(seen)} windows stored, {expected} expected")
    return _Scored(correct / expected, cloud / expected, timeouts)


def write_recordings(recordings: Sequence[HeldOut], folder: Path) -> list[Path]:
    """One ``.npz`` per recording (samples and 50 Hz relative timestamps) for a replay source."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for rec in recordings:
        path = folder / f"{rec.stream}.npz"
        timestamps = np.arange(len(rec.samples), dtype=np.float64) / SAMPLE_RATE_HZ
        np.savez(path, samples=rec.samples, timestamp=timestamps)
        paths.append(path)
    return paths


def run_curve(
    settings: Sequence[Setting] = DEFAULT_SETTINGS,
    *,
    recordings_limit: int | None = None,
    edge_bundle: Path = EDGE_BUNDLE,
    cloud_bundle: Path = CLOUD_BUNDLE,
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> CurveResult:
    """Run one agent per setting (``confidence`` 0 and 1 are added: edge-only and cloud-only)."""
    sweep = sorted({("confidence", 0.0), ("confidence", 1.0), *((str(p), float(t)) for p, t in settings)})
    for policy, value in sweep:
        if policy not in POLICY_KEYS:
            raise CurveError(f"unknown policy {policy!r}; expected one of {', '.join(POLICY_KEYS)}")
        if not 0.0 <= value <= 1.0:
            raise CurveError(f"{policy} {value} is outside [0, 1] (the range of every key swept)")
    recordings, labels = held_out_recordings(recordings_limit)
    truth = {rec.stream: rec.label for rec in recordings}
    expected = sum(rec.windows for rec in recordings)
    with tempfile.TemporaryDirectory(prefix="fallback-curve-") as tmp:
        base = workdir or Path(tmp)
        files = write_recordings(recordings, base / "recordings")
        fleet = _Fleet(base, edge_bundle, cloud_bundle)
        points: list[CurvePoint] = []
        timeouts = 0
        seconds: dict[Setting, float] = {}
        try:
            fleet.start()
            for i, setting in enumerate(sweep):
                start = time.perf_counter()
                db = fleet.run_point(base / f"p{i:02d}", files, setting, expected)
                seconds[setting] = time.perf_counter() - start
                scored = score_store(db, truth, labels, expected)
                timeouts += scored.timeouts
                points.append(CurvePoint(setting[0], setting[1], scored.cloud_share, scored.accuracy))
                if progress:
                    progress(
                        f"{setting[0]} {setting[1]:.2f}: sent {scored.cloud_share:.3f}, "
                        f"accuracy {scored.accuracy:.4f} ({seconds[setting]:.1f} s)"
                    )
        finally:
            fleet.stop()
    result = CurveResult(0.0, 0.0, points, windows=expected, timeouts=timeouts, run_seconds=seconds)
    edge, cloud = result.point("confidence", 0.0), result.point("confidence", 1.0)
    if edge is None or cloud is None or cloud.cloud_share != 1.0:
        share = None if cloud is None else f"{cloud.cloud_share:.3f}"
        raise CurveError(f"min_confidence 1 sent {share} of windows, not all")
    result.edge_only, result.cloud_only = edge.accuracy, cloud.accuracy
    return result


def dumps(result: CurveResult) -> str:
    return json.dumps(result.as_json(), indent=2)
