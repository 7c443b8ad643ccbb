"""OTA activation in the real agent, driven by ``edgefleet ota install``: a hot swap that loses and
repeats no window, a bad version rolled back by probation on its own, and the agent killed
(SIGKILL) at every step of a switch always comes back on a valid, verified model."""

from __future__ import annotations

import functools
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent.ota_install import KILL_ENV
from tests.e2e.agent.agentproc import (
    AgentProcess,
    count_results,
    events,
    replay_source,
    run_cli,
    write_config,
)
from tests.support.ota_bundles import make_version
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def ota_config(tmp_path: Path, bundles: dict[str, Path], *, loop: bool, **ota: object) -> Path:
    path = write_config(
        tmp_path / "agent.toml",
        state_dir=tmp_path / "state",
        sources=[replay_source(realtime=True, speed=40.0, loop=loop)],
        bundle=bundles["v1"],
    )
    settings = {"trusted_keys": [str(bundles["pub"])], "probation_s": 1.0, "probation_min_windows": 10, **ota}
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    path.write_text(path.read_text() + "\n[ota]\n" + "\n".join(lines) + "\n")
    return path


def more_results(db: Path, before: int, wanted: int) -> bool:
    return count_results(db) - before >= wanted


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def test_hot_swap_loses_and_repeats_no_window(tmp_path: Path, bundles: dict[str, Path]) -> None:
    config = ota_config(tmp_path, bundles, loop=True)
    db = tmp_path / "state" / "store.db"
    with AgentProcess(config, tmp_path / "agent.log") as agent:
        wait_until(lambda: count_results(db) >= 10, what="results from 1.0.0")
        done = run_cli("ota", "install", str(bundles["v2"]), "--config", str(config), timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        states = [line.split(":")[0] for line in done.stdout.splitlines()[1:]]
        assert states == ["received", "verifying", "validating", "activating", "probation", "done"], (
            done.stdout
        )
        wait_until(
            lambda: rows(db, "SELECT count(*) FROM results WHERE model_version = '1.1.0'")[0][0] >= 20,
            what="results from 1.1.0",
        )
        assert agent.terminate_and_wait() == 0, agent.output()  # drains every window cut
    seqs = rows(db, "SELECT window_seq, model_version FROM results ORDER BY window_seq")
    # Every window the stream cut answered exactly once, across the swap...
    assert [seq for seq, _ in seqs] == list(range(len(seqs)))
    # ...the ones before it by 1.0.0, the ones after by 1.1.0, never interleaved.
    versions = [version for _, version in seqs]
    switch = versions.index("1.1.0")
    assert switch > 0
    assert set(versions[:switch]) == {"1.0.0"}
    assert set(versions[switch:]) == {"1.1.0"}
    swapped = events(db, "model_swapped")
    assert len(swapped) == 1
    assert "1.1.0 swapped in" in str(swapped[0]["message"])
    # The next start serves the committed slot.
    with AgentProcess(config, tmp_path / "agent2.log") as agent:
        loaded = wait_until(lambda: events(db, "model_loaded")[1:], what="the model loaded at restart")
        assert "1.1.0 loaded" in str(loaded[0]["message"])
        assert agent.terminate_and_wait() == 0, agent.output()


def test_bad_version_is_rolled_back_by_probation(tmp_path: Path, bundles: dict[str, Path]) -> None:
    config = ota_config(tmp_path, bundles, loop=True, probation_s=2.0, probation_min_windows=30)
    db = tmp_path / "state" / "store.db"
    with AgentProcess(config, tmp_path / "agent.log") as agent:
        wait_until(lambda: count_results(db) >= 40, what="results from 1.0.0")
        bad = run_cli("ota", "install", str(bundles["bad"]), "--config", str(config), timeout=120)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        last = bad.stdout.strip().splitlines()[-1]
        assert last.startswith("rolled_back: mean confidence"), bad.stdout
        assert "(at least 0.8x required)" in last
        last_bad = rows(db, "SELECT max(id) FROM results WHERE model_version = '1.2.0'")[0][0]
        assert isinstance(last_bad, int)
        # 1.0.0 serves again after the rollback.
        wait_until(
            lambda: (
                rows(db, f"SELECT count(*) FROM results WHERE model_version = '1.0.0' AND id > {last_bad}")[
                    0
                ][0]
                >= 10
            ),
            what="results from 1.0.0 after the rollback",
        )
        assert agent.terminate_and_wait() == 0, agent.output()
    pointer = json.loads((tmp_path / "state" / "models" / "slots.json").read_text())
    assert (pointer["active"], pointer["previous"], pointer["committed"]) == (None, "a", True)
    kinds = [e["kind"] for e in events(db) if str(e["kind"]).startswith(("ota.", "model_"))]
    assert kinds[-3:] == ["model_swapped", "ota.rolled_back", "model_swapped"] or kinds[-2:] == [
        "model_swapped",
        "ota.rolled_back",
    ], kinds


# Steps (edgefleet/agent/ota_slots.py, ota_install.py) in order, and whether the new version
# serves after a kill there (only once the commit is on disk; before it, an uncommitted activation
# is rolled back at start).
KILL_STEPS = {
    "stage_copied": False,
    "staged": False,
    "activate_pointer_written": False,
    "activate_pointer_renamed": False,
    "swapped": False,
    "probation": False,
    "commit_pointer_renamed": True,
    "committed": True,
}


# Nine agent lives, each with a validation in its own process: about 90 s on an idle 2-core
# machine and twice that when the machine is busy, past the suite's 180 s default cap.
@pytest.mark.timeout(480)
def test_killed_at_every_step_comes_back_on_a_verified_model(
    tmp_path: Path, bundles: dict[str, Path]
) -> None:
    """One agent life per step: it must come back serving the expected version (checked at the
    start of the next life), then it is killed at the next step while installing a newer one."""
    config = ota_config(tmp_path, bundles, loop=True)
    db = tmp_path / "state" / "store.db"
    serving = "1.0.0"
    for i, (step, commits) in enumerate([*KILL_STEPS.items(), ("", False)]):
        env = {KILL_ENV: step} if step else {}
        before = rows(db, "SELECT coalesce(max(id), 0) FROM results")[0][0] if db.exists() else 0
        with AgentProcess(config, tmp_path / f"agent{i}.log", env=env) as agent:
            wait_until(functools.partial(more_results, db, before, 5), what=f"results in life {i}")
            versions = rows(db, f"SELECT DISTINCT model_version FROM results WHERE id > {before}")
            assert versions == [(serving,)], (i, step, versions, agent.output())
            assert events(db, "ota.slot_invalid") == []
            if not step:
                assert agent.terminate_and_wait() == 0, agent.output()
                break
            new = f"1.{i + 1}.0"
            bundle = make_version(tmp_path / new, new, bundles["key"])
            cli = run_cli("ota", "install", str(bundle), "--config", str(config), timeout=120)
            assert cli.returncode == 1, cli.stdout + cli.stderr
            assert "the agent stopped" in cli.stderr
            assert agent.wait(60) == -signal.SIGKILL, agent.output()
        serving = new if commits else serving
    assert serving == "1.8.0"
