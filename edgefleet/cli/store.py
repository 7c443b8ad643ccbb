"""``edgefleet store``: back up, restore, check, vacuum and inspect an edgefleet SQLite database.

Works on the device store and on the controller's SQLite database alike. The database is named
with ``--db PATH`` or found through the agent config (``--config FILE``, its ``store.path``);
with neither, the default device store path is used.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgefleet.agent.store import (
    SCHEMA_VERSION,
    Store,
    StoreConfig,
    backup,
    check_database,
    restore,
)
from edgefleet.errors import StoreError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "store",
        help="back up, restore, check or vacuum the local SQLite store",
        description="Maintain an edgefleet SQLite database (the device store or the controller's).",
    )
    commands = parser.add_subparsers(dest="store_command", metavar="SUBCOMMAND")

    backup_cmd = commands.add_parser(
        "backup",
        help="consistent online copy, safe while the agent is writing",
        description="Copy a live SQLite store with SQLite's online backup API: the copy is consistent "
        "even while the agent is writing. Restore it with `edgefleet store restore`.",
    )
    _add_db_options(backup_cmd)
    backup_cmd.add_argument("dest", type=Path, help="backup file, or a directory to put a dated copy in")
    backup_cmd.add_argument("--force", action="store_true", help="overwrite an existing backup file")
    backup_cmd.set_defaults(handler=_backup)

    restore_cmd = commands.add_parser(
        "restore", help="replace a database with a backup (the agent must be stopped)"
    )
    restore_cmd.add_argument("src", type=Path, help="backup file made by `edgefleet store backup`")
    _add_db_options(restore_cmd)
    restore_cmd.add_argument(
        "--force",
        action="store_true",
        help="replace an existing database, even of a newer schema (never one in use)",
    )
    restore_cmd.set_defaults(handler=_restore)

    check_cmd = commands.add_parser(
        "check", help="integrity check and schema version, without changing the file (exit 1 if bad)"
    )
    _add_db_options(check_cmd)
    check_cmd.add_argument("--json", action="store_true", help="print JSON")
    check_cmd.set_defaults(handler=_check)

    vacuum_cmd = commands.add_parser(
        "vacuum", help="give free pages back to the filesystem (and recount rows deleted outside edgefleet)"
    )
    _add_db_options(vacuum_cmd)
    vacuum_cmd.add_argument(
        "--full", action="store_true", help="rewrite the whole file (needs as much free disk as the store)"
    )
    vacuum_cmd.add_argument(
        "--retention", action="store_true", help="run retention (age and size caps) before vacuuming"
    )
    vacuum_cmd.set_defaults(handler=_vacuum)

    stats_cmd = commands.add_parser("stats", help="size, rows and outbox backlog of a store")
    _add_db_options(stats_cmd)
    stats_cmd.add_argument("--json", action="store_true", help="print JSON")
    stats_cmd.set_defaults(handler=_stats)


def _add_db_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--db", type=Path, metavar="PATH", help="the SQLite database file")
    where.add_argument("--config", type=Path, metavar="FILE", help="agent config; uses its store.path")


def _store_config(args: argparse.Namespace) -> StoreConfig:
    if args.config is not None:
        # Imported here: the agent config pulls in every source plugin, which `--db` never needs.
        from edgefleet.agent.config import load_config

        return load_config(args.config).store
    if args.db is not None:
        return StoreConfig(path=args.db)
    return StoreConfig()


def _db_path(args: argparse.Namespace) -> Path:
    return Path(_store_config(args).path)


def _backup(args: argparse.Namespace) -> int:
    report = backup(_db_path(args), args.dest, overwrite=args.force)
    version = "" if report.schema_version is None else f", schema version {report.schema_version}"
    print(
        f"backed up {report.source} -> {report.destination} "
        f"({report.size_bytes} bytes, {report.kind}{version}, {report.seconds:.2f} s)"
    )
    return 0


def _restore(args: argparse.Namespace) -> int:
    dest = _db_path(args)
    info = restore(args.src, dest, force=args.force)
    version = "" if info.schema_version is None else f", schema version {info.schema_version}"
    print(f"restored {args.src} -> {dest} ({info.size_bytes} bytes, {info.kind}{version})")
    if info.kind == "device-store" and (info.schema_version or 0) < SCHEMA_VERSION:
        print(f"  the agent migrates it to schema version {SCHEMA_VERSION} when it next opens it")
    return 0


def _check(args: argparse.Namespace) -> int:
    path = _db_path(args)
    info, problems = check_database(path)
    if args.json:
        print(
            json.dumps(
                {**asdict(info), "ok": not problems, "problems": problems, "supported": SCHEMA_VERSION}
            )
        )
        return 0 if not problems else 1
    version = "none" if info.schema_version is None else str(info.schema_version)
    status = "ok" if not problems else "DAMAGED"
    print(f"{path}: {status} ({info.kind}, schema version {version}, {info.size_bytes} bytes)")
    if (
        info.kind == "device-store"
        and info.schema_version is not None
        and info.schema_version < SCHEMA_VERSION
    ):
        print(
            f"  older than this edgefleet's schema {SCHEMA_VERSION}: migrated forward when the agent opens it"
        )
    for problem in problems:
        print(f"  - {problem}")
    for table, (kept, actual) in info.miscounted.items():
        print(
            f"  note: {table} holds {actual} rows but its kept count says {kept} (rows deleted outside "
            "edgefleet?); hint: `edgefleet store vacuum` recounts them"
        )
    if problems:
        print("  hint: restore a backup with `edgefleet store restore BACKUP --db PATH --force`")
    return 0 if not problems else 1


def _open_existing(args: argparse.Namespace) -> Store:
    config = _store_config(args)
    if not Path(config.path).is_file():
        raise StoreError(
            f"no store at {config.path}",
            path=str(config.path),
            hint="pass --db PATH or --config FILE naming an existing store",
        )
    return Store.open(config.path, config)


def _vacuum(args: argparse.Namespace) -> int:
    with _open_existing(args) as store:
        if args.retention:
            report = store.enforce_retention()
            print(
                f"retention: deleted {report.deleted_total} rows "
                f"(age {report.deleted_by_age}, size {report.deleted_for_size}, "
                f"unsynced evicted {report.evicted_unsynced})"
            )
        for table, (kept, actual) in store.recount_rows().items():
            print(f"recounted {table}: {actual} rows (the kept count said {kept})")
        saved = store.vacuum(full=args.full)
        size = store.stats().size_bytes
    print(f"vacuumed {store.path}: {saved} bytes returned to the filesystem, now {size} bytes")
    return 0


def _running_agent_writes(args: argparse.Namespace, db: Path) -> dict[str, Any] | None:
    """The device writes the agent running on ``db`` reports in its status file, if one runs.

    Another process's I/O counters cannot be read from here (and need not be readable by
    this user): the agent samples its own ``/proc/self/io`` every health interval.
    """
    from edgefleet.agent.status import STATUS_FILENAME, StatusUnavailableError, assess_status, read_status

    if args.config is not None:
        from edgefleet.agent.config import load_config

        status_path = load_config(args.config).device.state_dir / STATUS_FILENAME
    else:
        status_path = db.parent / STATUS_FILENAME  # the default layout: store in the state dir
    try:
        status = read_status(status_path)
    except StatusUnavailableError:
        return None
    facts = status.get("store")
    if not isinstance(facts, dict) or not facts.get("path"):
        return None
    if Path(str(facts["path"])).resolve() != db.resolve() or not assess_status(status).running:
        return None
    return {
        "pid": status.get("pid"),
        "status_file": str(status_path),
        "updated_at": status.get("updated_at"),
        "process_bytes_written_per_hour": facts.get("process_bytes_written_per_hour"),
        "process_bytes_written_total": facts.get("process_bytes_written_total"),
        "store_bytes_written_per_hour": facts.get("bytes_written_per_hour"),
    }


def _per_hour(value: object) -> str:
    return f"{value / 2**20:.2f} MiB/h" if isinstance(value, int | float) else "not sampled yet"


def _stats(args: argparse.Namespace) -> int:
    with _open_existing(args) as store:
        stats = store.stats()
    agent = _running_agent_writes(args, Path(stats.path))
    if args.json:
        # This command's own writes say nothing about flash wear: report the running agent's.
        found = agent is not None
        print(
            json.dumps(
                {
                    **asdict(stats),
                    "bytes_written_per_hour": agent["process_bytes_written_per_hour"] if agent else None,
                    "bytes_written_total": agent["process_bytes_written_total"] if agent else None,
                    "bytes_written_source": "agent-process-io" if found else "no-running-agent",
                    "running_agent": agent,
                }
            )
        )
        return 0
    print(f"{stats.path}: schema version {stats.schema_version}")
    print(
        f"  size {stats.size_bytes} bytes (wal {stats.wal_bytes}), {stats.page_count} pages of "
        f"{stats.page_size}, {stats.freelist} free"
    )
    print("  rows: " + ", ".join(f"{table} {n}" for table, n in stats.rows.items()))
    backlog = ", ".join(f"{kind} {n}" for kind, n in stats.outbox_backlog.items()) or "empty"
    print(f"  outbox backlog: {backlog}")
    print(f"  unsynced results evicted over the hard cap (ever): {stats.evicted_unsynced_total}")
    if agent is None:
        print("  device writes: no agent running on this store (its status file reports them)")
    else:
        print(
            f"  device writes by the running agent (pid {agent['pid']}): "
            f"{_per_hour(agent['process_bytes_written_per_hour'])} (the store's own transactions "
            f"{_per_hour(agent['store_bytes_written_per_hour'])})"
        )
    return 0
