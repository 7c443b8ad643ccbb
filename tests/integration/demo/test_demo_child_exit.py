"""`edgefleet demo` stops waiting for a child that died before listening, and says why at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgefleet.demo import _wait_for_port
from edgefleet.errors import EdgefleetError
from tests.support.broker import free_port

pytestmark = pytest.mark.integration


def test_a_child_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "controller.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", "import sys; print('ModuleNotFoundError: uvicorn'); sys.exit(3)"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    child.wait(timeout=60)
    with pytest.raises(EdgefleetError) as info:
        # The timeout is long on purpose: the call must return because the child died, not time out.
        _wait_for_port(free_port(), 600, "the controller", log, child)
    message = str(info.value)
    assert "the controller exited with status 3 before listening" in message
    assert "ModuleNotFoundError: uvicorn" in message
