"""``StoreConfig``: where the device store lives, how durable and how large it may grow.

It is the ``store`` section of the agent configuration. Every field is described, because
``edgefleet config`` renders these descriptions as the reference documentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["DEFAULT_STORE_PATH", "StoreConfig", "Synchronous"]

DEFAULT_STORE_PATH = Path("/var/lib/edgefleet/store.db")

Synchronous = Literal["OFF", "NORMAL", "FULL"]

MiB = 1024 * 1024


class StoreConfig(BaseModel):
    """The agent's local SQLite store: one WAL-mode file under the state directory."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(
        default=DEFAULT_STORE_PATH,
        description="The SQLite database file. Its directory is created if missing; the -wal and -shm "
        "files live beside it, so the directory must be writable.",
    )
    synchronous: Synchronous = Field(
        default="NORMAL",
        description="SQLite PRAGMA synchronous in WAL mode. "
        "FULL: the WAL is fsynced at every commit, so a committed batch survives a power cut. "
        "NORMAL (default): fsync only at checkpoints; a crash of the agent (even kill -9) loses "
        "nothing and the file never corrupts, but a power cut may roll back the batches committed "
        "since the last checkpoint (the file stays consistent). "
        "OFF: no fsync at all; safe against an agent crash, but a power cut or kernel panic may "
        "corrupt the database. Only for throwaway stores on tmpfs. "
        "Whatever the mode, the results not yet committed (at most commit_interval_s of them) are "
        "lost by a crash or a power cut.",
    )
    commit_interval_s: float = Field(
        default=15.0,
        ge=0,
        le=60,
        description="The running agent commits results at most once per this many seconds (sooner "
        "when a full write batch is waiting), and outbox acknowledgements and health metrics ride "
        "on the same transaction: at sensor rates each commit rewrites a few 4 KiB pages whatever "
        "it holds, so fewer commits mean less flash wear. Results not yet committed - at most this "
        "many seconds of them - are lost if the agent is killed (kill -9, OOM) or the power fails; "
        "SIGTERM, reload and shutdown commit them. 0 commits every result as it comes.",
    )
    max_bytes: int = Field(
        default=256 * MiB,
        ge=64 * 1024,
        description="Soft cap on the database size in bytes. Above it, retention deletes rows that "
        "were already synced, oldest first, and shrinks the file. Unsynced rows are kept.",
    )
    hard_max_bytes: int = Field(
        default=512 * MiB,
        ge=64 * 1024,
        description="Hard cap in bytes (must be >= max_bytes). Above it, retention also evicts unsynced "
        "rows, oldest first; each eviction is counted and raised as a 'store.evicted_unsynced' event. "
        "Keep it below the free space of the state partition so the disk never fills.",
    )
    max_age_s: float | None = Field(
        default=30 * 24 * 3600.0,
        gt=0,
        description="Synced results, metrics and events older than this many seconds are deleted. "
        "None keeps them until a size cap is reached. Unsynced results are never deleted for age.",
    )
    wal_autocheckpoint_pages: int = Field(
        default=1000,
        ge=0,
        description="Checkpoint the WAL into the database once it holds this many pages "
        "(SQLite's wal_autocheckpoint). 0 disables them: retention then checkpoints once every "
        "retention_interval_s, besides explicit Store.checkpoint() calls. Larger values batch more "
        "writes per checkpoint (less flash "
        "wear) at the cost of a larger -wal file and longer recovery after a crash.",
    )
    journal_size_limit_bytes: int = Field(
        default=16 * MiB,
        ge=0,
        description="After a checkpoint the -wal file is truncated down to at most this many bytes, "
        "so a burst never leaves a large WAL behind.",
    )
    retention_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often retention runs. Writes trigger it when it is due, so the agent needs "
        "no timer of its own; Store.enforce_retention() runs it at once.",
    )
    retention_headroom: float = Field(
        default=0.1,
        ge=0.0,
        lt=0.9,
        description="When a cap is exceeded, retention deletes down to cap x (1 - headroom), so it "
        "does not run (and vacuum) again for every new batch.",
    )
    vacuum_min_free_bytes: int = Field(
        default=4 * MiB,
        ge=0,
        description="After age-based deletions, free pages are returned to the filesystem "
        "(incremental vacuum) only once they exceed this many bytes; below it SQLite reuses them, "
        "which writes less. Evictions over a size cap always vacuum.",
    )
    busy_timeout_ms: int = Field(
        default=5000,
        ge=0,
        description="How long a write waits for another connection's lock (the CLI, a backup) "
        "before failing.",
    )
    write_chunk_rows: int = Field(
        default=256,
        ge=1,
        description="Results are sent to SQLite in multi-row INSERT statements of at most this "
        "many rows (fewer where SQLite allows fewer bound values), all inside one transaction; "
        "a remainder goes in statements of power-of-two sizes, so few distinct ones are prepared.",
    )
    store_raw_outputs: bool = Field(
        default=False,
        description="Keep each result's raw output vector (8 bytes per value) besides label and "
        "score. Off by default: it multiplies the store size by the number of classes.",
    )

    @model_validator(mode="after")
    def _hard_cap_not_below_soft_cap(self) -> StoreConfig:
        if self.hard_max_bytes < self.max_bytes:
            raise ValueError(
                f"hard_max_bytes ({self.hard_max_bytes}) must be >= max_bytes ({self.max_bytes}); "
                "raise hard_max_bytes or lower max_bytes"
            )
        return self
