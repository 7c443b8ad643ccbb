"""udp and unix sources on real sockets: both formats, every bad frame counted, clean stop."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefleet.agent.sources import (
    UdpSource,
    UdpSourceConfig,
    UnixSource,
    UnixSourceConfig,
    create_source,
)
from tests.integration.agent.sources.helpers import Collector
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


class Sender:
    """Sends datagrams to a started udp or unix source."""

    def __init__(self, family: int, address: Any) -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.address = address

    def send(self, payload: bytes) -> None:
        self.sock.sendto(payload, self.address)

    def close(self) -> None:
        self.sock.close()


def start_udp(sink: Collector, **extra: Any) -> tuple[UdpSource, Sender]:
    source = create_source(UdpSourceConfig(name="udp-imu", port=0, channels=3, **extra), sink)
    assert isinstance(source, UdpSource)
    source.start()
    wait_until(lambda: source.address is not None, what="udp bind")
    assert source.address is not None
    return source, Sender(socket.AF_INET, source.address)


def start_unix(sink: Collector, path: Path, **extra: Any) -> tuple[UnixSource, Sender]:
    source = create_source(UnixSourceConfig(name="unix-imu", path=path, channels=3, **extra), sink)
    assert isinstance(source, UnixSource)
    source.start()
    wait_until(lambda: source.bound, what="unix socket bind")
    return source, Sender(socket.AF_UNIX, str(path))


@pytest.fixture(params=["udp", "unix"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # AF_UNIX paths are limited to ~107 bytes; pytest's tmp_path can be longer
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ef-src-") as name:
        yield Path(name)


def start(kind: str, sink: Collector, tmp: Path, **extra: Any) -> tuple[UdpSource | UnixSource, Sender]:
    if kind == "udp":
        return start_udp(sink, **extra)
    return start_unix(sink, tmp / "imu.sock", **extra)


def test_json_samples_arrive(kind: str, short_tmp: Path) -> None:
    sink = Collector()
    source, sender = start(kind, sink, short_tmp)
    try:
        sender.send(b'{"ts": 100.0, "values": [1, 2, 3]}\n{"ts": 100.1, "values": [4, 5, 6]}\n')
        sender.send(json.dumps([7, 8, 9]).encode())
        wait_until(lambda: sink.count == 3, what="3 samples")
    finally:
        sender.close()
        source.stop()
    samples, times = sink.arrays(3)
    np.testing.assert_array_equal(samples, [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert times[:2].tolist() == [100.0, 100.1]
    assert abs(times[2] - time.time()) < 3600  # stamped on receipt
    stats = source.stats
    assert (stats.samples, stats.bad_samples, stats.frames) == (3, 0, 2)


def test_packed_frames_arrive(kind: str, short_tmp: Path) -> None:
    sink = Collector()
    source, sender = start(kind, sink, short_tmp, format="packed", timestamped=True)
    try:
        records = b"".join(struct.pack("<d3f", 50.0 + i, i, i * 2, i * 3) for i in range(10))
        sender.send(records)
        wait_until(lambda: sink.count == 10, what="10 samples")
    finally:
        sender.close()
        source.stop()
    samples, times = sink.arrays(3)
    assert samples[:, 1].tolist() == [i * 2 for i in range(10)]
    assert times.tolist() == [50.0 + i for i in range(10)]


@pytest.mark.parametrize(
    ("fmt", "bad_payload", "bad_count"),
    [
        ("json", b"{garbage", 1),
        ("json", b"[1, 2]", 1),
        ("json", b"[1, 2, 3, 4]", 1),
        ("json", b"[1, NaN, 3]", 1),
        ("json", b"[1, Infinity, 3]", 1),
        ("json", b'[1, "x", 3]', 1),
        ("json", b'{"ts": "now", "values": [1, 2, 3]}', 1),
        ("json", b"\xff\xfe\xfd", 1),
        ("json", b"[1,2]\n[1,2,3,4]\n{", 3),
        ("packed", struct.pack("<2f", 1, 2), 1),  # wrong channel count
        ("packed", struct.pack("<3f", 1, 2, 3) + b"\x00", 1),  # not whole records
        ("packed", struct.pack("<3f", 1, float("nan"), 3), 1),
        ("packed", struct.pack("<3f", float("inf"), 2, 3) * 2, 2),
        ("packed", b"", 1),
    ],
)
def test_bad_frames_are_counted_and_never_reach_the_sink(
    kind: str, short_tmp: Path, fmt: str, bad_payload: bytes, bad_count: int
) -> None:
    sink = Collector()
    source, sender = start(kind, sink, short_tmp, format=fmt)
    good = json.dumps([1.5, 2.5, 3.5]).encode() if fmt == "json" else struct.pack("<3f", 1.5, 2.5, 3.5)
    try:
        sender.send(bad_payload)
        sender.send(good)
        wait_until(lambda: sink.count == 1 and source.stats.bad_samples == bad_count, what="bad + good")
    finally:
        sender.close()
        source.stop()
    samples, _ = sink.arrays(3)
    np.testing.assert_array_equal(samples, [[1.5, 2.5, 3.5]])
    assert source.stats.last_error is not None
    assert source.stats.frames == 2


def test_stop_is_clean_and_restartable(kind: str, short_tmp: Path) -> None:
    sink = Collector()
    source, sender = start(kind, sink, short_tmp)
    source.stop()
    assert not source.running
    source.start()
    try:
        wait_until(lambda: source.bound, what="rebind")
        if isinstance(source, UdpSource):
            assert source.address is not None
            sender.address = source.address
        sender.send(b"[1, 2, 3]")
        wait_until(lambda: sink.count == 1, what="sample after restart")
    finally:
        sender.close()
        source.stop()


def test_unix_socket_file_is_removed_on_stop_and_stale_one_replaced(short_tmp: Path) -> None:
    path = short_tmp / "imu.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(path))
    stale.close()  # leaves the file behind, like a crashed process
    sink = Collector()
    source, sender = start_unix(sink, path, mode=0o600)
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        sender.send(b"[1, 2, 3]")
        wait_until(lambda: sink.count == 1, what="sample")
    finally:
        sender.close()
        source.stop()
    assert not path.exists()


def test_unix_refuses_to_replace_a_regular_file_but_keeps_running(short_tmp: Path) -> None:
    path = short_tmp / "data.txt"
    path.write_text("precious")
    source = UnixSource(UnixSourceConfig(name="u", path=path, channels=3, restart_delay_s=0.05), Collector())
    source.start()
    wait_until(lambda: source.stats.last_error is not None, what="bind error")
    assert "not a socket" in (source.stats.last_error or "")
    assert source.running
    source.stop()
    assert path.read_text() == "precious"


def test_udp_port_in_use_is_reported_and_retried() -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 0))
    port = blocker.getsockname()[1]
    sink = Collector()
    source = UdpSource(UdpSourceConfig(name="u", port=port, channels=3, restart_delay_s=0.05), sink)
    source.start()
    try:
        wait_until(lambda: source.stats.last_error is not None, what="bind error")
        assert f"cannot bind udp 127.0.0.1:{port}" in (source.stats.last_error or "")
        blocker.close()  # the port frees up: the source binds on its next attempt
        wait_until(lambda: source.address is not None, what="bind after retry")
        sender = Sender(socket.AF_INET, ("127.0.0.1", port))
        sender.send(b"[1, 2, 3]")
        wait_until(lambda: sink.count == 1, what="sample")
        sender.close()
    finally:
        blocker.close()
        source.stop()
