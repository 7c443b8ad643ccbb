"""Pluggable sensor sources, one module per ``type``.

Each ``[[sources]]`` table of the agent config is validated by the model its ``type``
selects (:data:`SourceConfig`, a pydantic discriminated union) and built by
:func:`create_source`. :data:`SOURCE_PLUGINS` is the one list of source classes: both the
union and the registry (:data:`SOURCE_TYPES`) are built from it. To add a source: write a
module with a ``BaseSourceConfig`` subclass (``type: Literal["name"]``) and a ``Source``
subclass naming it (``type_key``, ``config_model``), then add the class to SOURCE_PLUGINS.
"""

from __future__ import annotations

import functools
import operator
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

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
    "SOURCE_PLUGINS",
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

SOURCE_PLUGINS: tuple[type[Source[Any]], ...] = (
    ReplaySource,
    SyntheticSource,
    UdpSource,
    UnixSource,
    MqttSource,
)
"""Every source plugin: the one list the config union and the registry are built from."""

SOURCE_TYPES: dict[str, type[Source[Any]]] = {cls.type_key: cls for cls in SOURCE_PLUGINS}
"""The registry: ``type`` key -> source class."""

if TYPE_CHECKING:
    SourceConfig: TypeAlias = BaseSourceConfig  # the union below is built at run time
else:
    SourceConfig = Annotated[
        functools.reduce(operator.or_, (cls.config_model for cls in SOURCE_PLUGINS)),
        Field(discriminator="type"),
    ]
"""One ``[[sources]]`` table; ``type`` picks the model."""


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
