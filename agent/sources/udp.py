"""``udp``: samples arriving as datagrams on a bound UDP socket (see :mod:`.framing` for the format).

The datagram machinery here is shared with the ``unix`` source, which differs only in the
socket family and address.
"""

from __future__ import annotations

import socket
import time
from abc import abstractmethod
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from edgefleet.agent.sources.base import BaseSourceConfig, Sink
from edgefleet.agent.sources.framing import Decoded, FrameDecoder, FrameFormat
from edgefleet.agent.sources.hub import HubSource, SourceHub
from edgefleet.types import FloatArray

__all__ = ["DatagramSource", "FramedSourceConfig", "UdpSource", "UdpSourceConfig"]

MAX_DATAGRAM = 65535


class FramedSourceConfig(BaseSourceConfig):
    """Keys shared by sources that decode frames: socket datagrams and MQTT messages."""

    channels: int = Field(ge=1, le=4096, description="values per sample; other counts are refused")
    format: FrameFormat = Field(default="json", description="'json' lines or 'packed' float32 records")
    timestamped: bool = Field(
        default=False, description="packed records start with a float64 epoch-seconds timestamp"
    )


class UdpSourceConfig(FramedSourceConfig):
    type: Literal["udp"] = "udp"
    host: str = Field(default="127.0.0.1", description="address to bind; 0.0.0.0 listens on all interfaces")
    port: int = Field(ge=0, le=65535, description="UDP port to bind (0 picks a free one)")
    receive_buffer_bytes: int | None = Field(
        default=None, ge=4096, description="SO_RCVBUF; raise it for bursty senders"
    )


F = TypeVar("F", bound=FramedSourceConfig)


class DatagramSource(HubSource[F]):
    """Binds a datagram socket and decodes every datagram into samples, on the source hub."""

    MAX_DATAGRAMS_PER_TURN = 1024  # then the hub serves the others; the rest waits in the socket

    def __init__(self, config: F, sink: Sink) -> None:
        super().__init__(config, sink)
        self._decoder = FrameDecoder(config.channels, config.format, timestamped=config.timestamped)
        self._sock: socket.socket | None = None
        self._hub_ref: SourceHub | None = None

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def bound(self) -> bool:
        """True while the socket is bound and being read."""
        return self._sock is not None

    @abstractmethod
    def _open_socket(self) -> socket.socket:
        """A bound datagram socket."""

    def _open(self, hub: SourceHub, now: float) -> float | None:
        sock = self._open_socket()
        sock.setblocking(False)
        hub.add_reader(sock, self._readable)
        self._sock, self._hub_ref = sock, hub
        return None  # driven by the socket, not by a timer

    def _shutdown(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._hub_ref is not None:
            self._hub_ref.remove_reader(sock)
        sock.close()
        self._after_close()

    def _readable(self) -> None:
        """Read every datagram queued on the socket; hand all their good samples over in one block."""
        sock = self._sock
        if sock is None:
            return
        received_at = time.time()
        samples: list[FloatArray] = []
        stamps: list[npt.NDArray[np.float64]] = []
        try:
            for _ in range(self.MAX_DATAGRAMS_PER_TURN):
                try:
                    payload = sock.recv(MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    break
                decoded = self._decode(payload, received_at)
                if decoded.samples.shape[0]:
                    samples.append(decoded.samples)
                    stamps.append(decoded.timestamps)
        except OSError as exc:  # the socket broke: closed and opened again after restart_delay_s
            if self._hub_ref is not None:
                self._failed(self._hub_ref, exc)
        finally:
            if samples:
                if len(samples) == 1:
                    self._emit(samples[0], stamps[0])
                else:
                    self._emit(np.concatenate(samples), np.concatenate(stamps))

    def _decode(self, payload: bytes, received_at: float) -> Decoded:
        self._count_frame()
        decoded: Decoded = self._decoder.decode(payload, received_at)
        if decoded.bad:
            self._reject(decoded.bad, "; ".join(decoded.reasons) or "unreadable frame")
        return decoded

    def _after_close(self) -> None:
        """Clean up after the socket is closed (the unix source removes its socket file)."""


class UdpSource(DatagramSource[UdpSourceConfig]):
    type_key = "udp"
    config_model = UdpSourceConfig

    def __init__(self, config: UdpSourceConfig, sink: Sink) -> None:
        super().__init__(config, sink)
        self._bound_port: int | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the socket is bound, once it is (the real port when ``port = 0``)."""
        return None if self._bound_port is None else (self.config.host, self._bound_port)

    def _open_socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if self.config.receive_buffer_bytes:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.config.receive_buffer_bytes)
            sock.bind((self.config.host, self.config.port))
        except OSError as exc:
            sock.close()
            raise OSError(
                f"cannot bind udp {self.config.host}:{self.config.port}: {exc.strerror or exc}"
            ) from exc
        self._bound_port = int(sock.getsockname()[1])
        return sock
