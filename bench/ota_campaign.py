"""A campaign over a local broker: offer-to-active time, and the service gap during the swap.

    python bench/ota_campaign.py [--rounds 2] [--speed 10]

Each round starts Mosquitto, the real controller (in this process: its OTA host and campaign
runner), and ``edgefleet agent run`` on a signed copy of the demo bundle (1.0.0) replaying in real
time (``--speed`` x the recording's 10 Hz, looping) with its sync on. A one-device campaign of
1.1.0 (same model, new version, signed, as a ``.tar``) then goes through the whole path: offer,
chunks over MQTT, sha256, signature, validation in its own process, slot write, hot swap. It
reports:

* offer to active: from the campaign's offer (``offered_at``) to the first result stored by
  1.1.0 on the device, and to the campaign's ``completed`` (probation passed, ``done``);
* the service gap: the longest interval between consecutive stored batches (distinct
  ``created_at``) within 2 s of the first 1.1.0 result, beside the steady-state interval (the
  median interval before the offer), same run, as a ratio. Goal: <= 2x.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tarfile
import tempfile
import time
from itertools import pairwise
from pathlib import Path

from agentbench import ROOT, agent_log_tail, count_results, spawn_agent, wait_for, write_config
from ota_swap import batch_times, make_versions

sys.path.insert(0, str(ROOT))

from edgefleet.controller.config import (
    ControllerConfig,
    DatabaseConfig,
    HttpConfig,
    MqttConfig,
    RetentionConfig,
)
from edgefleet.controller.ota_campaign_schemas import CampaignRequest
from edgefleet.controller.ota_campaigns import campaign_view, create_campaign
from edgefleet.controller.service import ControllerService
from tests.support.broker import MosquittoBroker

GOAL_RATIO = 2.0


def as_tar(directory: Path) -> Path:
    tar_path = directory.with_suffix(".tar")
    with tarfile.open(tar_path, "w") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)
    return tar_path


def one_round(speed: float) -> tuple[float, float, float, float]:
    with tempfile.TemporaryDirectory(prefix="edgefleet-campaign-bench-") as tmp:
        workdir = Path(tmp)
        v1, v2, public = make_versions(workdir)
        tar = as_tar(v2)
        (workdir / "broker").mkdir()
        broker = MosquittoBroker(workdir / "broker").start()
        controller = ControllerService(
            ControllerConfig(
                mqtt=MqttConfig(host=broker.host, port=broker.port),
                database=DatabaseConfig(sqlite_path=workdir / "controller.db"),
                http=HttpConfig(port=0),
                retention=RetentionConfig(interval_s=3600),
            )
        )
        controller.start_in_thread()
        controller.campaigns.interval_s = 0.1
        config = write_config(workdir, batch=16, realtime=True, loop=True, block_size=1, bundle=v1)
        text = config.read_text().replace("block_size = 1\n", f"block_size = 1\nspeed = {speed}\n")
        text = text.replace(
            "[sync]\nenabled = false\n",
            f'[sync]\nenabled = true\nhost = "{broker.host}"\nport = {broker.port}\n',
        )
        text += f'\n[ota]\ntrusted_keys = ["{public}"]\nprobation_s = 2.0\nprobation_min_windows = 10\n'
        config.write_text(text)
        db = workdir / "state" / "store.db"
        agent = spawn_agent(config)
        database = controller.database
        try:
            wait_for(
                lambda: count_results(db) >= 100 and database.get_device("bench"), timeout=120, poll=0.05
            )
            before = batch_times(db)
            view = create_campaign(
                database, controller.ota, CampaignRequest(bundle=str(tar), devices=["bench"])
            )
            cid = view.campaign.campaign_id
            wait_for(
                lambda: campaign_view(database, cid).campaign.status != "running", timeout=300, poll=0.05
            )
            done_at = time.time()
            final = campaign_view(database, cid)
            if final.campaign.status != "completed":
                raise SystemExit(
                    f"campaign {final.campaign.status}: {final.campaign.detail}\n{agent_log_tail(config)}"
                )
            offered_at = final.devices[0].offered_at
            assert offered_at is not None
            wait_for(lambda: sum(v == "1.1.0" for _, v in batch_times(db)) >= 30, timeout=120, poll=0.05)
        finally:
            agent.terminate()
            agent.wait(60)
            controller.stop()
            broker.stop()
        times = batch_times(db)
    steady = statistics.median(b[0] - a[0] for a, b in pairwise(before))
    first_new = next(t for t, v in times if v == "1.1.0")
    around = [t for t, _ in times if first_new - 2.0 <= t <= first_new + 2.0]
    gap = max(b - a for a, b in pairwise(around))
    return first_new - offered_at, done_at - offered_at, gap, steady


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--speed", type=float, default=10.0, help="replay speed (x 10 Hz)")
    args = parser.parse_args()
    results = [one_round(args.speed) for _ in range(args.rounds)]
    print(
        f"{'round':>5} {'offer->active s':>16} {'offer->done s':>14} {'swap gap ms':>12}"
        f" {'steady ms':>10} {'gap/steady':>11}"
    )
    for i, (active, done, gap, steady) in enumerate(results, 1):
        print(
            f"{i:>5} {active:>16.2f} {done:>14.2f} {gap * 1000:>12.1f} {steady * 1000:>10.1f}"
            f" {gap / steady:>10.2f}x"
        )
    worst = max(gap / steady for _, _, gap, steady in results)
    verdict = "met" if worst <= GOAL_RATIO else "NOT met"
    print(f"worst gap/steady {worst:.2f}x (goal <= {GOAL_RATIO:g}x): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
