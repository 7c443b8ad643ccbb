"""Attack 5: password guessing on the controller's login, through the real HTTP app and a real
SQLite database. The throttle refuses before scrypt runs, logs failures without the password,
and treats unknown users like real ones."""

from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

from edgefleet.controller.api import ControllerContext, create_app
from edgefleet.controller.auth import hash_password
from edgefleet.controller.commands import CommandService
from edgefleet.controller.config import ControllerConfig
from edgefleet.controller.dal import Database, open_database
from edgefleet.controller.live import FleetChanges

pytestmark = pytest.mark.integration

PASSWORD = "the-right-password"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, Database]]:
    config = ControllerConfig.model_validate(
        {"database": {"sqlite_path": tmp_path / "c.db"}, "auth": {"login_throttle": {"free_failures": 5}}}
    )
    database = open_database(config.database)
    database.upsert_user("ops", hash_password(PASSWORD), "admin", at=0)
    context = ControllerContext(
        config=config,
        database=database,
        commands=CommandService(database, lambda topic, payload: None),
        changes=FleetChanges(),
    )
    with TestClient(create_app(context)) as client:
        yield client, database
    database.close()


def login(client: TestClient, user: str, password: str) -> Any:
    return client.post("/api/auth/login", json={"username": user, "password": password})


def test_guessing_is_throttled_and_the_right_password_waits_too(
    app: tuple[TestClient, Database], caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = app
    caplog.set_level(logging.WARNING, logger="edgefleet.controller.login_throttle")
    codes = [login(client, "ops", f"guess-{i}").status_code for i in range(5)]
    assert codes == [401] * 5
    refused = login(client, "ops", PASSWORD)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"] == "too_many_requests"
    assert "wait" in refused.json()["hint"]
    text = caplog.text
    assert "login failed for user 'ops'" in text
    assert "login throttled for user 'ops'" in text
    assert "guess-" not in text
    assert PASSWORD not in text


def test_unknown_users_are_throttled_like_real_ones(app: tuple[TestClient, Database]) -> None:
    client, _ = app
    for user in ("ops", "nobody-here"):
        codes = [login(client, user, f"guess-{i}").status_code for i in range(6)]
        assert codes == [401] * 5 + [429]


def test_parallel_guesses_cannot_outrun_the_throttle(
    app: tuple[TestClient, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = app
    hashes = 0
    lock = threading.Lock()
    real_scrypt = hashlib.scrypt

    def counting_scrypt(*args: Any, **kwargs: Any) -> bytes:
        nonlocal hashes
        with lock:
            hashes += 1
        return real_scrypt(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting_scrypt)
    codes: list[int] = []

    def guess(i: int) -> None:
        status = login(client, "ops", f"parallel-{i}").status_code
        with lock:
            codes.append(status)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(codes) == 40
    assert codes.count(200) == 0
    assert codes.count(401) <= 5  # only the free attempts ever reached scrypt
    assert set(codes) <= {401, 429}
    assert hashes == codes.count(401)


def test_a_legitimate_user_gets_in_after_a_typo(app: tuple[TestClient, Database]) -> None:
    client, _ = app
    assert login(client, "ops", "typo").status_code == 401
    assert login(client, "ops", PASSWORD).status_code == 200


def test_many_successful_logins_from_one_address_never_lock_it(app: tuple[TestClient, Database]) -> None:
    client, _ = app
    assert all(login(client, "ops", PASSWORD).status_code == 200 for _ in range(25))
