"""Fixtures for the cloud_sync integration tests: store files, PKI, collectors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.agent.store import Store
from tests.support.broker import find_mosquitto
from tests.support.sync_fixtures import open_store
from tests.support.tls import Pki, make_pki


@pytest.fixture(autouse=True)
def _needs_mosquitto() -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed; `make test` installs it")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "device" / "store.db")
    yield s
    s.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))
