"""Fetch an offered bundle over HTTP(S) into a :class:`PartialDownload`, resuming with ``Range``.

The same checks as the MQTT transfer: every chunk against the offer's ``chunk_sha256`` (through
the caller's ``accept``), the whole file against its sha256 afterwards. A server that ignores
``Range`` (answers 200) is read from the start and the chunks already here are skipped.
"""

from __future__ import annotations

import http.client
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from edgefleet.agent.ota_transfer import PartialDownload
from edgefleet.cloud_sync.protocol import OtaOfferBody

__all__ = ["HttpFetchError", "fetch_http"]

log = logging.getLogger(__name__)

_TIMEOUT_S = 30.0
_TRIES = 3


class HttpFetchError(Exception):
    """The URL could not deliver the bundle after the retries."""


def fetch_http(
    offer: OtaOfferBody,
    download: PartialDownload,
    accept: Callable[[PartialDownload, int, bytes], bool],
    *,
    gone: Callable[[], bool],
    tries: int = _TRIES,
    retry_wait_s: float = 1.0,
) -> None:
    """Fill ``download`` from ``offer.url``; ``gone()`` True stops it (the caller failed the offer)."""
    assert offer.url is not None
    for attempt in range(1, tries + 1):
        missing = download.missing()
        if not missing or gone():
            return
        try:
            _read_from(offer, download, missing[0], accept, gone)
        except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as exc:
            if attempt == tries:
                raise HttpFetchError(f"{offer.url}: {exc}") from None
            log.warning("OTA offer %s: HTTP download interrupted (%s); resuming", offer.offer_id, exc)
            time.sleep(retry_wait_s * attempt)
    if not gone() and download.missing():
        raise HttpFetchError(f"{offer.url} did not deliver the whole bundle in {tries} tries")


def _read_from(
    offer: OtaOfferBody,
    download: PartialDownload,
    first: int,
    accept: Callable[[PartialDownload, int, bytes], bool],
    gone: Callable[[], bool],
) -> None:
    assert offer.url is not None
    headers = {"Range": f"bytes={first * offer.chunk_bytes}-"} if first else {}
    request = urllib.request.Request(offer.url, headers=headers)
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
        index = first if response.status == 206 else 0
        have = download.received()
        while index < offer.chunk_count:
            data = response.read(download.plan.chunk_length(index))
            if not data:
                return
            if index not in have:
                accept(download, index, data)
                if gone():
                    return
            index += 1
