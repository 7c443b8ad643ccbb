from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.controller.auth import (
    AuthError,
    authenticate_bearer,
    authenticate_session,
    bootstrap_credentials,
    create_token,
    hash_password,
    hash_secret,
    login,
    verify_password,
)
from edgefleet.controller.config import AuthConfig, DatabaseConfig
from edgefleet.controller.dal import Database, open_database
from edgefleet.errors import EdgefleetError

pytestmark = pytest.mark.unit


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = open_database(DatabaseConfig(sqlite_path=tmp_path / "c.db"))
    yield db
    db.close()


def test_password_hash_is_salted_scrypt() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second
    assert first.startswith("scrypt$")
    assert "correct horse" not in first
    assert verify_password("correct horse", first)
    assert not verify_password("wrong horse!", first)
    assert not verify_password("correct horse", "garbage")
    with pytest.raises(EdgefleetError, match="at least 8"):
        hash_password("short")


def test_tokens_are_stored_hashed_and_checked(database: Database) -> None:
    token = create_token(database, "read", "ci")
    assert token.startswith("efc_")
    assert database.find_token(hash_secret(token), at=0) is not None
    principal = authenticate_bearer(database, f"Bearer {token}")
    assert (principal.name, principal.role) == ("ci", "read")
    with pytest.raises(AuthError) as info:
        principal.require("admin")
    assert info.value.status == 403
    for header in ("Bearer nope", "Basic abc", "Bearer "):
        with pytest.raises(AuthError) as info:
            authenticate_bearer(database, header)
        assert info.value.status == 401


def test_login_creates_a_session(database: Database) -> None:
    database.upsert_user("ops", hash_password("s3cret-pass"), "admin", at=0)
    session, principal = login(database, "ops", "s3cret-pass", ttl_s=60)
    assert principal.role == "admin"
    assert authenticate_session(database, session).name == "ops"
    for user, password in (("ops", "wrong-pass"), ("ghost", "s3cret-pass")):
        with pytest.raises(AuthError, match="wrong user name or password"):
            login(database, user, password, ttl_s=60)
    with pytest.raises(AuthError):
        authenticate_session(database, "forged")


def test_bootstrap_from_environment(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    config = AuthConfig()
    assert bootstrap_credentials(database, config) == []
    monkeypatch.setenv(config.bootstrap_admin_token_env, "a-long-bootstrap-token-value")
    monkeypatch.setenv(config.bootstrap_admin_password_env, "admin-password")
    assert len(bootstrap_credentials(database, config)) == 2
    bootstrap_credentials(database, config)  # idempotent: no second token row
    assert len(database.list_tokens()) == 1
    assert authenticate_bearer(database, "Bearer a-long-bootstrap-token-value").role == "admin"
    assert login(database, "admin", "admin-password", ttl_s=60)[1].role == "admin"
    monkeypatch.setenv(config.bootstrap_admin_token_env, "short")
    with pytest.raises(EdgefleetError, match="at least 16"):
        bootstrap_credentials(database, config)
