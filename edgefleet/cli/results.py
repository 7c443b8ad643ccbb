"""``edgefleet results``: read inference results from the device store."""

from __future__ import annotations

import argparse
import csv
import json
import re
import sqlite3
import sys
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

from edgefleet.errors import ConfigError, ConfigIssue

__all__ = ["parse_since", "register"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
COLUMNS = (
    "id",
    "stream",
    "window_start",
    "window_end",
    "label",
    "score",
    "latency_ms",
    "answered_by",
    "fallback_reason",
    "fallback_outcome",
    "late",
    "cloud_label",
    "cloud_score",
    "cloud_model_version",
    "model_name",
    "model_version",
)


def parse_since(text: str, *, now: float | None = None) -> float:
    """``10m``, ``2h``, ``1d`` ago; an ISO-8601 time; or epoch seconds -> epoch seconds."""
    now = time.time() if now is None else now
    raw = text.strip()
    match = _DURATION.match(raw)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            "invalid --since value",
            issues=[
                ConfigIssue(
                    "--since", text, "a duration like 30s, 10m, 2h, 1d; an ISO time; or epoch seconds"
                )
            ],
            hint="for example: edgefleet results --config agent.toml --since 10m",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time, as a user typing a time means it
    return parsed.timestamp()


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "results",
        help="show inference results from the device store",
        description="Newest results first, from the agent's local store (works while the agent runs).",
    )
    parser.add_argument("--config", required=True, type=Path, metavar="FILE", help="agent config (TOML)")
    parser.add_argument("--since", metavar="WHEN", help="only results after this: 10m, 2h, ISO time, epoch")
    parser.add_argument("--stream", metavar="S", help="only this stream")
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="at most N results (default 20)")
    parser.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="table for people (default), json (one object per line) or csv (with a header row)",
    )
    parser.set_defaults(handler=_results)


def _results(args: argparse.Namespace) -> int:
    from edgefleet.agent.config import load_config
    from edgefleet.agent.store import Store
    from edgefleet.errors import StoreError

    if args.limit < 1:
        raise ConfigError("invalid --limit", issues=[ConfigIssue("--limit", args.limit, "an integer >= 1")])
    since = parse_since(args.since) if args.since else None
    config = load_config(args.config)
    path = Path(config.store.path)
    if not path.exists():
        raise StoreError(
            f"no store at {path}",
            path=str(path),
            hint="the agent creates it on its first start: edgefleet agent run --config FILE",
        )
    store = Store.open(path, config.store)
    try:
        rows = store.query_results(since=since, stream=args.stream, limit=args.limit)
    finally:
        store.close()
    more = _count_results(path, since, args.stream) - len(rows) if len(rows) == args.limit else 0
    out = sys.stdout
    if args.format == "json":
        json.dump(rows, out, indent=2, default=str)
        out.write("\n")
    elif args.format == "csv":
        columns = _columns(rows)
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    else:
        out.write(_table(rows) + "\n")
    if more > 0:
        # On stderr, so json and csv output stay parseable.
        print(f"{more} more; use --limit {args.limit + more} to see all", file=sys.stderr)
    return 0


def _count_results(path: Path, since: float | None, stream: str | None) -> int:
    """How many results match, read-only (the agent may be writing)."""
    where: list[str] = ["1 = 1"]
    params: list[object] = []
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    if stream is not None:
        where.append("stream = ?")
        params.append(stream)
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        (count,) = db.execute(f"SELECT count(*) FROM results WHERE {' AND '.join(where)}", params).fetchone()
    return int(count)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    present = list(COLUMNS)
    for row in rows:
        for key in row:
            if key not in present:
                present.append(key)
    return [c for c in present if any(c in row for row in rows)] or list(COLUMNS)


def _csv_value(value: object) -> object:
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


def _fmt_time(value: object) -> str:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return "" if value is None else str(value)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no results)"
    header = [
        "time (window end)",
        "stream",
        "label",
        "score",
        "latency",
        "by",
        "outcome",
        "cloud answer",
        "model",
    ]
    body = []
    for row in rows:
        score = row.get("score")
        latency = row.get("latency_ms")
        by = str(row.get("answered_by") or "")
        if row.get("fallback_reason"):
            by += f" ({row['fallback_reason']})"
        body.append(
            [
                _fmt_time(row.get("window_end")),
                str(row.get("stream", "")),
                str(row.get("label") or "-"),
                f"{score:.3f}" if isinstance(score, int | float) else "-",
                f"{latency:.1f} ms" if isinstance(latency, int | float) else "-",
                by,
                str(row.get("fallback_outcome") or "edge"),
                _cloud_answer(row),
                f"{row.get('model_name', '')} {row.get('model_version', '')}".strip(),
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body)
    return "\n".join(line.rstrip() for line in lines)


def _cloud_answer(row: dict[str, Any]) -> str:
    """The cloud's answer kept beside the edge one (a late answer), or "-" when there is none.

    A result answered by the cloud in time shows its answer in the label column already."""
    label = row.get("cloud_label")
    if label is None:
        return "-"
    score = row.get("cloud_score")
    text = f"{label} {score:.3f}" if isinstance(score, int | float) else str(label)
    if row.get("cloud_model_version"):
        text += f" (v{row['cloud_model_version']})"
    return text + (" late" if row.get("late") else "")
