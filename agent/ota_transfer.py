"""Resumable, chunk-hashed bundle download state on the device (the transfer's storage half).

The controller describes a bundle file as a :class:`ChunkPlan` (size, chunk size, the sha256 of
every chunk and of the whole file); the device writes each chunk it receives at its offset in
``<dir>/bundle.part`` and records it in ``<dir>/received.json`` (write, fsync, rename), so after a
disconnect or a reboot :meth:`PartialDownload.missing` lists only what it still lacks.
Chunks may arrive in any order; a duplicate is ignored; a chunk of the wrong length (truncated)
or with the wrong sha256 is refused; free disk is checked before the first byte is written; the
finished file is accepted only when its whole sha256 matches.

The MQTT and HTTP exchange that fills it is agent/ota_client.py; the controller's side is
controller/ota_hosting.py (docs/ota.md, "Transfer").
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgefleet.errors import EdgefleetError

__all__ = [
    "ChunkPlan",
    "DownloadError",
    "PartialDownload",
    "chunks_of",
    "plan_for_file",
    "write_error",
    "write_json_atomic",
]

_PART = "bundle.part"
_RECEIVED = "received.json"
_PLAN = "plan.json"
_DONE = "bundle.tar"
# Room left beyond the bundle itself: the extraction and the store still need to write.
_DISK_MARGIN_BYTES = 16 * 1024 * 1024


class DownloadError(EdgefleetError):
    """A chunk or a finished download was refused; ``reason`` is short and stable for events."""

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


class ChunkPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=1)
    chunk_bytes: int = Field(ge=1)
    chunks: tuple[str, ...] = Field(description="sha256 of each chunk, in order")

    @model_validator(mode="after")
    def _count(self) -> ChunkPlan:
        expected = -(-self.size_bytes // self.chunk_bytes)
        if len(self.chunks) != expected:
            raise ValueError(
                f"{self.size_bytes} bytes in chunks of {self.chunk_bytes} make {expected} chunks;"
                f" the plan lists {len(self.chunks)}"
            )
        return self

    def chunk_length(self, index: int) -> int:
        return min(self.chunk_bytes, self.size_bytes - index * self.chunk_bytes)


def plan_for_file(path: Path, chunk_bytes: int) -> ChunkPlan:
    """The plan the controller offers for ``path``."""
    whole = hashlib.sha256()
    chunks: list[str] = []
    with path.open("rb") as fh:
        while block := fh.read(chunk_bytes):
            whole.update(block)
            chunks.append(hashlib.sha256(block).hexdigest())
    return ChunkPlan(
        sha256=whole.hexdigest(),
        size_bytes=path.stat().st_size,
        chunk_bytes=chunk_bytes,
        chunks=tuple(chunks),
    )


def write_json_atomic(path: Path, data: object) -> None:
    """Write, fsync, rename: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        # A full disk fails the write half-way: the half file must not take the space it lacks.
        tmp.unlink(missing_ok=True)
        raise


