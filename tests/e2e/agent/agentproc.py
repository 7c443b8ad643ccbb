"""Helpers for tests that run the real ``edgefleet agent run`` process.

Configs are written as TOML into the test's tmp_path; the process runs with the
repository's interpreter (``python -m edgefleet``) so no installed script is needed.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
DEMO_BUNDLE = REPO_ROOT / "models" / "bundles" / "basicmotions-edge-tflite"
REPLAY_CSV = REPO_ROOT / "models" / "data" / "basicmotions_test_stream.csv"
REPLAY_ROWS = 4000
WINDOW_LENGTH = 50
HOP = 10


def demo_bundle() -> Path:
    if not (DEMO_BUNDLE / "manifest.json").is_file():
        pytest.skip(f"demo bundle {DEMO_BUNDLE} not built yet (models/build_demo.py --stage bundles)")
    return DEMO_BUNDLE


def expected_windows(samples: int, window_length: int = WINDOW_LENGTH, hop: int = HOP) -> int:
    return 0 if samples < window_length else (samples - window_length) // hop + 1


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _table(lines: list[str], name: str, values: Mapping[str, object], *, array: bool = False) -> None:
    lines.append(f"[[{name}]]" if array else f"[{name}]")
    nested = {k: v for k, v in values.items() if isinstance(v, Mapping)}
    for key, value in values.items():
        if not isinstance(value, Mapping):
            lines.append(f"{key} = {_toml_value(value)}")
    lines.append("")
    for key, value in nested.items():
        _table(lines, f"{name}.{key}", value)


def write_config(
    path: Path,
    *,
    state_dir: Path,
    sources: list[dict[str, object]],
    bundle: Path | None = None,
    batching: dict[str, object] | None = None,
    store: dict[str, object] | None = None,
    sync: dict[str, object] | None = None,
    health: dict[str, object] | None = None,
    logging: dict[str, object] | None = None,
    device_id: str = "test-device",
) -> Path:
    lines: list[str] = []
    _table(lines, "device", {"id": device_id, "state_dir": state_dir})
    for source in sources:
        _table(lines, "sources", source, array=True)
    _table(lines, "model", {"bundle": bundle if bundle is not None else demo_bundle()})
    _table(lines, "batching", {"max_batch_size": 16, "batch_timeout_s": 0.02, **(batching or {})})
    _table(lines, "store", {"path": state_dir / "store.db", **(store or {})})
    _table(lines, "sync", sync or {"enabled": False})
    _table(lines, "health", {"metrics_interval_s": 0.5, **(health or {})})
    _table(lines, "logging", {"format": "json", "level": "INFO", **(logging or {})})
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def replay_source(name: str = "imu", **overrides: object) -> dict[str, object]:
    source: dict[str, object] = {"type": "replay", "name": name, "file": REPLAY_CSV, "realtime": False}
    source.update(overrides)
    return source


def agent_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEFLEET_", "NOTIFY_", "WATCHDOG_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class AgentProcess:
    """One ``edgefleet agent run`` child; output goes to a log file in tmp_path."""

    def __init__(
        self,
        config: Path,
        log_path: Path,
        *,
        args: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgefleet", "agent", "run", "--config", str(config), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=agent_env(env),
            cwd=REPO_ROOT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._log.close()

    def terminate_and_wait(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()
        self._log.close()


def read_status(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / "agent-status.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def count_results(db: Path, *, stream: str | None = None) -> int:
    """Results committed so far, read with a separate plain sqlite3 connection."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        if stream is not None:
            query = conn.execute("SELECT count(*) FROM results WHERE stream = ?", (stream,))
        else:
            query = conn.execute("SELECT count(*) FROM results")
        return int(query.fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # schema not created yet
    finally:
        conn.close()


def result_ids(db: Path) -> set[int]:
    if not db.exists():
        return set()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return {int(row[0]) for row in conn.execute("SELECT id FROM results")}
    except sqlite3.OperationalError:
        return set()
    finally:
        conn.close()


def events(db: Path, kind: str | None = None) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        query = "SELECT * FROM events" + (" WHERE kind = ?" if kind else "") + " ORDER BY id"
        return [dict(row) for row in conn.execute(query, (kind,) if kind else ())]
    except sqlite3.OperationalError:
        return []  # schema not created yet
    finally:
        conn.close()


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgefleet", *args],
        capture_output=True,
        text=True,
        env=agent_env(env),
        cwd=REPO_ROOT,
        timeout=timeout,
        check=False,
    )
