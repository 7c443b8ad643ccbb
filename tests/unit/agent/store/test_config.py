"""StoreConfig validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edgefleet.agent.store import DEFAULT_STORE_PATH, StoreConfig

pytestmark = pytest.mark.unit


def test_defaults_are_durable_and_bounded() -> None:
    config = StoreConfig()
    assert config.path == DEFAULT_STORE_PATH == Path("/var/lib/edgefleet/store.db")
    assert config.synchronous == "NORMAL"
    assert config.max_bytes < config.hard_max_bytes
    assert config.store_raw_outputs is False


def test_every_field_is_described() -> None:
    for name, field in StoreConfig.model_fields.items():
        assert field.description, f"{name} has no description"
    for mode in ("OFF", "NORMAL", "FULL"):
        assert mode in (StoreConfig.model_fields["synchronous"].description or "")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"synchronus": "FULL"}, "Extra inputs are not permitted"),
        ({"synchronous": "EXTRA"}, "'OFF', 'NORMAL' or 'FULL'"),
        ({"max_bytes": 10 * 2**20, "hard_max_bytes": 2**20}, "hard_max_bytes .* must be >= max_bytes"),
        ({"max_bytes": 100}, "greater than or equal to 65536"),
        ({"max_age_s": 0}, "greater than 0"),
        ({"retention_headroom": 0.95}, "less than 0.9"),
        ({"wal_autocheckpoint_pages": -1}, "greater than or equal to 0"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(values: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        StoreConfig.model_validate(values)


def test_max_age_may_be_disabled() -> None:
    assert StoreConfig(max_age_s=None).max_age_s is None
