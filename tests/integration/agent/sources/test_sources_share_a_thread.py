"""Every source of a process runs on the one source hub thread: replay, synthetic, udp and unix together."""

from __future__ import annotations

import socket
import tempfile
import threading
from pathlib import Path

import pytest

from edgefleet.agent.sources import (
    ReplaySourceConfig,
    SyntheticSourceConfig,
    UdpSource,
    UdpSourceConfig,
    UnixSource,
    UnixSourceConfig,
    create_source,
)
from edgefleet.agent.sources.hub import default_hub
from tests.conftest import MODELS_DIR
from tests.integration.agent.sources.helpers import Collector
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

STREAM_CSV = MODELS_DIR / "data" / "basicmotions_test_stream.csv"


def test_sixteen_streams_and_two_sockets_run_on_one_thread() -> None:
    with tempfile.TemporaryDirectory(prefix="ef-hub-") as tmp:
        replay_sinks = [Collector() for _ in range(14)]
        sources = [
            create_source(ReplaySourceConfig(name=f"imu-{i}", file=STREAM_CSV, rate_hz=100, loop=True), sink)
            for i, sink in enumerate(replay_sinks)
        ]
        synthetic_sinks = [Collector(), Collector()]
        sources += [
            create_source(SyntheticSourceConfig(name=f"syn-{i}", channels=6, rate_hz=100), sink)
            for i, sink in enumerate(synthetic_sinks)
        ]
        udp_sink, unix_sink = Collector(), Collector()
        udp = create_source(UdpSourceConfig(name="udp", port=0, channels=3), udp_sink)
        unix = create_source(UnixSourceConfig(name="unix", path=Path(tmp) / "s.sock", channels=3), unix_sink)
        assert isinstance(udp, UdpSource)
        assert isinstance(unix, UnixSource)
        sources += [udp, unix]
        before = {t.ident for t in threading.enumerate()}
        for source in sources:
            source.start()
        try:
            wait_until(lambda: udp.address is not None and unix.bound, what="sockets bound")
            assert udp.address is not None
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                sender.sendto(b"[1, 2, 3]\n[4, 5, 6]", udp.address)
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
                sender.sendto(b"[1, 2, 3]", str(Path(tmp) / "s.sock"))
            wait_until(
                lambda: (
                    all(s.count > 0 for s in replay_sinks + synthetic_sinks)
                    and udp_sink.count == 2
                    and unix_sink.count == 1
                ),
                what="samples from every source",
            )
            started = [t for t in threading.enumerate() if t.ident not in before]
            # the hub may have been started by an earlier test in this process
            assert [t.name for t in started] in ([], ["source-io"])
            assert not any(
                t.name.startswith("source-") and t.name != "source-io" for t in threading.enumerate()
            )
            assert all(source.running for source in sources)
        finally:
            for source in sources:
                source.stop()
        assert not unix.bound
        assert not (Path(tmp) / "s.sock").exists()
        assert default_hub().name == "source-io"
