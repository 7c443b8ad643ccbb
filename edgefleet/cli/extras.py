"""Optional extras: which command needs which, and one clear error when one is missing.

``pip install edgefleet`` brings the agent only; the controller (FastAPI, uvicorn,
psycopg) and the demo's embedded broker (amqtt) come with extras. A command that needs
a missing extra must say so in one line with the install command, never a traceback.
"""

from __future__ import annotations

import importlib.util

from edgefleet.errors import EdgefleetError

__all__ = ["EXTRA_MODULES", "MissingExtraError", "missing_extra_error", "require_extra"]

# Top-level modules that only an extra installs, by extra.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "controller": ("fastapi", "starlette", "uvicorn", "psycopg"),
    "demo": ("amqtt",),
}


class MissingExtraError(EdgefleetError):
    """A command needs an optional extra that is not installed."""

    def __init__(self, extra: str, module: str, what: str | None = None) -> None:
        self.extra = extra
        self.module = module
        needs = f"{what} needs" if what else "this command needs"
        super().__init__(
            f"{needs} the '{extra}' extra (module {module!r} is not installed): "
            f"pip install 'edgefleet[{extra}]'"
        )


def _extra_of(module: str) -> str | None:
    top = module.split(".", 1)[0]
    for extra, modules in EXTRA_MODULES.items():
        if top in modules:
            return extra
    return None


def missing_extra_error(exc: ModuleNotFoundError, what: str | None = None) -> MissingExtraError | None:
    """The clear error for ``exc`` when an extra would have installed the module, else None."""
    if not exc.name:
        return None
    extra = _extra_of(exc.name)
    if extra is None:
        return None
    return MissingExtraError(extra, exc.name.split(".", 1)[0], what)


def require_extra(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise :class:`MissingExtraError` at once when ``extra``'s modules cannot be imported.

    ``modules`` narrows the check (e.g. a SQLite controller needs no psycopg).
    """
    for module in modules if modules is not None else EXTRA_MODULES[extra]:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(extra, module, what)
