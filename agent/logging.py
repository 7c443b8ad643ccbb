"""Structured logging for the agent: JSON lines, logfmt, or plain text.

Logs go to stdout (or stderr). Under systemd stdout is the journal: when
``$JOURNAL_STREAM`` is set, text lines carry a ``<N>`` syslog priority prefix that
journald turns into the entry's priority and timestamps are left to journald.

Extra context is passed the usual way, ``log.info("stored", extra={"stream": "imu"})``;
every non-standard attribute on the record becomes a field.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Literal, TextIO

__all__ = ["LogFormat", "configure_logging", "make_formatter"]

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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(_extras(record))
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())


class TextFormatter(logging.Formatter):
    def __init__(self, *, journald: bool) -> None:
        fmt = (
            "%(levelname)s %(name)s: %(message)s"
            if journald
            else "%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        super().__init__(fmt)
        self._journald = journald

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = _extras(record)
        if extras:
            text += " " + " ".join(f"{k}={_logfmt_value(v)}" for k, v in extras.items())
        if self._journald:
            prio = _SYSLOG_PRIORITY.get(record.levelno, 6)
            # Prefix every line so a multi-line traceback keeps its priority.
            text = "\n".join(f"<{prio}>{line}" for line in text.splitlines())
        return text


def make_formatter(fmt: LogFormat, *, journald: bool | None = None) -> logging.Formatter:
    if journald is None:
        journald = bool(os.environ.get("JOURNAL_STREAM"))
    if fmt == "json":
        return JsonFormatter()
    if fmt == "logfmt":
        return LogfmtFormatter()
    return TextFormatter(journald=journald)


def configure_logging(
    fmt: LogFormat = "text", level: str | int = "INFO", *, stream: TextIO | None = None
) -> logging.Handler:
    """Install one handler on the root logger (replacing any previous agent handler)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        # Replace both our earlier handler (on reload) and the CLI's basicConfig one.
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(make_formatter(fmt))
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
