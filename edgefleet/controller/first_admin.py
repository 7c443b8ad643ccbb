"""A way in on first start: when no login exists, create ``admin`` with a generated password.

As Grafana and Jenkins do, the password is generated, stored only as a hash, and shown once
by whoever calls :func:`create_first_admin` (``controller serve`` prints it). A controller that
already has any login, or got one from ``$EDGEFLEET_CONTROLLER_ADMIN_PASSWORD``, is left alone.
"""

from __future__ import annotations

import secrets
import time

from edgefleet.controller.auth import hash_password
from edgefleet.controller.config import AuthConfig
from edgefleet.controller.dal import Database

__all__ = ["FirstAdmin", "create_first_admin", "first_admin_notice"]


class FirstAdmin:
    """The login just created; ``password`` exists only in memory, to be shown once."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password


def create_first_admin(database: Database, config: AuthConfig) -> FirstAdmin | None:
    """Create the first admin login when the database has no login at all, else None."""
    password = secrets.token_urlsafe(15)
    username = config.bootstrap_admin_user
    if not database.create_first_user(username, hash_password(password), "admin", at=time.time()):
        return None
    return FirstAdmin(username, password)


def first_admin_notice(admin: FirstAdmin, url: str) -> str:
    return (
        f"edgefleet controller: no login existed, so one was created for {url}\n"
        f"  user:     {admin.username}\n"
        f"  password: {admin.password}\n"
        "  This is shown once and stored only as a hash. Set your own with:\n"
        f"  edgefleet controller user create {admin.username} --role admin --password-stdin"
    )
