"""The few exceptions edgefleet raises on purpose.

Every one carries a human message that names what was wrong and what was expected,
and a ``hint`` telling the user what to do next. The CLI prints both and exits
non-zero; daemons log them and carry on. Anything else escaping is a bug.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class EdgefleetError(Exception):
    """Base class. ``message`` says what went wrong; ``hint`` what to try."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


@dataclass(frozen=True)
class ConfigIssue:
    """One invalid key in a configuration: where, what it was, what was expected."""

    key: str
    value: object
    expected: str

    def __str__(self) -> str:
        return f"{self.key}: got {self.value!r}; expected {self.expected}"


class ConfigError(EdgefleetError):
    """A configuration file or override is invalid. ``issues`` lists every bad key."""

    def __init__(
        self,
        message: str,
        *,
        issues: Sequence[ConfigIssue] = (),
        source: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.issues = list(issues)
        self.source = source
        lines = [message, *(f"  - {issue}" for issue in self.issues)]
        super().__init__("\n".join(lines), hint=hint)


class ModelError(EdgefleetError):
    """Base for model problems; ``path`` is the model file when known."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class ModelLoadError(ModelError):
    """A model could not be loaded: missing, corrupt, unknown format, unsupported op."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        op: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, path=path, hint=hint)
        self.op = op


class ModelInputError(ModelError):
    """Inputs do not fit the model: ``tensor`` names the input, ``expected``/``got`` say how."""

    def __init__(
        self,
        message: str,
        *,
        tensor: str | None = None,
        expected: str | None = None,
        got: str | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, path=path, hint=hint)
        self.tensor = tensor
        self.expected = expected
        self.got = got


class BundleError(EdgefleetError):
    """A model bundle is invalid; ``problems`` lists each check that failed."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        problems: Sequence[str] = (),
        hint: str | None = None,
    ) -> None:
        self.path = path
        self.problems = list(problems)
        lines = [message, *(f"  - {p}" for p in self.problems)]
        super().__init__("\n".join(lines), hint=hint)


class StoreError(EdgefleetError):
    """The local SQLite store cannot be opened, migrated or written."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class ProtocolError(EdgefleetError):
    """A sync message is malformed, oversize, or of an unknown schema version."""

    def __init__(
        self, message: str, *, topic: str | None = None, reason: str = "malformed", hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.topic = topic
        self.reason = reason
