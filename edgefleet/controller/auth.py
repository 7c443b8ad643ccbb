"""API tokens, page logins and sessions. Nothing secret is stored in plain text.

* API tokens are 256 random bits; the database keeps their SHA-256. A slow hash would add nothing
  for secrets that cannot be guessed, and would cost every request.
* Passwords are people-chosen, so they get scrypt (salted, memory-hard).
* A session cookie is another 256-bit random secret, stored as its SHA-256, expiring after
  ``http.session_ttl_s``. Requests authenticated by cookie that change state must echo the
  ``edgefleet_csrf`` cookie in an ``X-Edgefleet-CSRF`` header (double-submit).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from edgefleet.controller.config import AuthConfig
from edgefleet.controller.dal import Database
from edgefleet.controller.schemas import Role
from edgefleet.errors import EdgefleetError

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "AuthError",
    "Principal",
    "authenticate_bearer",
    "authenticate_session",
    "bootstrap_credentials",
    "create_token",
    "hash_password",
    "hash_secret",
    "login",
    "verify_password",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "edgefleet_session"
CSRF_COOKIE = "edgefleet_csrf"
CSRF_HEADER = "X-Edgefleet-CSRF"
TOKEN_PREFIX = "efc_"
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_MIN_PASSWORD = 8


class AuthError(EdgefleetError):
    """Authentication (401) or authorization (403) failed; ``status`` says which."""

    def __init__(self, message: str, *, status: Literal[401, 403], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``name`` (token name or user name), ``role``, and how they proved it."""

    name: str
    role: Role
    via: Literal["token", "session"]

    def require(self, role: Role) -> None:
        if role == "admin" and self.role != "admin":
            raise AuthError(
                f"{self.via} {self.name!r} has role {self.role!r}; this needs 'admin'",
                status=403,
                hint="use an admin token (edgefleet controller token create --role admin)",
            )


def hash_secret(secret: str) -> str:
    """SHA-256 of a high-entropy secret (token or session id), hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    if len(password) < _MIN_PASSWORD:
        raise EdgefleetError(
            f"password is {len(password)} characters; expected at least {_MIN_PASSWORD}",
            hint="choose a longer password",
        )
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return "$".join(
        (
            "scrypt",
            str(_SCRYPT_N),
            str(_SCRYPT_R),
            str(_SCRYPT_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        )
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest_b64)
        digest = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt_b64),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


# Compared against when a user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = hash_password("not-a-real-password")


def create_token(database: Database, role: Role, name: str, *, token: str | None = None) -> str:
    """Store a new API token (hashed) and return it; ``token`` imports a given secret instead."""
    token_id = secrets.token_hex(4)
    secret = token or f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    database.add_token(token_id, name, role, hash_secret(secret), at=time.time())
    return secret


def authenticate_bearer(database: Database, header: str) -> Principal:
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise AuthError(
            "Authorization header is not 'Bearer <token>'",
            status=401,
            hint="send Authorization: Bearer <token> (edgefleet controller token create)",
        )
    info = database.find_token(hash_secret(credentials.strip()), at=time.time())
    if info is None:
        raise AuthError(
            "the bearer token is unknown or revoked",
            status=401,
            hint="create a token with `edgefleet controller token create --role read`",
        )
    return Principal(name=info.name, role=info.role, via="token")


def authenticate_session(database: Database, session: str) -> Principal:
    found = database.get_session(hash_secret(session), at=time.time())
    if found is None:
        raise AuthError("the session has expired or was logged out", status=401, hint="log in again")
    username, role = found
    return Principal(name=username, role=role, via="session")


def login(database: Database, username: str, password: str, *, ttl_s: int) -> tuple[str, Principal]:
    """Check a password; returns a new session secret and the principal, or raises 401."""
    found = database.get_user(username)
    stored, role = found if found is not None else (_DUMMY_HASH, "read")
    if not verify_password(password, stored) or found is None:
        raise AuthError("wrong user name or password", status=401, hint="check both and try again")
    session = secrets.token_urlsafe(32)
    now = time.time()
    database.add_session(hash_secret(session), username, role, at=now, expires_at=now + ttl_s)
    return session, Principal(name=username, role=role, via="session")


def bootstrap_credentials(database: Database, config: AuthConfig) -> list[str]:
    """Import the admin token and password named by the config's environment variables, if set."""
    done: list[str] = []
    token = os.environ.get(config.bootstrap_admin_token_env, "") if config.bootstrap_admin_token_env else ""
    if token:
        if len(token) < 16:
            raise EdgefleetError(
                f"${config.bootstrap_admin_token_env} is {len(token)} characters; expected at least 16",
                hint="use a long random value: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
            )
        if database.find_token(hash_secret(token), at=time.time()) is None:
            try:
                create_token(
                    database, "admin", f"bootstrap (${config.bootstrap_admin_token_env})", token=token
                )
                done.append("admin token")
            except Exception:  # the same hash exists, revoked: a revocation must stick
                log.warning("${%s} holds a revoked token; not re-imported", config.bootstrap_admin_token_env)
    password = (
        os.environ.get(config.bootstrap_admin_password_env, "") if config.bootstrap_admin_password_env else ""
    )
    if password:
        found = database.get_user(config.bootstrap_admin_user)
        if found is None or not verify_password(password, found[0]):
            database.upsert_user(
                config.bootstrap_admin_user, hash_password(password), "admin", at=time.time()
            )
        done.append(f"admin login {config.bootstrap_admin_user!r}")
    if done:
        log.info("bootstrap credentials from the environment: %s", ", ".join(done))
    return done
