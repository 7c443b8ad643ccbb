"""Fixtures shared by the whole suite. Area-specific fixtures live beside their tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import MosquittoBroker, find_mosquitto

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A plain, anonymous Mosquitto on a free loopback port, stopped after the test."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed; `make test` installs it with apt-get when run as root")
    broker = MosquittoBroker(tmp_path / "broker-workdir")
    broker.workdir.mkdir()
    with broker:
        yield broker


@pytest.fixture
def unique_topic() -> str:
    """A topic prefix no other test uses, so tests on one broker never see each other's messages."""
    return f"test/{uuid.uuid4().hex[:12]}"
