"""Fixtures for the store tests: real SQLite files under tmp_path."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgefleet.agent.store import ResultRecord, Store, StoreConfig

MakeRecords = Callable[..., list[ResultRecord]]
OpenStore = Callable[..., Store]


def _records(
    n: int, *, stream: str = "imu", start: float | None = None, outputs: int = 4
) -> list[ResultRecord]:
    # Recent by default: max_age_s retention (30 days) must not delete rows behind a test's back.
    start = time.time() - 3600.0 if start is None else start
    return [
        ResultRecord(
            stream=stream,
            window_start=start + i,
            window_end=start + i + 1.0,
            model_name="motion",
            model_version="1.2.0",
            label=f"class{i % 4}",
            score=0.5 + (i % 50) / 100,
            outputs=[float(j) / (i + 1) for j in range(outputs)] if outputs else None,
            latency_ms=2.5,
            window_seq=i,
            created_at=start + i + 1.0,
        )
        for i in range(n)
    ]


@pytest.fixture
def make_records() -> MakeRecords:
    return _records


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[OpenStore]:
    """Opens stores under tmp_path (default ``store.db``) and closes them after the test."""
    opened: list[Store] = []

    def _open(name: str = "store.db", **config: object) -> Store:
        store = Store.open(tmp_path / name, StoreConfig.model_validate({"path": tmp_path / name, **config}))
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()
