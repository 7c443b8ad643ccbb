"""Backup, restore and check of any edgefleet SQLite database (device store or controller DB).

``backup`` uses SQLite's online backup API in a single step, i.e. inside one read transaction:
the copy is a consistent snapshot even while the agent keeps writing (WAL readers never block
writers). ``restore`` refuses to replace a database that anything holds open, or to install a
device store newer than this edgefleet.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgefleet.agent.store.connection import lock_path_for
from edgefleet.agent.store.migrations import SCHEMA_VERSION, read_schema_version
from edgefleet.agent.store.rowcounts import COUNTED_SINCE, miscounted
from edgefleet.errors import StoreError

__all__ = ["BackupReport", "DatabaseInfo", "backup", "check_database", "describe_database", "restore"]

_STORE_TABLES = {"results", "outbox", "schema_version"}


@dataclass
class DatabaseInfo:
    path: str
    kind: str
    """"device-store" (an agent store) or "sqlite" (any other database, e.g. the controller's)."""
    schema_version: int | None
    size_bytes: int
    tables: list[str]
    miscounted: dict[str, tuple[int, int]] = field(default_factory=dict)
    """History tables whose kept row count is wrong: ``{table: (kept, actual)}`` (see rowcounts)."""


@dataclass
class BackupReport:
    source: str
    destination: str
    size_bytes: int
    kind: str
    schema_version: int | None
    seconds: float


def _connect_existing(path: Path, *, what: str) -> sqlite3.Connection:
    if not path.is_file():
        raise StoreError(
            f"{what} {path} does not exist or is not a file",
            path=str(path),
            hint="pass the path of an SQLite database file (store.path in the agent config)",
        )
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None, timeout=5
        )
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{what} {path} is not a readable SQLite database: {exc}",
            path=str(path),
            hint="check the path; a damaged store can be replaced with `edgefleet store restore`",
        ) from exc
    return conn


def _info(conn: sqlite3.Connection, path: Path) -> DatabaseInfo:
    tables = sorted(
        str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    )
    is_store = set(tables) >= _STORE_TABLES
    version = read_schema_version(conn) if "schema_version" in tables else None
    size = sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    return DatabaseInfo(str(path), "device-store" if is_store else "sqlite", version, size, tables)


def describe_database(path: str | os.PathLike[str]) -> DatabaseInfo:
    db_path = Path(path)
    conn = _connect_existing(db_path, what="database")
    try:
        return _info(conn, db_path)
    finally:
        conn.close()


def check_database(path: str | os.PathLike[str]) -> tuple[DatabaseInfo, list[str]]:
    """Integrity check without migrating or writing: (info, problems); no problems means sound."""
    db_path = Path(path)
    conn = _connect_existing(db_path, what="database")
    try:
        info = _info(conn, db_path)
        lines = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
        if lines == ["ok"] and info.kind == "device-store" and (info.schema_version or 0) >= COUNTED_SINCE:
            info.miscounted = miscounted(conn)
    except sqlite3.DatabaseError as exc:
        return DatabaseInfo(str(db_path), "unknown", None, db_path.stat().st_size, []), [str(exc)]
    finally:
        conn.close()
    problems = [] if lines == ["ok"] else lines
    if not info.tables:
        problems.append("the database is empty (no tables): not a store or database written by edgefleet")
    if (
        info.kind == "device-store"
        and info.schema_version is not None
        and info.schema_version > SCHEMA_VERSION
    ):
        problems.append(
            f"schema version {info.schema_version} is newer than {SCHEMA_VERSION}, the newest this "
            "edgefleet understands (upgrade edgefleet)"
        )
    return info, problems


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(src: sqlite3.Connection, dest: Path) -> None:
    """Snapshot ``src`` into a new self-contained file at ``dest`` (rollback journal, no -wal)."""
    out = sqlite3.connect(str(dest), isolation_level=None)
    try:
        src.backup(out)  # pages=-1: the whole copy in one step, one read transaction
        out.execute("PRAGMA journal_mode = DELETE").fetchone()
    finally:
        out.close()
    with open(dest, "rb") as handle:
        os.fsync(handle.fileno())


