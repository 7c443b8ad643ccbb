"""Shadow mode in the real agent (``edgefleet ota install --shadow``): the candidate runs beside the
active model in the running pipeline; only the active model's answers are stored (every window
answered once, by 1.0.0, throughout the shadow run); a good candidate is then activated, a bad one
refused without a swap."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.agent.agentproc import AgentProcess, count_results, events, run_cli
from tests.e2e.agent.test_agent_ota_activation import ota_config
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def test_bad_candidate_refused_by_shadow_then_good_one_activated_only_active_answers_stored(
    tmp_path: Path, bundles: dict[str, Path]
) -> None:
    """One agent life (one start, for the suite's time): the bad candidate first, then the good."""
    config = ota_config(tmp_path, bundles, loop=True, shadow_share=0.5, shadow_min_windows=10)
    db = tmp_path / "state" / "store.db"
    with AgentProcess(config, tmp_path / "agent.log") as agent:
        wait_until(lambda: count_results(db) >= 10, what="results from 1.0.0")
        bad = run_cli(
            "ota", "install", str(bundles["bad"]), "--shadow", "2", "--config", str(config), timeout=120
        )
        assert bad.returncode == 1, bad.stdout + bad.stderr
        last = bad.stdout.strip().splitlines()[-1]
        assert last.startswith("failed: shadow: "), bad.stdout
        assert "mean confidence" in last, last
        assert events(db, "model_swapped") == []
        assert not (tmp_path / "state" / "models" / "slots.json").exists()
        after_bad = count_results(db)
        wait_until(lambda: count_results(db) >= after_bad + 10, what="results after the refusal")

        good = run_cli(
            "ota", "install", str(bundles["v2"]), "--shadow", "2", "--config", str(config), timeout=120
        )
        assert good.returncode == 0, good.stdout + good.stderr
        states = [line.split(":")[0] for line in good.stdout.splitlines()[1:]]
        assert states[:4] == ["received", "verifying", "validating", "shadow"], good.stdout
        assert states[-3:] == ["activating", "probation", "done"], good.stdout
        assert "shadow: passed" in good.stdout
        wait_until(
            lambda: rows(db, "SELECT count(*) FROM results WHERE model_version = '1.1.0'")[0][0] >= 10,
            what="results from 1.1.0",
        )
        assert agent.terminate_and_wait() == 0, agent.output()
    seqs = rows(db, "SELECT window_seq, model_version FROM results ORDER BY window_seq")
    # Every window answered exactly once, through both shadow runs: no candidate answer was stored.
    assert [seq for seq, _ in seqs] == list(range(len(seqs)))
    versions = [version for _, version in seqs]
    switch = versions.index("1.1.0")
    assert switch > after_bad
    assert set(versions[:switch]) == {"1.0.0"}  # the bad candidate never answered
    assert set(versions[switch:]) == {"1.1.0"}
    assert len(events(db, "model_swapped")) == 1
    verdicts = [str(e["message"]) for e in events(db, "ota.shadow") if "passed" in str(e["message"])]
    assert [v.rsplit(": ", 1)[1] for v in verdicts] == ["not passed", "passed"], verdicts
