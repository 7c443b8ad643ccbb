"""The fallback seam: a router may take windows away from the edge answer, with a reason.

The router itself (which windows, which cloud) lives elsewhere; the pipeline only offers
each batch through :func:`offer` and stores what the router leaves to the edge. Claimed
windows are the router's to answer, later, through ``Pipeline.deliver`` - with a cloud
result (``answered_by="cloud"``, ``fallback_reason=reason``) or by handing back the edge
record. A router that raises, or returns another number of reasons than windows (counted in
``PipelineCounters.router_mismatches``), never costs a result: the edge answers are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.store import ResultRecord
from edgefleet.runtime.bundle import Prediction
from edgefleet.runtime.ringbuffer import Window

__all__ = ["FallbackRouter", "offer"]

log = logging.getLogger(__name__)


class FallbackRouter(Protocol):
    """Decides which windows go elsewhere (the cloud) instead of taking the edge answer."""

    def route(
        self, windows: Sequence[Window], predictions: Sequence[Prediction] | None
    ) -> Sequence[str | None]:
        """A reason per window to hand it over, or None to keep the edge answer.

        ``predictions`` is None when no edge model is available.
        """
        ...

    def submit(self, window: Window, reason: str, edge_result: ResultRecord | None) -> None:
        """Take over one window; answer later through ``Pipeline.deliver``. Must not block."""
        ...


def offer(
    router: FallbackRouter,
    windows: Sequence[Window],
    predictions: Sequence[Prediction] | None,
    records: Sequence[ResultRecord | None],
    counters: PipelineCounters,
) -> list[ResultRecord]:
    """Offer a batch to ``router``; returns the edge records to store (those it left).

    ``records`` holds the edge answer per window, or None where there is none (no model):
    such windows the router does not claim are counted as skipped.
    """
    try:
        reasons = list(router.route(windows, predictions))
    except Exception as exc:
        log.warning("fallback router failed; keeping edge answers: %s", exc)
        reasons = [None] * len(windows)
    if len(reasons) != len(windows):
        # Which reason belongs to which window is unknown: keep every edge answer, and count it.
        counters.record_router_mismatch()
        log.warning(
            "fallback router returned %d reasons for %d windows; keeping the edge answers "
            "(route() must return one reason or None per window)",
            len(reasons),
            len(windows),
        )
        reasons = [None] * len(windows)
    keep: list[ResultRecord] = []
    for window, record, reason in zip(windows, records, reasons, strict=True):
        if reason is not None:
            try:
                router.submit(window, reason, record)
            except Exception as exc:
                log.warning("fallback submit failed; keeping the edge answer: %s", exc)
            else:
                counters.record_fallback(1)
                continue
        if record is not None:
            keep.append(record)
        else:
            counters.record_skipped(1)
    return keep
