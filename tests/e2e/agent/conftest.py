"""Fixtures of the agent e2e tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.runtime.bundle_signing import generate_keys
from tests.support.ota_bundles import make_version


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A signing key pair and three signed versions of the demo bundle: 1.0.0, 1.1.0 (good) and
    1.2.0 (bad: its normalisation std scaled x20, caught only on probation)."""
    root = tmp_path_factory.mktemp("ota")
    private, public = generate_keys(root / "keys")
    return {
        "key": private,
        "pub": public,
        "v1": make_version(root / "v1", "1.0.0", private),
        "v2": make_version(root / "v2", "1.1.0", private),
        "bad": make_version(root / "bad", "1.2.0", private, std_scale=20.0),
    }
