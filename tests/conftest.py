"""Fixtures shared by the whole suite. Area-specific fixtures live beside their tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import MosquittoBroker, find_mosquitto

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"

# Modules holding the suite's longest tests (15-150 s each, measured with --durations), longest
# first. `make test` runs pytest in several xdist workers; started last, one of these would run on
# alone after the rest had finished, so they are handed out first and the short tests fill in.
LONGEST_FIRST = (
    "tests/e2e/dashboard/test_demo_browser.py",
    "tests/e2e/agent/test_agent_ota_activation.py",
    "tests/e2e/controller/test_ota_campaigns.py",
    "tests/e2e/cli/test_without_extras.py",
    "tests/e2e/dashboard/test_campaigns_browser.py",
    "tests/e2e/agent/test_first_run.py",
    "tests/integration/deploy/test_install.py",
    "tests/integration/security/test_revocation.py",
    "tests/e2e/agent/test_agent_ota_shadow.py",
    "tests/e2e/agent/test_agent_ota_command.py",
    "tests/e2e/agent/test_agent_fallback_budget.py",
    "tests/e2e/agent/test_agent_lifecycle.py",
    "tests/e2e/dashboard/test_dashboard_browser.py",
    "tests/integration/delivery/test_broker_faults.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {module: i for i, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


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
