"""`edgefleet results` says how many more results there are when it stops at --limit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edgefleet.agent.store import ResultRecord, Store, StoreConfig
from edgefleet.cli.main import main

pytestmark = pytest.mark.integration


def records(n: int, stream: str) -> list[ResultRecord]:
    start = time.time() - 600
    return [
        ResultRecord(
            stream=stream,
            window_start=start + i,
            window_end=start + i + 1,
            model_name="m",
            model_version="1.0.0",
            label="walking",
            score=0.9,
            outputs=None,
            latency_ms=1.0,
            window_seq=i,
            created_at=start + i + 1,
        )
        for i in range(n)
    ]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    store_path = tmp_path / "store.db"
    store = Store.open(store_path, StoreConfig.model_validate({"path": store_path}))
    try:
        store.write_results(records(25, "imu") + records(4, "other"))
    finally:
        store.close()
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[device]\nid = "t"\nstate_dir = "{tmp_path}"\n\n'
        '[[sources]]\ntype = "synthetic"\nname = "imu"\nchannels = 6\n\n'
        f'[model]\nbundle = "{tmp_path / "none"}"\n\n[store]\npath = "{store_path}"\n'
    )
    return path


def test_the_default_limit_says_how_many_more(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert out.count("walking") == 20
    assert err.strip() == "9 more; use --limit 29 to see all"


def test_filters_are_counted_and_json_stays_parseable(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["results", "--config", str(config), "--stream", "imu", "--limit", "10", "--format", "json"])
        == 0
    )
    out, err = capsys.readouterr()
    assert len(json.loads(out)) == 10
    assert err.strip() == "15 more; use --limit 25 to see all"


def test_nothing_is_said_when_all_are_shown(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for limit in ("29", "100"):
        assert main(["results", "--config", str(config), "--limit", limit]) == 0
        assert capsys.readouterr().err == ""
