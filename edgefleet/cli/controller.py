"""``edgefleet controller``: run the cloud controller and manage its tokens, users and devices."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from edgefleet.errors import EdgefleetError

CONFIG_ENV = "EDGEFLEET_CONTROLLER_CONFIG"


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None,
        help=f"controller TOML file (default: ${CONFIG_ENV}, else built-in defaults)",
    )
    parser.add_argument("--database-url", help="override database.url (postgresql://... or sqlite:///path)")


def _load(args: argparse.Namespace) -> Any:
    from edgefleet.controller.config import load_controller_config

    overrides: dict[str, Any] = {}
    if getattr(args, "database_url", None):
        overrides["database.url"] = args.database_url
    for key in ("host", "port"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[f"http.{key}"] = value
    if getattr(args, "mqtt_port", None) is not None:
        overrides["mqtt.port"] = args.mqtt_port
    return load_controller_config(args.config, overrides=overrides)


def _open(args: argparse.Namespace) -> Any:
    from edgefleet.controller.dal import open_database

    return open_database(_load(args).database)


def _serve(args: argparse.Namespace) -> int:
    from edgefleet.controller.first_admin import create_first_admin, first_admin_notice
    from edgefleet.controller.service import ControllerService

    config = _load(args)
    if not args.quiet and logging.getLogger("edgefleet").level == logging.NOTSET:
        logging.getLogger("edgefleet").setLevel(logging.INFO)
    # A long-running service: every log line says when (UTC, ISO 8601), as journald readers expect.
    stamped = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    stamped.converter = time.gmtime
    for handler in logging.getLogger().handlers:
        handler.setFormatter(stamped)
    service = ControllerService(config)
    db = config.database.url or str(config.database.resolved_sqlite_path())
    url = f"http://{config.http.host}:{config.http.port}"
    print(
        f"edgefleet controller: {url} "
        f"(database {db.split('@')[-1]}, broker {config.mqtt.host}:{config.mqtt.port})",
        file=sys.stderr,
        flush=True,
    )
    admin = create_first_admin(service.database, config.auth)
    if admin is not None:
        print(first_admin_notice(admin, url), flush=True)
    service.run()
    return 0


def _infer(args: argparse.Namespace) -> int:
    import signal
    import threading

    from edgefleet.controller.inference.worker import InferencePool

    config = _load(args)
    if args.bundle is not None:
        config.inference.bundle = args.bundle
    if args.workers is not None:
        config.inference.workers = args.workers
    if config.inference.bundle is None:
        raise EdgefleetError(
            "no cloud bundle to serve",
            hint="set inference.bundle in the controller config or pass --bundle DIR",
        )
    if not args.quiet and logging.getLogger("edgefleet").level == logging.NOTSET:
        logging.getLogger("edgefleet").setLevel(logging.INFO)
    recorder = None
    if config.inference.keep_hard_examples:
        from edgefleet.controller.dal import open_database
        from edgefleet.controller.hard_examples import HardExampleRecorder

        recorder = HardExampleRecorder(open_database(config.database))
        recorder.start()
    pool = InferencePool(config.mqtt, config.inference, on_answered=recorder.record if recorder else None)
    db = config.database
    kept = f"in {(db.url or str(db.resolved_sqlite_path())).split('@')[-1]}" if recorder else "not kept"
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: done.set())
    pool.start()
    if not pool.wait_ready(30):
        errors = sorted({w.last_error or "no answer from the broker" for w in pool.workers})
        print(f"edgefleet inference: not subscribed yet ({'; '.join(errors)}); retrying", file=sys.stderr)
    print(
        f"edgefleet inference: {len(pool.workers)} worker(s) serving {pool.bundle.manifest.name}"
        f"@{pool.bundle.manifest.version} (broker {config.mqtt.host}:{config.mqtt.port}, "
        f"{config.mqtt.protocol}; hard examples {kept})",
        file=sys.stderr,
        flush=True,
    )
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        pool.stop()
        if recorder is not None:
            recorder.stop()
            recorder.database.close()
            print(
                f"edgefleet inference: kept {recorder.stored} hard examples"
                f" (dropped {recorder.dropped}, failed {recorder.failed})",
                file=sys.stderr,
            )
    stats = pool.stats()
    refused = sum(stats.refused.values())
    print(
        f"edgefleet inference: answered {stats.answered} of {stats.received} requests in {stats.batches} "
        f"batches; refused {refused} {dict(stats.refused)}; model errors {stats.model_errors}",
        file=sys.stderr,
    )
    return 0


def _export_hard_examples(args: argparse.Namespace) -> int:
    from edgefleet.controller.hard_examples import export_npz

    if args.out.suffix != ".npz":
        raise EdgefleetError(f"--out {args.out} does not end in .npz", hint="name the file FILE.npz")
    database = _open(args)
    try:
        examples, total = database.hard_examples(
            device_id=args.device_id, since=args.since, limit=args.limit, with_windows=True
        )
    finally:
        database.close()
    written = export_npz(examples, args.out)
    more = f" (the first {written} of {total}; raise --limit)" if total > written else ""
    print(f"wrote {written} hard examples to {args.out}{more}")
    return 0


def _example_config(args: argparse.Namespace) -> int:
    from edgefleet.controller.config import example_config_text

    sys.stdout.write(example_config_text())
    return 0


def _migrate(args: argparse.Namespace) -> int:
    database = _open(args)
    try:
        print(f"schema version {database.schema_version()} ({database.dialect})")
    finally:
        database.close()
    return 0


def _token_create(args: argparse.Namespace) -> int:
    from edgefleet.controller.auth import create_token

    database = _open(args)
    try:
        token = create_token(database, args.role, args.name or f"{args.role} token")
    finally:
        database.close()
    print(token)
    print(f"(role {args.role}; shown once - store it now)", file=sys.stderr)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    database = _open(args)
    try:
        tokens = database.list_tokens()
    finally:
        database.close()
    for t in tokens:
        state = "revoked" if t.revoked_at else "active"
        used = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t.last_used_at)) if t.last_used_at else "never"
        print(f"{t.token_id}  {t.role:<5}  {state:<7}  last used {used}  {t.name}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    database = _open(args)
    try:
        revoked = database.revoke_token(args.token_id, at=time.time())
    finally:
        database.close()
    if not revoked:
        raise EdgefleetError(
            f"no active token with id {args.token_id!r}",
            hint="`edgefleet controller token list` shows the ids",
        )
    print(f"revoked {args.token_id}")
    return 0


def _user_create(args: argparse.Namespace) -> int:
    from edgefleet.controller.auth import hash_password

    if args.password_stdin:
        if sys.stdin.isatty():
            raise EdgefleetError(
                "--password-stdin reads the password from a pipe, but stdin is a terminal",
                hint='echo "$PASSWORD" | edgefleet controller user create NAME --password-stdin',
            )
        password = sys.stdin.read().rstrip("\r\n")
        if not password:
            raise EdgefleetError("stdin held no password", hint="pipe the password in, one line")
    elif args.password_env:
        password = os.environ.get(args.password_env, "")
        if not password:
            raise EdgefleetError(
                f"${args.password_env} is empty or unset", hint="export it, or omit --password-env"
            )
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.username}: ")
        if getpass.getpass("again: ") != password:
            raise EdgefleetError("the two passwords differ", hint="run the command again")
    else:
        password = sys.stdin.readline().rstrip("\n")
    password_hash = hash_password(password)
    database = _open(args)
    try:
        database.upsert_user(args.username, password_hash, args.role, at=time.time())
    finally:
        database.close()
    print(f"user {args.username!r} can now log in with role {args.role}")
    return 0


def _devices(args: argparse.Namespace) -> int:
    database = _open(args)
    try:
        online = True if args.online else False if args.offline else None
        listing = database.list_devices(online=online, search=args.search, limit=args.limit, sort="device_id")
        delivery = {d.device_id: database.delivery_report(d.device_id) for d in listing.devices}
    finally:
        database.close()
    if args.json:
        doc = listing.model_dump(mode="json")
        for row in doc["devices"]:
            report = delivery.get(row["device_id"])
            row["delivery"] = None if report is None else report.model_dump(mode="json")
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{'DEVICE':<24} {'STATE':<8} {'MODEL':<20} {'AGENT':<10} {'LAST SEEN (UTC)':<19}  MISSING")
    for d in listing.devices:
        model = f"{d.model_name or '-'}@{d.model_version or '-'}"
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d.last_seen))
        state = ("online" if d.online else "offline") + ("*" if d.drifted else "")
        report = delivery.get(d.device_id)
        missing = "-" if report is None else str(report.missing_messages or "none")
        print(f"{d.device_id:<24} {state:<8} {model:<20} {d.agent_version or '-':<10} {seen}  {missing}")
    shown = len(listing.devices)
    print(
        f"{shown} of {listing.total} devices"
        + ("  (* drifted)" if any(d.drifted for d in listing.devices) else "")
    )
    return 0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    group = subparsers.add_parser("controller", help="the cloud controller: registry, ingest, HTTP API")
    commands = group.add_subparsers(dest="controller_command", metavar="SUBCOMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the controller (MQTT ingest + HTTP API) in the foreground",
        description="Run the controller in the foreground: subscribe to the devices' MQTT topics, store "
        "what they send, and serve the HTTP API, the dashboard and the API docs (/docs). On first start "
        "with no users it creates the login `admin` and prints its generated password once. Logs go to "
        "stderr with timestamps; Ctrl-C or SIGTERM stops it cleanly.",
    )
    _add_config(serve)
    serve.add_argument("--host", help="override http.host")
    serve.add_argument("--port", type=int, help="override http.port")
    serve.add_argument("--mqtt-port", type=int, help="override mqtt.port")
    serve.add_argument("--quiet", action="store_true", help="log warnings only")
    serve.set_defaults(handler=_serve)

    infer = commands.add_parser(
        "infer", help="run cloud inference workers only ([inference] and [mqtt] of the controller config)"
    )
    _add_config(infer)
    infer.add_argument("--bundle", type=Path, help="override inference.bundle")
    infer.add_argument("--workers", type=int, help="override inference.workers")
    infer.add_argument("--mqtt-port", type=int, help="override mqtt.port")
    infer.add_argument("--quiet", action="store_true", help="log warnings only")
    infer.set_defaults(handler=_infer)

    export = commands.add_parser(
        "export-hard-examples",
        help="write the windows devices sent to the cloud, with both answers, to an .npz file",
        description="Export the hard examples the inference workers kept (inference.keep_hard_examples):"
        " each window a device sent to the cloud with the edge's and the cloud's answers, oldest first,"
        ' to FILE.npz (layout in docs/controller.md, "Hard examples").',
    )
    _add_config(export)
    export.add_argument("--out", type=Path, required=True, help="the .npz file to write")
    export.add_argument("--device-id", help="only this device's examples")
    export.add_argument("--since", type=float, help="only examples answered at or after this epoch time (s)")
    export.add_argument(
        "--limit", type=int, default=100_000, help="export at most this many (default 100000)"
    )
    export.set_defaults(handler=_export_hard_examples)

    example = commands.add_parser("example-config", help="print a commented controller.toml")
    example.set_defaults(handler=_example_config)

    migrate = commands.add_parser("migrate", help="create or upgrade the database schema, then exit")
    _add_config(migrate)
    migrate.set_defaults(handler=_migrate)

    token = commands.add_parser("token", help="API bearer tokens")
    token_commands = token.add_subparsers(dest="token_command", metavar="ACTION")
    create = token_commands.add_parser(
        "create",
        help="create a token and print it (once)",
        description="Create an API bearer token and print it on stdout, once: only its hash is stored. "
        "Send it as `Authorization: Bearer TOKEN`.",
    )
    _add_config(create)
    create.add_argument(
        "--role",
        choices=("admin", "read"),
        required=True,
        help="read: view the registry, telemetry and results; admin: also send commands to devices",
    )
    create.add_argument("--name", help="what the token is for (shown in token list)")
    create.set_defaults(handler=_token_create)
    listing = token_commands.add_parser("list", help="list tokens (never their secrets)")
    _add_config(listing)
    listing.set_defaults(handler=_token_list)
    revoke = token_commands.add_parser("revoke", help="revoke a token by id")
    _add_config(revoke)
    revoke.add_argument("token_id", help="the id `edgefleet controller token list` shows")
    revoke.set_defaults(handler=_token_revoke)

    user = commands.add_parser("user", help="page logins")
    user_commands = user.add_subparsers(dest="user_command", metavar="ACTION")
    user_create = user_commands.add_parser(
        "create",
        help="create or update a login (password: prompt, --password-stdin or --password-env)",
    )
    _add_config(user_create)
    user_create.add_argument("username", help="login name")
    user_create.add_argument(
        "--role",
        choices=("admin", "read"),
        default="read",
        help="read (default): view the pages; admin: also send commands to devices",
    )
    password = user_create.add_mutually_exclusive_group()
    password.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (a pipe), as docker login"
    )
    password.add_argument("--password-env", help="read the password from this environment variable")
    user_create.set_defaults(handler=_user_create)

    devices = commands.add_parser("devices", help="list the devices the controller knows")
    _add_config(devices)
    state = devices.add_mutually_exclusive_group()
    state.add_argument("--online", action="store_true", help="only online devices")
    state.add_argument("--offline", action="store_true", help="only offline devices")
    devices.add_argument("--search", help="substring of id, versions or hardware")
    devices.add_argument("--limit", type=int, default=1000, help="list at most this many (default 1000)")
    devices.add_argument("--json", action="store_true", help="print JSON")
    devices.set_defaults(handler=_devices)
