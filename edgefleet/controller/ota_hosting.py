"""The controller's side of the OTA transfer (issue 16): host bundles, offer them, serve chunks.

:meth:`OtaHost.register` checks a bundle ``.tar`` (manifest, every file's sha256) and records it in
``ota_bundles``; :meth:`OtaHost.offer` publishes an ``ota/offer`` to one device with the file's
chunk plan (size, chunk size, each chunk's sha256 and the whole file's) and records it in
``ota_offers``; the device then asks for the chunks it lacks on ``ota/chunk_request`` and each is
answered on its own ``ota/chunk`` topic. Requests are windowed (at most ``max_window`` chunks
served per request) and rate-limited per device (a token bucket of ``chunks_per_s``): what is cut
is simply not sent, and the device asks again after its chunk timeout. ``ota/progress`` messages
are recorded in ``ota_device_state``.

MQTT callbacks only enqueue; one worker thread decodes, reads the file and publishes, so a slow
disk never stalls the controller's network thread. Campaigns (which devices, when) are built on
top of :meth:`OtaHost.offer` elsewhere.
"""

from __future__ import annotations

import json
import logging
import queue
import tarfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgefleet.agent.ota_transfer import ChunkPlan, chunks_of, plan_for_file
from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.protocol import (
    OtaChunkBody,
    OtaChunkRequestBody,
    OtaOfferBody,
    OtaProgressBody,
    make_envelope,
)
from edgefleet.cloud_sync.topics import device_topic, validate_device_id
from edgefleet.controller.config import OTA_HOST_KINDS
from edgefleet.controller.dal import Database
from edgefleet.controller.ota_schemas import BundleInfo, OfferRecord, OtaDeviceState
from edgefleet.errors import BundleError, EdgefleetError, ProtocolError
from edgefleet.runtime.bundle import load_bundle

__all__ = ["DEFAULT_CHUNK_BYTES", "OTA_KINDS", "OtaError", "OtaHost", "OtaHostStats"]

log = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 64 * 1024
"""Well under the devices' default sync.max_message_bytes (256 KiB) once framed."""
OTA_KINDS = OTA_HOST_KINDS
"""Uplink kinds the host reads (the controller's MQTT connection routes them here, not to ingest)."""
_OFFER_TTL_S = 24 * 3600.0
_QUEUE_MAX = 10_000
_MAX_MESSAGE_BYTES = 64 * 1024  # a chunk request or a progress report is small


