"""The device's side of the OTA transfer (issue 16): take an offer, fetch the bundle, hand it over.

An ``ota/offer`` is checked before a byte is fetched (:func:`edgefleet.agent.ota_policy.refusal`:
this device, not expired, no downgrade unless allowed, room on disk for the bundle plus
``[ota] min_free_bytes``); a refused offer is reported ``refused`` with the reason. An accepted one
is fetched into ``<download_dir>/active`` (:class:`~edgefleet.agent.ota_transfer.PartialDownload`:
each chunk checked against the offer's ``chunk_sha256`` and fsynced before it is recorded) over
MQTT (``ota/chunk_request`` for at most ``chunk_window`` missing chunks, asked again after
``chunk_timeout_s``) or, when the offer has a ``url``, over HTTP(S) with ``Range`` resume. After a
disconnect or a restart only the missing chunks are asked for (a restart finds the offer and its
state where :mod:`~edgefleet.agent.ota_resume` keeps them). The finished file, accepted only with
the offer's whole sha256, goes to the :class:`Installer` in its own thread.

Progress goes up on ``ota/progress`` through the store outbox; refusals and failures are also
store events. Everything runs on the client's own thread (the sync thread's handlers only
enqueue), and the model being served is never touched here.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgefleet.agent.ota_handoff import Installer, Report
from edgefleet.agent.ota_http import HttpFetchError, fetch_http
from edgefleet.agent.ota_policy import refusal
from edgefleet.agent.ota_resume import (
    active_dir,
    offer_path,
    plan_of,
    read_unfinished,
    write_offer,
    write_state,
)
from edgefleet.agent.ota_transfer import DownloadError, PartialDownload, write_error
from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import (
    Envelope,
    OtaChunkBody,
    OtaChunkRequestBody,
    OtaOfferBody,
    OtaProgressBody,
    make_envelope,
)
from edgefleet.cloud_sync.topics import device_topic

__all__ = ["Installer", "OtaClient", "Report"]

log = logging.getLogger(__name__)

_TICK_S = 0.25
_REPORT_EVERY_S = 2.0


class OtaClient:
    def __init__(
        self,
        *,
        device_id: str,
        directory: Path,
        publish_live: Callable[[str, bytes], str | None],
        progress_sink: Callable[[dict[str, Any]], None],
        current_model: Callable[[], tuple[str | None, str | None]],
        installer: Installer | None = None,
        event_sink: Callable[[str, str, str, dict[str, Any]], None] | None = None,
        prefix: str = "edgefleet/v1",
        window: int = 8,
        chunk_timeout_s: float = 5.0,
        min_free_bytes: int = 16 * 1024 * 1024,
        free_bytes: Callable[[Path], int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.device_id = device_id
        self.directory = directory
        self.publish_live = publish_live
        self.progress_sink = progress_sink
        self.current_model = current_model
        self.installer = installer
        self.event_sink = event_sink
        self.prefix = prefix
        self.window = window
        self.chunk_timeout_s = chunk_timeout_s
        self.min_free_bytes = min_free_bytes
        self.free_bytes = free_bytes
        self.clock = clock
        self.counters: dict[str, int] = {
            "offers": 0,
            "refused": 0,
            "chunks": 0,
            "duplicates": 0,
            "bad_chunks": 0,
            "stale_chunks": 0,
            "requests": 0,
        }
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._offer: OtaOfferBody | None = None
        self._shown: OtaOfferBody | None = None
        """The last offer taken, kept for ``status()`` after its transfer ended."""
        self._download: PartialDownload | None = None
        self._state = "idle"
        self._detail: str | None = None
        self._have = 0
        self._outstanding: dict[int, float] = {}
        self._last_chunk_at = 0.0
        self._last_report_at = 0.0
        self._install_thread: threading.Thread | None = None

    # --- sync thread: enqueue only --------------------------------------------------------------
    def on_offer(self, envelope: Envelope) -> None:
        self._queue.put(("offer", envelope.body))

    def on_chunk(self, envelope: Envelope) -> None:
        self._queue.put(("chunk", envelope.body))

    # --- life -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="edgefleet-ota", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def status(self) -> dict[str, Any]:
        """What ``edgefleet agent status`` shows under ``ota``."""
        with self._lock:
            offer = self._offer or self._shown
            return {
                "state": self._state,
                "detail": self._detail,
                "offer_id": offer.offer_id if offer else None,
                "bundle": f"{offer.bundle_name} {offer.bundle_version}" if offer else None,
                "chunks": f"{self._have}/{offer.chunk_count}" if offer else None,
                "via": ("http" if offer.url else "mqtt") if offer else None,
                "counters": dict(self.counters),
            }

    # --- the client's thread --------------------------------------------------------------------
    def _run(self) -> None:
        self._resume()
        while True:
            try:
                item = self._queue.get(timeout=_TICK_S)
            except queue.Empty:
                item = ("tick", None)
            else:
                if item is None:
                    self._queue.task_done()
                    return
            try:
                kind, body = item
                if kind == "offer" and isinstance(body, OtaOfferBody):
                    self._on_offer(body)
                elif kind == "chunk" and isinstance(body, OtaChunkBody):
                    self._on_chunk(body)
                self._maybe_request()
            except Exception:  # a bug here must not end the OTA thread (the old model keeps serving)
                log.exception("OTA client: unexpected failure")
            finally:
                if item[0] != "tick":
                    self._queue.task_done()

    def _set(self, state: str, detail: str | None = None) -> None:
        with self._lock:
            self._state, self._detail = state, detail
        if self._download is not None and self._offer is not None:
            try:
                write_state(self._download.directory, state, detail)
            except OSError as exc:
                log.warning("OTA: cannot record the transfer state: %s", exc)

    def _report(
        self,
        offer: OtaOfferBody,
        state: str,
        progress: float = 0.0,
        detail: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        body = OtaProgressBody(
            offer_id=offer.offer_id,
            campaign_id=offer.campaign_id,
            state=state,  # type: ignore[arg-type]  # validated by the model
            progress=min(1.0, max(0.0, progress)),
            detail=detail,
            bundle_version=offer.bundle_version,
            metrics=metrics,
        )
        try:
            self.progress_sink(body.model_dump(mode="json", exclude_none=True))
        except Exception as exc:  # the store may be closing; the state stays visible in status
            log.warning("OTA: could not queue progress %s: %s", state, exc)

    def _event(self, kind: str, message: str, level: str, data: dict[str, Any]) -> None:
        if self.event_sink is not None:
            try:
                self.event_sink(kind, message, level, data)
            except Exception as exc:
                log.warning("OTA: could not record event %s: %s", kind, exc)

    def _refuse(self, offer: OtaOfferBody, reason: str, detail: str) -> None:
        self.counters["refused"] += 1
        log.warning("OTA offer %s refused: %s", offer.offer_id, detail)
        self._event(
            "ota.refused",
            f"OTA offer {offer.offer_id} refused: {detail}",
            "warning",
            {"offer_id": offer.offer_id, "reason": reason},
        )
        self._report(offer, "refused", detail=f"{reason}: {detail}")

    def _fail(self, reason: str, detail: str) -> None:
        offer = self._offer
        if offer is None:
            return
        log.error("OTA offer %s failed: %s", offer.offer_id, detail)
        self._event(
            "ota.failed",
            f"OTA offer {offer.offer_id} failed: {detail}",
            "error",
            {"offer_id": offer.offer_id, "reason": reason},
        )
        self._report(offer, "failed", self._have / offer.chunk_count, f"{reason}: {detail}")
        self._set("failed", f"{reason}: {detail}")
        self._clear()

    def _clear(self) -> None:
        self._offer, self._download = None, None
        self._outstanding.clear()
        shutil.rmtree(active_dir(self.directory), ignore_errors=True)

    # --- offers ---------------------------------------------------------------------------------
    def _on_offer(self, offer: OtaOfferBody) -> None:
        self.counters["offers"] += 1
        if (
            self._offer is not None
            and self._offer.offer_id == offer.offer_id
            and offer.device_id == self.device_id
        ):
            return  # the same offer again (a resend): the transfer goes on
        refused = refusal(offer, device_id=self.device_id, now=self.clock(), serving=self.current_model())
        if refused is not None:
            self._refuse(offer, *refused)
            return
        if self._install_thread is not None and self._install_thread.is_alive():
            self._refuse(offer, "busy", "another bundle is being installed; offer again when it is done")
            return
        plan = plan_of(offer)
        active = active_dir(self.directory)
        previous = self._offer
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            free = None if self.free_bytes is None else self.free_bytes(self.directory)
            # Same plan as the active download (the same bundle offered again): its chunks are kept.
            download = PartialDownload.open(active, plan, free_bytes=free, margin_bytes=self.min_free_bytes)
        except (DownloadError, OSError) as exc:
            if previous is not None and previous.sha256 != offer.sha256:
                # open() dropped the previous file's chunks to make room before it checked the disk.
                self._report(previous, "failed", detail=f"superseded by offer {offer.offer_id} (refused)")
                self._offer, self._download = None, None
            if isinstance(exc, DownloadError):
                self._refuse(offer, exc.reason, exc.message)
            else:
                error = write_error(f"cannot prepare {active}", exc)
                self._refuse(offer, error.reason, error.message)
            return
        try:
            write_offer(active, offer)
        except OSError as exc:
            # Without offer.json a restart could not resume it: refuse rather than fetch blind.
            shutil.rmtree(active, ignore_errors=True)
            if previous is not None:
                self._report(previous, "failed", detail=f"superseded by offer {offer.offer_id} (refused)")
                self._offer, self._download = None, None
            error = write_error(f"cannot write {offer_path(active)}", exc)
            self._refuse(offer, error.reason, error.message)
            return
        if previous is not None:
            self._report(previous, "failed", detail=f"superseded by offer {offer.offer_id}")
        self._offer, self._download = offer, download
        self._shown = offer
        self._outstanding.clear()
        self._have = len(download.received())
        log.info(
            "OTA offer %s accepted: %s %s, %d bytes in %d chunks (%d already here)",
            offer.offer_id,
            offer.bundle_name,
            offer.bundle_version,
            offer.size_bytes,
            offer.chunk_count,
            self._have,
        )
        self._report(offer, "received")
        self._set("downloading")
        self._report(offer, "downloading", self._have / offer.chunk_count)
        self._last_report_at = time.monotonic()
        self._start_fetch()

    def _resume(self) -> None:
        """After a restart: take the unfinished offer up again where it stopped."""
        active = active_dir(self.directory)
        unfinished = read_unfinished(active)
        if unfinished is None:
            return
        offer, state = unfinished
        download = PartialDownload(active, plan_of(offer))
        self._shown, self._have = offer, len(download.received())
        if state not in ("downloading", "verifying", "downloaded"):
            # Failed, handed to the installer (which recovers its own steps) or kept without one.
            with self._lock:
                self._state, self._detail = str(state), "before the agent restarted"
            return
        if state == "downloaded" and self.installer is None:
            with self._lock:
                self._state = "downloaded"
                self._detail = "OTA activation not available on this agent: the bundle is kept, not installed"
            return
        self._offer, self._download = offer, download
        if offer.expires_at is not None and self.clock() > offer.expires_at and state == "downloading":
            self._fail("expired", "the offer expired before its download finished")
            return
        log.info(
            "OTA: resuming offer %s (%d of %d chunks here)", offer.offer_id, self._have, offer.chunk_count
        )
        if state == "downloading":
            self._set("downloading")
            self._start_fetch()
        else:  # the whole file may be here: check it and hand it over
            self._finish()

    # --- chunks over MQTT -----------------------------------------------------------------------
    def _start_fetch(self) -> None:
        offer = self._offer
        if offer is None:
            return
        if offer.url is not None:
            self._fetch_http(offer)
        elif not self._download_missing():
            self._finish()
        else:
            self._last_chunk_at = 0.0  # ask now

    def _download_missing(self) -> list[int]:
        return self._download.missing() if self._download is not None else []

    def _maybe_request(self) -> None:
        offer = self._offer
        if offer is None or offer.url is not None or self._state != "downloading":
            return
        now = time.monotonic()
        if now - self._last_chunk_at > self.chunk_timeout_s:
            self._outstanding.clear()  # nothing came for a while: ask again for what is missing
        room = self.window - len(self._outstanding)
        if room <= 0:
            return
        wanted = [i for i in self._download_missing() if i not in self._outstanding][:room]
        if not wanted:
            return
        body = OtaChunkRequestBody(offer_id=offer.offer_id, indices=wanted)
        topic = device_topic(self.device_id, "ota/chunk_request", prefix=self.prefix)
        error = self.publish_live(
            topic, encode_message(make_envelope(self.device_id, "ota/chunk_request", body))
        )
        if error is not None:
            self._last_chunk_at = now  # not connected: try again after the timeout
            return
        self.counters["requests"] += 1
        for i in wanted:
            self._outstanding[i] = now
        if self._last_chunk_at == 0.0 or now - self._last_chunk_at > self.chunk_timeout_s:
            self._last_chunk_at = now

    def _on_chunk(self, chunk: OtaChunkBody) -> None:
        offer, download = self._offer, self._download
        if (
            offer is None
            or download is None
            or chunk.offer_id != offer.offer_id
            or self._state != "downloading"
        ):
            self.counters["stale_chunks"] += 1
            return
        self._last_chunk_at = time.monotonic()
        self._outstanding.pop(chunk.index, None)
        if not self._accept(download, chunk.index, chunk.data):
            return
        if not download.missing():
            self._finish()

    def _accept(self, download: PartialDownload, index: int, data: bytes) -> bool:
        """Write one chunk; False when refused or a duplicate (a refused one is asked for again)."""
        offer = self._offer
        assert offer is not None
        try:
            fresh = download.accept(index, data)
        except DownloadError as exc:
            if exc.reason in ("disk_full", "write_failed"):
                self._fail(exc.reason, exc.message)
                return False
            self.counters["bad_chunks"] += 1
            log.warning("OTA offer %s: refused a chunk: %s", offer.offer_id, exc.message)
            if self.counters["bad_chunks"] <= 20:
                self._event(
                    "ota.bad_chunk",
                    f"OTA offer {offer.offer_id}: refused a chunk: {exc.message}",
                    "warning",
                    {"offer_id": offer.offer_id, "reason": exc.reason, "index": index},
                )
            return False
        if not fresh:
            self.counters["duplicates"] += 1
            return False
        self.counters["chunks"] += 1
        self._have += 1
        now = time.monotonic()
        if now - self._last_report_at >= _REPORT_EVERY_S:
            self._last_report_at = now
            self._report(offer, "downloading", self._have / offer.chunk_count)
        return True

    # --- HTTP(S) --------------------------------------------------------------------------------
    def _fetch_http(self, offer: OtaOfferBody) -> None:
        download = self._download
        assert download is not None
        try:
            fetch_http(offer, download, self._accept, gone=lambda: self._offer is None)
        except HttpFetchError as exc:
            self._fail("http_failed", str(exc))
            return
        if self._offer is not None:
            self._finish()

    # --- the finished archive -------------------------------------------------------------------
    def _finish(self) -> None:
        offer, download = self._offer, self._download
        if offer is None or download is None:
            return
        self._set("verifying")
        try:
            archive = download.complete()
        except DownloadError as exc:
            self._fail(exc.reason, exc.message)
            return
        self._set("downloaded")
        log.info("OTA offer %s: %s downloaded and its sha256 checked", offer.offer_id, archive)
        installer = self.installer
        if installer is None:
            detail = "OTA activation not available on this agent: the bundle is kept, not installed"
            self._report(offer, "downloaded", 1.0, detail)
            self._event(
                "ota.downloaded",
                f"OTA offer {offer.offer_id}: {detail}",
                "warning",
                {"offer_id": offer.offer_id},
            )
            self._set("downloaded", detail)
            self._offer = None  # nothing more to do for it; the archive stays for a later install
            return
        self._report(offer, "downloaded", 1.0)
        self._set("installing")

        def report(
            state: str,
            progress: float = 0.0,
            detail: str | None = None,
            metrics: dict[str, Any] | None = None,
        ) -> None:
            self._report(offer, state, progress, detail, metrics)
            with self._lock:
                self._state, self._detail = state, detail

        def install() -> None:
            try:
                installer.install(archive, offer, report)
            except Exception as exc:  # an installer bug is the offer's failure, not the agent's
                log.exception("OTA installer failed")
                report("failed", 0.0, f"install_failed: {exc}")

        self._offer = None
        self._install_thread = threading.Thread(target=install, name="edgefleet-ota-install", daemon=True)
        self._install_thread.start()