def write_error(what: str, exc: OSError) -> DownloadError:
    """``disk_full`` for ENOSPC (and EDQUOT, a full quota is a full disk to us), else ``write_failed``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DownloadError(
            f"{what}: {exc}",
            reason="disk_full",
            hint="free space on the device's OTA download directory, then offer the bundle again",
        )
    return DownloadError(f"{what}: {exc}", reason="write_failed", hint="check the OTA download directory")


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    # A nearly full disk may take part of a write; the rest then fails with ENOSPC.
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


@dataclass
class PartialDownload:
    directory: Path
    plan: ChunkPlan

    @classmethod
    def open(
        cls,
        directory: Path,
        plan: ChunkPlan,
        *,
        free_bytes: int | None = None,
        margin_bytes: int = _DISK_MARGIN_BYTES,
    ) -> PartialDownload:
        """Resume the download in ``directory`` (or start it: disk checked first).

        ``free_bytes`` overrides what the disk reports (tests simulate a full disk with it);
        ``margin_bytes`` must stay free beside the bundle (``[ota] min_free_bytes``).

        A directory holding a different plan is started afresh: its chunks belong to another file.
        """
        directory.mkdir(parents=True, exist_ok=True)
        plan_path = directory / _PLAN
        try:
            same = ChunkPlan.model_validate_json(plan_path.read_text(encoding="utf-8")) == plan
        except (OSError, ValueError):
            same = False
        if not same:
            for name in (_PART, _RECEIVED, _DONE):
                (directory / name).unlink(missing_ok=True)
            free = shutil.disk_usage(directory).free if free_bytes is None else free_bytes
            needed = plan.size_bytes + margin_bytes
            if free < needed:
                raise DownloadError(
                    f"not enough free disk for the bundle: {free} bytes free in {directory},"
                    f" {needed} needed ({plan.size_bytes} bundle + {margin_bytes} margin)",
                    reason="disk_full",
                    hint="free space on the device's state directory, then offer the bundle again",
                )
            try:
                write_json_atomic(plan_path, plan.model_dump(mode="json"))
            except OSError as exc:
                raise write_error(f"cannot write {plan_path}", exc) from None
        return cls(directory, plan)

    def received(self) -> set[int]:
        try:
            data = json.loads((self.directory / _RECEIVED).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return set()
        return {i for i in data if isinstance(i, int) and 0 <= i < len(self.plan.chunks)}

    def missing(self) -> list[int]:
        have = self.received()
        return [i for i in range(len(self.plan.chunks)) if i not in have]

    def accept(self, index: int, data: bytes) -> bool:
        """Write chunk ``index``; False for a duplicate, DownloadError for a bad chunk."""
        if not 0 <= index < len(self.plan.chunks):
            raise DownloadError(
                f"chunk {index} is outside the plan's {len(self.plan.chunks)} chunks", reason="bad_index"
            )
        have = self.received()
        if index in have:
            return False
        expected = self.plan.chunk_length(index)
        if len(data) != expected:
            raise DownloadError(
                f"chunk {index} is {len(data)} bytes; the plan says {expected}", reason="truncated_chunk"
            )
        digest = hashlib.sha256(data).hexdigest()
        if digest != self.plan.chunks[index]:
            raise DownloadError(
                f"chunk {index} has sha256 {digest[:12]}...; the plan says {self.plan.chunks[index][:12]}...",
                reason="bad_chunk_hash",
            )
        part = self.directory / _PART
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                _pwrite_all(fd, data, index * self.plan.chunk_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise write_error(f"cannot write chunk {index}", exc) from None
        # The chunk is on disk before it is recorded: a power cut can only make it be asked again.
        try:
            write_json_atomic(self.directory / _RECEIVED, sorted(have | {index}))
        except OSError as exc:
            raise write_error(f"cannot record chunk {index} in {_RECEIVED}", exc) from None
        return True

    def complete(self) -> Path:
        """The finished file (whole sha256 checked), renamed to ``bundle.tar``; DownloadError otherwise."""
        done = self.directory / _DONE
        if done.is_file():
            return done
        missing = self.missing()
        if missing:
            raise DownloadError(
                f"{len(missing)} chunks still missing, first {missing[0]}", reason="incomplete"
            )
        part = self.directory / _PART
        digest = _sha256(part)
        if digest != self.plan.sha256:
            # Every chunk matched but the whole does not: start over rather than trust any of it.
            for name in (_PART, _RECEIVED):
                (self.directory / name).unlink(missing_ok=True)
            raise DownloadError(
                f"the assembled bundle has sha256 {digest[:12]}...;"
                f" the offer says {self.plan.sha256[:12]}...",
                reason="bad_sha256",
            )
        os.replace(part, done)
        return done


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def chunks_of(path: Path, chunk_bytes: int, indices: Iterable[int]) -> dict[int, bytes]:
    """Chunk bytes by index (what the controller sends for a device's request)."""
    out: dict[int, bytes] = {}
    with path.open("rb") as fh:
        for i in indices:
            fh.seek(i * chunk_bytes)
            out[i] = fh.read(chunk_bytes)
    return out
