"""Opening the store's SQLite file: the lock sidecar, pragmas, migration, error translation."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

from edgefleet.agent.store.config import StoreConfig
from edgefleet.agent.store.migrations import migrate
from edgefleet.errors import StoreError

__all__ = ["StoreFullError", "connect", "lock_path_for", "lock_shared", "translate_error"]


class StoreFullError(StoreError):
    """SQLite reported the disk (or its page limit) full during a write."""


def lock_path_for(path: Path) -> Path:
    """The sidecar file every open Store holds a shared flock on; restore takes it exclusively."""
    return path.with_name(path.name + ".lock")


def lock_shared(db_path: Path) -> int:
    """Create the store's directory and take the shared sidecar lock; returns the lock's fd."""
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(lock_path_for(db_path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StoreError(
            f"cannot create the store at {db_path}: {exc.strerror}",
            path=str(db_path),
            hint="check that the state directory exists and is writable by the agent's user, "
            "or set store.path",
        ) from exc
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(lock_fd)
        raise StoreError(
            f"store {db_path} is being restored by another process",
            path=str(db_path),
            hint="wait for `edgefleet store restore` to finish, then start again",
        ) from exc
    return lock_fd


def connect(path: Path, config: StoreConfig) -> sqlite3.Connection:
    """An autocommit-mode connection with the store's pragmas, its schema migrated forward."""
    conn = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=config.busy_timeout_ms / 1000
    )
    try:
        if int(conn.execute("PRAGMA page_count").fetchone()[0]) == 0:
            # Only settable before the first table exists; lets retention shrink the file.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(
                f"store {path} could not be switched to WAL mode (journal_mode is {mode})",
                path=str(path),
                hint="put the store on a local filesystem that supports shared memory (not a network mount)",
            )
        conn.execute(f"PRAGMA synchronous = {config.synchronous}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(config.wal_autocheckpoint_pages)}")
        conn.execute(f"PRAGMA journal_size_limit = {int(config.journal_size_limit_bytes)}")
        migrate(conn, path=str(path))
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(
            f"cannot open the store at {path}: {exc}",
            path=str(path),
            hint="if the file is not an edgefleet store or is damaged, move it aside or restore "
            "a backup with `edgefleet store restore`",
        ) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def translate_error(what: str, path: Path, exc: sqlite3.Error) -> StoreError:
    """A StoreError (StoreFullError for a full disk) with a hint fitting the SQLite error."""
    text = str(exc)
    if "full" in text:
        return StoreFullError(
            f"cannot {what} in store {path}: {text}",
            path=str(path),
            hint="free space on the state partition, or lower store.hard_max_bytes below the free space",
        )
    if "locked" in text or "busy" in text:
        hint = "another process holds the store's write lock; raise store.busy_timeout_ms or stop it"
    elif "readonly" in text:
        hint = "make the store file and its directory writable by the agent's user"
    else:
        hint = "run `edgefleet store check` on it; restore a backup if it reports damage"
    return StoreError(f"cannot {what} in store {path}: {text}", path=str(path), hint=hint)