def backup(
    src_path: str | os.PathLike[str], dest_path: str | os.PathLike[str], *, overwrite: bool = False
) -> BackupReport:
    """Copy the database at ``src_path`` to ``dest_path`` consistently, even while it is written.

    ``dest_path`` may be a directory: the copy is then named ``<stem>-<UTC time>.db`` inside it.
    """
    started = time.monotonic()
    src = Path(src_path)
    dest = Path(dest_path)
    if dest.is_dir():
        dest = dest / f"{src.stem}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.db"
    if dest.exists() and not overwrite:
        raise StoreError(
            f"backup destination {dest} already exists",
            path=str(dest),
            hint="choose a new name or pass --force",
        )
    if dest.resolve() == src.resolve():
        raise StoreError(f"backup destination {dest} is the database itself", hint="choose another path")
    conn = _connect_existing(src, what="database to back up")
    partial = dest.with_name(dest.name + ".partial")
    try:
        info = _info(conn, src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        _copy(conn, partial)
        os.replace(partial, dest)
        _fsync_dir(dest.parent)
    except OSError as exc:
        raise StoreError(
            f"cannot write the backup {dest}: {exc.strerror or exc}",
            path=str(dest),
            hint="check free space and permissions of the destination directory",
        ) from exc
    finally:
        conn.close()
        partial.unlink(missing_ok=True)
    return BackupReport(
        str(src), str(dest), dest.stat().st_size, info.kind, info.schema_version, time.monotonic() - started
    )


def _refuse_if_open(dest: Path) -> None:
    """Raise unless nothing has ``dest`` open: probes for an exclusive SQLite lock, never waits.

    In WAL mode every open connection keeps a shared lock on the database file, so an idle agent
    is detected too (unlike with a rollback-journal database, where only active work is).
    """
    probe = sqlite3.connect(str(dest), isolation_level=None, timeout=0)
    try:
        probe.execute("PRAGMA locking_mode = EXCLUSIVE").fetchone()
        probe.execute("BEGIN EXCLUSIVE")
        probe.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        raise StoreError(
            f"refusing to restore over {dest}: it is open in another process or connection ({exc})",
            path=str(dest),
            hint="stop the agent or controller first (systemctl stop edgefleet-agent), then restore",
        ) from exc
    except sqlite3.DatabaseError:
        pass  # a damaged file is exactly what restore is for
    finally:
        probe.close()


def restore(
    backup_path: str | os.PathLike[str], dest_path: str | os.PathLike[str], *, force: bool = False
) -> DatabaseInfo:
    """Replace the database at ``dest_path`` with the backup at ``backup_path``.

    Refused: a backup that fails its integrity check; a device-store backup newer than this
    edgefleet; a destination anything holds open. Needs ``force`` to replace an existing file,
    and to replace a database of a newer schema or of another kind than the backup.
    """
    src = Path(backup_path)
    dest = Path(dest_path)
    info = describe_database(src)
    if info.kind == "device-store" and (info.schema_version or 0) > SCHEMA_VERSION:
        raise StoreError(
            f"backup {src} has store schema version {info.schema_version}, newer than the "
            f"{SCHEMA_VERSION} this edgefleet understands",
            path=str(src),
            hint="upgrade edgefleet before restoring this backup",
        )
    _, problems = check_database(src)
    if problems:
        raise StoreError(
            f"backup {src} is damaged: {'; '.join(problems[:5])}",
            path=str(src),
            hint="use another backup",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(lock_path_for(dest), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise StoreError(
                f"refusing to restore over {dest}: an edgefleet process has the store open",
                path=str(dest),
                hint="stop the agent first (systemctl stop edgefleet-agent), then restore",
            ) from exc
        if dest.exists():
            _check_destination(dest, info, force=force)
        partial = dest.with_name(dest.name + ".restoring")
        conn = _connect_existing(src, what="backup")
        try:
            _copy(conn, partial)
            # A stale WAL beside the new file would be replayed into it: remove it first.
            for suffix in ("-wal", "-shm", "-journal"):
                dest.with_name(dest.name + suffix).unlink(missing_ok=True)
            os.replace(partial, dest)
            _fsync_dir(dest.parent)
        finally:
            conn.close()
            partial.unlink(missing_ok=True)
    finally:
        os.close(lock_fd)
    restored, problems = check_database(dest)
    if problems:
        raise StoreError(f"restored {dest} fails its integrity check: {problems[:5]}", path=str(dest))
    return restored


def _check_destination(dest: Path, incoming: DatabaseInfo, *, force: bool) -> None:
    _refuse_if_open(dest)
    try:
        current: DatabaseInfo | None = describe_database(dest)
    except StoreError:
        current = None  # unreadable or damaged: replacing it is the point
    if current is not None and not force:
        if current.kind != incoming.kind:
            raise StoreError(
                f"refusing to replace {dest} ({current.kind}) with a backup of a {incoming.kind}",
                path=str(dest),
                hint="check both paths; pass --force if this is really intended",
            )
        if (current.schema_version or 0) > (incoming.schema_version or 0):
            raise StoreError(
                f"refusing to replace {dest} (schema version {current.schema_version}) with an older "
                f"backup (schema version {incoming.schema_version})",
                path=str(dest),
                hint="pass --force to go back to the older backup anyway",
            )
    if not force:
        raise StoreError(
            f"refusing to overwrite the existing database {dest}",
            path=str(dest),
            hint="pass --force to replace it with the backup",
        )
