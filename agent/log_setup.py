"""Structured logging for the agent: JSON lines, logfmt, or plain text.

Logs go to stdout (or stderr). Under systemd stdout is the journal: when
``$JOURNAL_STREAM`` names the very stream we write to (systemd's documented check: its
``device:inode`` equals the stream's), every line carries a ``<N>`` syslog priority prefix
that journald strips and turns into the entry's priority, and text lines leave timestamps
to journald. JSON and logfmt lines stay pure JSON/logfmt in the journal's MESSAGE.

Extra context is passed the usual way, ``log.info("stored", extra={"stream": "imu"})``;
every non-standard attribute on the record becomes a field.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, Literal, TextIO

__all__ = ["LogFormat", "configure_logging", "make_formatter", "writes_to_journal"]

LogFormat = Literal["json", "logfmt", "text"]

# Attributes every LogRecord has; anything else was passed via ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "taskName"}
)

_SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

_HANDLER_MARK = "_edgefleet_agent_handler"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class _StructuredFormatter(logging.Formatter):
    """The fields both machine-readable formats carry: time, level, logger, message, extras, traceback."""

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return entry


class JsonFormatter(_StructuredFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.fields(record), default=str, ensure_ascii=False)


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


class LogfmtFormatter(_StructuredFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in self.fields(record).items())


class TextFormatter(logging.Formatter):
    def __init__(self, *, journald: bool) -> None:
        fmt = (
            "%(levelname)s %(name)s: %(message)s"
            if journald
            else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = _extras(record)
        if extras:
            text += " " + " ".join(f"{k}={_logfmt_value(v)}" for k, v in extras.items())
        return text


class JournaldPrefix(logging.Formatter):
    """Wraps a formatter: ``<N>`` priority on every line (a traceback keeps its priority)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prio = _SYSLOG_PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{prio}>{line}" for line in self.inner.format(record).splitlines())


def writes_to_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal stream systemd connected (``$JOURNAL_STREAM``)."""
    env = os.environ if environ is None else environ
    expected = env.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def make_formatter(fmt: LogFormat, *, journald: bool = False) -> logging.Formatter:
    inner: logging.Formatter
    if fmt == "json":
        inner = JsonFormatter()
    elif fmt == "logfmt":
        inner = LogfmtFormatter()
    else:
        inner = TextFormatter(journald=journald)
    return JournaldPrefix(inner) if journald else inner


def configure_logging(
    fmt: LogFormat = "text", level: str | int = "INFO", *, stream: TextIO | None = None
) -> logging.Handler:
    """Install one handler on the root logger (replacing any previous agent handler)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        # Replace both our earlier handler (on reload) and the CLI's basicConfig one.
        root.removeHandler(handler)
    target = stream if stream is not None else sys.stdout
    handler = logging.StreamHandler(target)
    handler.setFormatter(make_formatter(fmt, journald=writes_to_journal(target)))
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
