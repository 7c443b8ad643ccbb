"""An offer with an HTTP(S) ``url``: the same checks as over MQTT, resumed with ``Range``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.broker import MosquittoBroker
from tests.support.ota import OtaRig, versioned_bundle
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


class BundleServer:
    """Serves one file at /bundle.tar with Range support; ``cut_first`` ends the first response
    halfway (a dropped connection)."""

    def __init__(self, path: Path, *, cut_first: bool = False) -> None:
        self.data = path.read_bytes()
        self.cut_first = cut_first
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                header = self.headers.get("Range")
                server.ranges.append(header)
                start = int(header.split("=")[1].rstrip("-")) if header else 0
                body = server.data[start:]
                self.send_response(206 if header else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_first and len(server.ranges) == 1:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/bundle.tar"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def rig(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[OtaRig]:
    made = OtaRig(mosquitto, tmp_path)
    yield made
    made.close()


def test_a_dropped_http_download_resumes_with_range_and_installs(rig: OtaRig, tmp_path: Path) -> None:
    tar = versioned_bundle(tmp_path, "1.1.0")
    server = BundleServer(tar, cut_first=True)
    try:
        offer = rig.host.offer(rig.device_id, rig.host.register(tar), url=server.url)
        assert wait_until(lambda: rig.state_of(offer.offer_id) == "done", fail=False), rig.states()
    finally:
        server.close()
    assert rig.installer.installed[0][0].read_bytes() == tar.read_bytes()
    assert server.ranges[0] is None
    assert len(server.ranges) == 2
    assert server.ranges[1] is not None
    resumed_at = int(server.ranges[1].split("=")[1].rstrip("-"))
    assert 0 < resumed_at < len(server.data)
    assert resumed_at % offer.chunk_bytes == 0
    assert rig.host.stats.chunks_sent == 0  # nothing came over MQTT


def test_a_url_serving_other_bytes_fails_the_offer_and_installs_nothing(rig: OtaRig, tmp_path: Path) -> None:
    offered = versioned_bundle(tmp_path, "1.1.0")
    other = tmp_path / "other.tar"
    other.write_bytes(offered.read_bytes()[::-1])  # same size, other bytes
    server = BundleServer(other)
    try:
        offer = rig.host.offer(rig.device_id, rig.host.register(offered), url=server.url)
        assert wait_until(lambda: rig.state_of(offer.offer_id) == "failed", 60, fail=False), rig.states()
    finally:
        server.close()
    state = rig.database.ota_states(rig.device_id)[0]
    assert state.detail is not None
    assert state.detail.startswith("http_failed")
    assert rig.installer.installed == []
    assert rig.client.counters["bad_chunks"] > 0
