"""docs/protocol.md is normative: every kind, body model and field in the code appears in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from edgefleet.cloud_sync.protocol import BODY_TYPES, Body, ChannelDrift, EventItem, MetricPoint, ResultItem
from edgefleet.cloud_sync.topics import ALL_KINDS

pytestmark = pytest.mark.unit

DOC = (Path(__file__).resolve().parents[3] / "docs" / "protocol.md").read_text()


def _row(name: str) -> str:
    rows = [line for line in DOC.splitlines() if line.startswith(f"| `{name}`")]
    assert rows, f"docs/protocol.md has no table row for {name}"
    return " ".join(rows)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_kind_has_a_topic_row(kind: str) -> None:
    assert f"`{BODY_TYPES[kind].__name__}`" in _row(kind)


@pytest.mark.parametrize("model", sorted({t.__name__: t for t in BODY_TYPES.values()}.items()))
def test_every_body_field_is_documented(model: tuple[str, type[Body]]) -> None:
    name, cls = model
    row = _row(name)
    nested: dict[str, type[BaseModel]] = {
        "results": ResultItem,
        "samples": MetricPoint,
        "events": EventItem,
        "channels": ChannelDrift,
    }
    for field in cls.model_fields:
        assert field in row, f"{name}.{field} missing from docs/protocol.md"
        if field in nested and (name != "DriftBody" or field == "channels"):
            for sub in nested[field].model_fields:
                assert sub in row, f"{name}.{field}.{sub} missing from docs/protocol.md"
