"""Pluggable sensor sources, one module per ``type``.

Each ``[[sources]]`` table of the agent config is validated by the model its ``type``
selects (:data:`SourceConfig`, a pydantic discriminated union) and built by
:func:`create_source`. To add a source: write a module with a ``BaseSourceConfig``
subclass (``type: Literal["name"]``) and a ``Source`` subclass, then add both here.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias

from pydantic import Field

from edgefleet.agent.sources.base import (
    BaseSourceConfig,
    RateLimitedLog,
    Sink,
    Source,
    SourceError,
    SourceStats,
)
from edgefleet.agent.sources.framing import Decoded, FrameDecoder, FrameFormat
from edgefleet.agent.sources.mqtt import MqttSource, MqttSourceConfig
from edgefleet.agent.sources.replay import ReplaySource, ReplaySourceConfig
from edgefleet.agent.sources.synthetic import (
    DriftInjection,
    SyntheticSignal,
    SyntheticSource,
    SyntheticSourceConfig,
)
from edgefleet.agent.sources.udp import UdpSource, UdpSourceConfig
from edgefleet.agent.sources.unix import UnixSource, UnixSourceConfig

__all__ = [
    "SOURCE_TYPES",
    "BaseSourceConfig",
    "Decoded",
    "DriftInjection",
    "FrameDecoder",
    "FrameFormat",
    "MqttSource",
    "MqttSourceConfig",
    "RateLimitedLog",
    "ReplaySource",
    "ReplaySourceConfig",
    "Sink",
    "Source",
    "SourceConfig",
    "SourceError",
    "SourceStats",
    "SyntheticSignal",
    "SyntheticSource",
    "SyntheticSourceConfig",
    "UdpSource",
    "UdpSourceConfig",
    "UnixSource",
    "UnixSourceConfig",
    "create_source",
]

SourceConfig: TypeAlias = Annotated[
    ReplaySourceConfig | SyntheticSourceConfig | UdpSourceConfig | UnixSourceConfig | MqttSourceConfig,
    Field(discriminator="type"),
]
"""One ``[[sources]]`` table; ``type`` picks the model."""

SOURCE_TYPES: dict[str, type[Source[Any]]] = {
    cls.type_key: cls for cls in (ReplaySource, SyntheticSource, UdpSource, UnixSource, MqttSource)
}
"""The registry: ``type`` key -> source class."""


def create_source(config: BaseSourceConfig, sink: Sink) -> Source[Any]:
    """Build (not start) the source a validated config describes."""
    key = getattr(config, "type", None)
    cls = SOURCE_TYPES.get(str(key))
    if cls is None or not isinstance(config, cls.config_model):
        raise SourceError(
            f"no source of type {key!r}",
            hint=f"use one of: {', '.join(sorted(SOURCE_TYPES))}",
        )
    return cls(config, sink)
