"""Staged OTA campaigns end to end: the real controller (its campaign runner, OTA host, HTTP API),
two real ``edgefleet agent run`` processes over a real broker, and the ``edgefleet ota`` CLI.

A good version goes to the devices tagged ``site:lyon`` in two stages (the second offered only
after the first device passed probation) and is rolled back with one command; a consistent but
bad version (passes validation, fails probation on confidence) is rolled back by the first device
on its own and halts the campaign before the second device is offered anything."""

from __future__ import annotations

import json
import sqlite3
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgefleet.runtime.bundle_signing import generate_keys
from tests.e2e.agent.agentproc import AgentProcess, count_results, replay_source, run_cli, write_config
from tests.integration.controller.conftest import RunningController, controller_config, start_controller
from tests.support.broker import MosquittoBroker
from tests.support.ota_bundles import make_version
from tests.support.waiting import wait_until
from tests.unit.controller.db_fixtures import throwaway_database

pytestmark = pytest.mark.e2e


def as_tar(directory: Path) -> Path:
    tar_path = directory.with_suffix(".tar")
    with tarfile.open(tar_path, "w") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)
    return tar_path


@pytest.fixture
def controller(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[RunningController]:
    with throwaway_database("sqlite", tmp_path) as (database, db_config):
        database.close()
        running = start_controller(controller_config(mosquitto, db_config))
        running.service.campaigns.interval_s = 0.2
        try:
            yield running
        finally:
            running.service.stop()


def agent_config(tmp_path: Path, broker: MosquittoBroker, device: str, bundle: Path, public: Path) -> Path:
    path = write_config(
        tmp_path / f"{device}.toml",
        state_dir=tmp_path / device,
        sources=[replay_source(realtime=True, speed=40.0, loop=True)],
        bundle=bundle,
        sync={"enabled": True, "host": broker.host, "port": broker.port, "reconnect_max_s": 1.0},
        device_id=device,
    )
    text = path.read_text().replace(
        "[device]\n", f'[device]\nname = "Press {device[-1].upper()}"\ntags = ["site:lyon", "{device}"]\n', 1
    )
    ota = {"trusted_keys": [str(public)], "probation_s": 2.0, "probation_min_windows": 30}
    path.write_text(text + "\n[ota]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in ota.items()) + "\n")
    return path


def newest(db: Path, count: int = 20) -> set[str]:
    """The model versions of the newest ``count`` stored results (a batch in flight during a swap
    is stored after it, by the old model: only the newest tell what serves now)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT model_version FROM results ORDER BY id DESC LIMIT ?", (count,)).fetchall()
        return {r[0] for r in rows}
    finally:
        conn.close()


def ota(controller: RunningController, *args: str) -> Any:
    url = f"sqlite:///{controller.service.config.database.sqlite_path}"
    done = run_cli("ota", *args, "--database-url", url, "--json", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_campaign_stages_rollback_and_halt(
    mosquitto: MosquittoBroker, controller: RunningController, tmp_path: Path
) -> None:
    private, public = generate_keys(tmp_path / "keys")
    v1 = make_version(tmp_path / "v1", "1.0.0", private)
    v2 = as_tar(make_version(tmp_path / "v2", "1.1.0", private))
    bad = as_tar(make_version(tmp_path / "bad", "1.2.0", private, std_scale=20.0))
    configs = {d: agent_config(tmp_path, mosquitto, d, v1, public) for d in ("press-a", "press-b")}
    dbs = {d: tmp_path / d / "store.db" for d in configs}
    database = controller.service.database
    with (
        AgentProcess(configs["press-a"], tmp_path / "a.log") as agent_a,
        AgentProcess(configs["press-b"], tmp_path / "b.log") as agent_b,
    ):
        for device in configs:
            wait_until(lambda d=device: database.get_device(d), what=f"{device} to register")  # type: ignore[misc]
            wait_until(lambda d=device: count_results(dbs[d]) >= 40, what=f"results from {device}")  # type: ignore[misc]
        # [device] name and tags reached the registry (and so the API and the dashboard).
        shown = {d["device_id"]: d for d in controller.get("/api/devices")["devices"]}
        assert shown["press-a"]["name"] == "Press A"
        assert shown["press-b"]["tags"] == ["site:lyon", "press-b"]

        # A good version, two stages, pushed from the CLI; the running controller drives it.
        pushed = ota(controller, "push", str(v2), "--tag", "site:lyon", "--stages", "50,100")
        campaign = pushed["campaign"]["campaign_id"]
        assert [(d["device_id"], d["stage"]) for d in pushed["devices"]] == [("press-a", 0), ("press-b", 1)]
        finished = wait_until(
            lambda: (v := ota(controller, "status", campaign))["campaign"]["status"] != "running" and v,
            timeout=180,
            what="the good campaign to finish",
        )
        assert finished["campaign"]["status"] == "completed", finished
        first, second = finished["devices"]
        assert (first["outcome"], first["state"]) == ("ok", "done")
        assert (second["outcome"], second["state"]) == ("ok", "done")
        # Stage 2 was offered only once stage 1's device had passed probation.
        done_a = next(s for s in database.ota_states("press-a") if s.offer_id == first["offer_id"])
        assert second["offered_at"] >= done_a.updated_at
        for device, db in dbs.items():
            wait_until(lambda db=db: newest(db) == {"1.1.0"}, what=f"{device} on 1.1.0")  # type: ignore[misc]

        # One-click rollback: rollback_model to both devices, both serve 1.0.0 again.
        assert ota(controller, "rollback", campaign)["campaign"]["status"] in ("rolling_back", "rolled_back")
        rolled = wait_until(
            lambda: (v := ota(controller, "status", campaign))["campaign"]["status"] == "rolled_back" and v,
            what="the rollback commands sent",
        )
        assert all(d["rollback_command_id"] for d in rolled["devices"]), rolled
        for d in rolled["devices"]:
            wait_until(
                lambda c=d["rollback_command_id"]: (r := database.get_command(c)) and r.status == "done",  # type: ignore[misc]
                what="the rollback acknowledged done",
            )
        for device, db in dbs.items():
            wait_until(lambda db=db: newest(db) == {"1.0.0"}, what=f"{device} back on 1.0.0")  # type: ignore[misc]

        # A bad version through the API: the first device rolls it back by itself, the campaign halts.
        reply = httpx.post(
            f"{controller.base_url}/api/ota/campaigns",
            json={"bundle": str(bad), "devices": ["press-a", "press-b"], "stages": [50, 100]},
            headers=controller.admin,
            timeout=30,
        )
        assert reply.status_code == 201, reply.text
        bad_id = reply.json()["campaign"]["campaign_id"]
        halted = wait_until(
            lambda: (
                (v := controller.get(f"/api/ota/campaigns/{bad_id}"))["campaign"]["status"] != "running" and v
            ),
            timeout=180,
            what="the bad campaign to stop",
        )
        assert halted["campaign"]["status"] == "halted", halted
        assert "press-a: rolled_back: mean confidence" in halted["campaign"]["detail"], halted
        a, b = halted["devices"]
        assert (a["outcome"], a["state"]) == ("failed", "rolled_back")
        assert b["offer_id"] is None
        assert b["outcome"] is None
        assert halted["counts"] == {"pending": 1, "in_progress": 0, "ok": 0, "failed": 1, "rolled_back": 0}
        for device, db in dbs.items():
            wait_until(lambda db=db: newest(db) == {"1.0.0"}, what=f"{device} on 1.0.0")  # type: ignore[misc]
        assert agent_a.terminate_and_wait() == 0, agent_a.output()
        assert agent_b.terminate_and_wait() == 0, agent_b.output()
