"""``unix``: samples arriving as datagrams on a Unix domain socket (``SOCK_DGRAM``).

Local sensor daemons write to the socket path; nothing leaves the machine. A stale
socket file left by a previous run is replaced; a path holding anything else is refused.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Literal

from pydantic import Field

from edgefleet.agent.sources.udp import DatagramSource, FramedSourceConfig

__all__ = ["UnixSource", "UnixSourceConfig"]


class UnixSourceConfig(FramedSourceConfig):
    type: Literal["unix"] = "unix"
    path: Path = Field(description="socket file to bind; relative paths are relative to the config file")
    mode: int = Field(
        default=0o660, ge=0, le=0o777, description="permissions of the socket file (who may send)"
    )


class UnixSource(DatagramSource[UnixSourceConfig]):
    type_key = "unix"
    config_model = UnixSourceConfig

    def _open_socket(self) -> socket.socket:
        path = self.config.path
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise FileExistsError(f"{path} exists and is not a socket; refusing to replace it")
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(str(path))
            os.chmod(path, self.config.mode)
        except OSError:
            sock.close()
            raise
        return sock

    def _after_close(self) -> None:
        try:
            if stat.S_ISSOCK(self.config.path.lstat().st_mode):
                self.config.path.unlink()
        except FileNotFoundError:
            pass
