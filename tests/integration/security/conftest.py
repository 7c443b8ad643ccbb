"""The shipped broker configuration on a real Mosquitto, shared by the attack tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.broker import find_mosquitto
from tests.support.shipped_broker import CONTROLLERS, ShippedBroker


@pytest.fixture(autouse=True)
def _needs_mosquitto() -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed; `make test` installs it")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShippedBroker]:
    with ShippedBroker(tmp_path_factory.mktemp("shipped-broker"), CONTROLLERS) as running:
        yield running