class OtaError(EdgefleetError):
    """A bundle cannot be registered or offered (400), or is unknown (404)."""

    def __init__(self, message: str, *, status: int = 400, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


@dataclass
class OtaHostStats:
    chunks_sent: int = 0
    chunk_bytes_sent: int = 0
    requests: int = 0
    progress_recorded: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    """Chunk indices asked for but not served (window or rate limit); the device asks again."""


@dataclass
class _Bucket:
    tokens: float
    at: float


def _signer(root: Path) -> str | None:
    sig = root / "manifest.sig"
    try:
        document = json.loads(sig.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    key = document.get("key_id") if isinstance(document, dict) else None
    return str(key) if key is not None else None


class OtaHost:
    def __init__(
        self,
        database: Database,
        publish: Callable[[str, bytes], bool],
        *,
        prefix: str = "edgefleet/v1",
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_window: int = 32,
        chunks_per_s: float = 256.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if chunk_bytes < 1 or max_window < 1 or chunks_per_s <= 0:
            raise ValueError("chunk_bytes, max_window and chunks_per_s must be positive")
        self.database = database
        self.publish = publish
        self.prefix = prefix
        self.chunk_bytes = chunk_bytes
        self.max_window = max_window
        self.chunks_per_s = chunks_per_s
        self.clock = clock
        self.stats = OtaHostStats()
        self._plans: dict[tuple[str, str], tuple[ChunkPlan, Path]] = {}
        self._offers: dict[str, OfferRecord] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=_QUEUE_MAX)
        self._thread: threading.Thread | None = None

    # --- bundles and offers ---------------------------------------------------------------------
    def register(self, tar_path: Path) -> BundleInfo:
        """Check the bundle archive and record it; OtaError saying what is wrong otherwise."""
        path = Path(tar_path).resolve()
        if not path.is_file() or not tarfile.is_tarfile(path):
            raise OtaError(
                f"{path} is not a bundle .tar file",
                hint="build one with `edgefleet bundle build --tar`, sign it with `edgefleet bundle sign`",
            )
        try:
            bundle = load_bundle(path)
        except BundleError as exc:
            raise OtaError(f"bundle {path} failed its checks: {exc.message}", hint=exc.hint) from None
        plan = plan_for_file(path, self.chunk_bytes)
        info = BundleInfo(
            name=bundle.manifest.name,
            version=bundle.manifest.version,
            sha256=plan.sha256,
            size_bytes=plan.size_bytes,
            path=str(path),
            signed_key_id=_signer(bundle.path),
            created_at=self.clock(),
        )
        try:
            stored = self.database.put_ota_bundle(info)
        except ValueError as exc:
            raise OtaError(str(exc), status=409, hint="give the new build a new version") from None
        with self._lock:
            self._plans[(info.name, info.version)] = (plan, path)
        return stored

    def _plan(self, name: str, version: str) -> tuple[ChunkPlan, Path]:
        with self._lock:
            cached = self._plans.get((name, version))
        if cached is not None:
            return cached
        info = self.database.get_ota_bundle(name, version)
        if info is None:
            raise OtaError(
                f"no bundle {name} {version} is registered",
                status=404,
                hint="register it first (POST /api/ota/bundles)",
            )
        path = Path(info.path)
        try:
            plan = plan_for_file(path, self.chunk_bytes)
        except OSError as exc:
            raise OtaError(
                f"bundle file {path} cannot be read: {exc}", hint="register the bundle again"
            ) from None
        if plan.sha256 != info.sha256:
            raise OtaError(
                f"bundle file {path} changed since it was registered (sha256 {plan.sha256[:12]}...,"
                f" registered {info.sha256[:12]}...)",
                status=409,
                hint="register the new file under a new version",
            )
        with self._lock:
            self._plans[(name, version)] = (plan, path)
        return plan, path

    def offer(
        self,
        device_id: str,
        bundle: BundleInfo,
        *,
        url: str | None = None,
        allow_downgrade: bool = False,
        shadow_s: float = 0.0,
        campaign_id: str | None = None,
        expires_in_s: float = _OFFER_TTL_S,
    ) -> OtaOfferBody:
        """Publish an offer of ``bundle`` to ``device_id``; OtaError when it cannot be sent."""
        validate_device_id(device_id)
        plan, _ = self._plan(bundle.name, bundle.version)
        now = self.clock()
        body = OtaOfferBody(
            offer_id=uuid.uuid4().hex,
            campaign_id=campaign_id,
            device_id=device_id,
            bundle_name=bundle.name,
            bundle_version=bundle.version,
            sha256=plan.sha256,
            size_bytes=plan.size_bytes,
            chunk_bytes=plan.chunk_bytes,
            chunk_count=len(plan.chunks),
            chunk_sha256=list(plan.chunks),
            url=url,
            allow_downgrade=allow_downgrade,
            shadow_s=shadow_s,
            expires_at=now + expires_in_s,
        )
        record = OfferRecord(
            offer_id=body.offer_id,
            device_id=device_id,
            bundle_name=bundle.name,
            bundle_version=bundle.version,
            campaign_id=campaign_id,
            created_at=now,
            expires_at=body.expires_at,
        )
        self.database.put_ota_offer(record)
        with self._lock:
            self._offers[body.offer_id] = record
        payload = encode_message(make_envelope(device_id, "ota/offer", body))
        if not self.publish(device_topic(device_id, "ota/offer", prefix=self.prefix), payload):
            raise OtaError(
                f"offer {body.offer_id} to {device_id} could not be published: not connected to the broker",
                status=503,
                hint="check the controller's MQTT connection (GET /healthz) and offer again",
            )
        return body

    def _offer_record(self, offer_id: str) -> OfferRecord | None:
        with self._lock:
            record = self._offers.get(offer_id)
        if record is None:
            record = self.database.get_ota_offer(offer_id)
            if record is not None:
                with self._lock:
                    self._offers[offer_id] = record
        return record

    # --- MQTT intake (network thread: enqueue only) --------------------------------------------
    def submit(self, topic: str, payload: bytes, received_at: float) -> None:
        del received_at
        try:
            self._queue.put_nowait((topic, payload))
        except queue.Full:
            self.stats.refused["queue_full"] += 1

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="edgefleet-ota-host", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)
            self._thread = None

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self.handle(*item)
            except Exception:  # nothing a device sends may stop the host
                log.exception("OTA host: unexpected failure on %s", item[0])

    def handle(self, topic: str, payload: bytes) -> None:
        """Decode and act on one uplink message (the worker thread; tests call it directly)."""
        try:
            envelope = decode_message(topic, payload, max_bytes=_MAX_MESSAGE_BYTES, prefix=self.prefix)
        except ProtocolError as exc:
            self._refuse(exc.reason, f"refused an OTA message: {exc.message}")
            return
        body = envelope.body
        if isinstance(body, OtaChunkRequestBody):
            self._serve(envelope.device_id, body)
        elif isinstance(body, OtaProgressBody):
            self._record(envelope.device_id, body)

    def _refuse(self, reason: str, message: str) -> None:
        self.stats.refused[reason] += 1
        if self.stats.refused[reason] <= 20 or self.stats.refused[reason] % 1000 == 0:
            log.warning("%s", message)

    def _take(self, device_id: str, wanted: int) -> int:
        now = time.monotonic()
        bucket = self._buckets.setdefault(device_id, _Bucket(tokens=float(self.max_window), at=now))
        cap = max(float(self.max_window), self.chunks_per_s)
        bucket.tokens = min(cap, bucket.tokens + (now - bucket.at) * self.chunks_per_s)
        bucket.at = now
        granted = min(wanted, int(bucket.tokens))
        bucket.tokens -= granted
        return granted

    def _serve(self, device_id: str, body: OtaChunkRequestBody) -> None:
        self.stats.requests += 1
        record = self._offer_record(body.offer_id)
        if record is None or record.device_id != device_id:
            self._refuse("unknown_offer", f"{device_id} asked for chunks of unknown offer {body.offer_id}")
            return
        if record.expires_at is not None and self.clock() > record.expires_at:
            self._refuse("expired_offer", f"{device_id} asked for chunks of expired offer {body.offer_id}")
            return
        try:
            plan, path = self._plan(record.bundle_name, record.bundle_version)
        except OtaError as exc:
            self._refuse("bundle_unavailable", f"cannot serve offer {body.offer_id}: {exc.message}")
            return
        indices = [i for i in dict.fromkeys(body.indices) if i < len(plan.chunks)]
        if len(indices) < len(set(body.indices)):
            self._refuse("bad_index", f"{device_id} asked for chunks outside offer {body.offer_id}")
        served = indices[: self._take(device_id, min(len(indices), self.max_window))]
        self.stats.rate_limited += len(indices) - len(served)
        topic = device_topic(device_id, "ota/chunk", prefix=self.prefix)
        try:
            chunks = chunks_of(path, plan.chunk_bytes, served)
        except OSError as exc:
            self._refuse("bundle_unavailable", f"cannot read {path}: {exc}")
            return
        for index, data in chunks.items():
            chunk = OtaChunkBody(offer_id=body.offer_id, index=index, data=data, sha256=plan.chunks[index])
            payload = encode_message(make_envelope(device_id, "ota/chunk", chunk))
            if not self.publish(topic, payload):
                self._refuse("not_connected", "OTA host: not connected to the broker; chunks not sent")
                return
            self.stats.chunks_sent += 1
            self.stats.chunk_bytes_sent += len(payload)

    def _record(self, device_id: str, body: OtaProgressBody) -> None:
        record = self._offer_record(body.offer_id)
        if record is not None and record.device_id != device_id:
            self._refuse("wrong_device", f"{device_id} reported progress of another device's offer")
            return
        self.database.put_ota_state(
            OtaDeviceState(
                device_id=device_id,
                offer_id=body.offer_id,
                campaign_id=body.campaign_id or (record.campaign_id if record else None),
                bundle_name=record.bundle_name if record else None,
                bundle_version=body.bundle_version or (record.bundle_version if record else None),
                state=body.state,
                progress=body.progress,
                detail=body.detail,
                metrics=body.metrics,
                updated_at=self.clock(),
            )
        )
        self.stats.progress_recorded += 1
