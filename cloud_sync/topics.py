"""MQTT topic names of the sync protocol (normative text: docs/protocol.md).

Every topic is ``<prefix>/<device_id>/<kind>`` with the default prefix ``edgefleet/v1``.
Uplink kinds are published by the device; downlink kinds by the controller. Controllers
read uplink through MQTT 5 shared subscriptions (``$share/<group>/...``) so that several
controller processes split the load; under MQTT 3.1.1 they use the plain filter.
"""

from __future__ import annotations

import re
from typing import Literal, TypeAlias, get_args

from edgefleet.errors import ProtocolError

__all__ = [
    "ACKNOWLEDGED_KINDS",
    "ALL_KINDS",
    "DEFAULT_PREFIX",
    "DOWNLINK_KINDS",
    "UPLINK_KINDS",
    "DownlinkKind",
    "MessageKind",
    "UplinkKind",
    "controller_filters",
    "device_subscriptions",
    "device_topic",
    "parse_topic",
    "shared_filter",
    "validate_device_id",
]

DEFAULT_PREFIX = "edgefleet/v1"

UplinkKind: TypeAlias = Literal[
    "status",
    "telemetry",
    "results",
    "drift",
    "events",
    "ota/progress",
    "infer/request",
    "ota/chunk_request",
    "result_update",
]
DownlinkKind: TypeAlias = Literal["cmd", "config", "ota/offer", "infer/response", "ack", "ota/chunk"]
MessageKind: TypeAlias = Literal[
    "status",
    "telemetry",
    "results",
    "drift",
    "events",
    "ota/progress",
    "infer/request",
    "result_update",
    "cmd",
    "config",
    "ota/offer",
    "infer/response",
    "ack",
    "ota/chunk_request",
    "ota/chunk",
]

UPLINK_KINDS: tuple[UplinkKind, ...] = get_args(UplinkKind)
DOWNLINK_KINDS: tuple[DownlinkKind, ...] = get_args(DownlinkKind)
ALL_KINDS: tuple[MessageKind, ...] = get_args(MessageKind)
ACKNOWLEDGED_KINDS: frozenset[str] = frozenset(
    {"status", "telemetry", "results", "drift", "events", "result_update"}
)
"""Uplink kinds a controller ingests and acknowledges with an ``ack`` downlink (docs/protocol.md).
Outbox rows of other kinds are done once the broker acknowledged them."""

# Device ids become one topic level and (with ACLs) an MQTT user name or certificate CN:
# no wildcards, no separators, nothing a shell or SQL would trip on.
_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def validate_device_id(device_id: str) -> str:
    """Return ``device_id`` unchanged or raise :class:`ProtocolError` saying what is allowed."""
    if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
        raise ProtocolError(
            f"invalid device id {device_id!r}; expected 1-64 characters of letters, digits, '.', '_' "
            "or '-', starting with a letter or digit",
            reason="malformed",
            hint="device ids are one MQTT topic level: no '/', '+', '#' or spaces",
        )
    return device_id


def _clean_prefix(prefix: str) -> str:
    return prefix.strip("/")


def device_topic(device_id: str, kind: MessageKind, *, prefix: str = DEFAULT_PREFIX) -> str:
    """``<prefix>/<device_id>/<kind>``, e.g. ``edgefleet/v1/dev-1/results``."""
    if kind not in ALL_KINDS:
        raise ProtocolError(
            f"unknown message kind {kind!r}; expected one of {', '.join(ALL_KINDS)}",
            reason="wrong_topic",
        )
    return f"{_clean_prefix(prefix)}/{validate_device_id(device_id)}/{kind}"


def parse_topic(topic: str, *, prefix: str = DEFAULT_PREFIX) -> tuple[str, MessageKind]:
    """Split a topic into ``(device_id, kind)`` or raise ``ProtocolError(reason="wrong_topic")``."""
    head = _clean_prefix(prefix) + "/"
    if not topic.startswith(head):
        raise ProtocolError(
            f"topic {topic!r} is outside the sync namespace; expected '{head}<device_id>/<kind>'",
            topic=topic,
            reason="wrong_topic",
        )
    device_id, sep, kind = topic[len(head) :].partition("/")
    if not sep or not _DEVICE_ID.match(device_id) or kind not in ALL_KINDS:
        raise ProtocolError(
            f"topic {topic!r} does not name a device and a known kind; expected '{head}<device_id>/"
            f"<kind>' with kind one of {', '.join(ALL_KINDS)}",
            topic=topic,
            reason="wrong_topic",
        )
    return device_id, kind


def device_subscriptions(device_id: str, *, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Topics a device subscribes to: its own downlink kinds only."""
    return [device_topic(device_id, kind, prefix=prefix) for kind in DOWNLINK_KINDS]


def shared_filter(group: str, kind: MessageKind, *, prefix: str = DEFAULT_PREFIX) -> str:
    """MQTT 5 shared subscription ``$share/<group>/<prefix>/+/<kind>``."""
    if not group or any(ch in group for ch in "/+#"):
        raise ProtocolError(
            f"invalid shared-subscription group {group!r}; expected a name without '/', '+' or '#'",
            reason="malformed",
        )
    return f"$share/{group}/{_clean_prefix(prefix)}/+/{kind}"


def controller_filters(
    *,
    group: str | None = "edgefleet-controller",
    kinds: tuple[MessageKind, ...] = UPLINK_KINDS,
    prefix: str = DEFAULT_PREFIX,
) -> list[str]:
    """Filters a controller subscribes to.

    With ``group`` (MQTT 5): shared subscriptions, each message goes to one member of the group.
    With ``group=None`` (MQTT 3.1.1 fallback): plain ``<prefix>/+/<kind>`` filters; run one
    controller consumer, or use the broker's own sharing (e.g. Mosquitto also honours ``$share``
    for 3.1.1 clients, EMQX and HiveMQ too) - see docs/protocol.md.
    """
    if group is None:
        return [f"{_clean_prefix(prefix)}/+/{kind}" for kind in kinds]
    return [shared_filter(group, kind, prefix=prefix) for kind in kinds]
