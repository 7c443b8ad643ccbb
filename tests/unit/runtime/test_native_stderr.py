"""fd-2 output during model loading: the runtime's known chatter is dropped, anything else kept."""

from __future__ import annotations

import logging
import os

import pytest

from edgefleet.runtime.native_stderr import filtered_native_stderr

pytestmark = pytest.mark.unit

XNNPACK = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"


def test_chatter_is_dropped_and_other_output_kept(capfd: pytest.CaptureFixture[str]) -> None:
    with filtered_native_stderr():
        os.write(2, XNNPACK)
        os.write(2, b"ERROR: something the user must see\n")
    err = capfd.readouterr().err
    assert "XNNPACK" not in err
    assert err == "ERROR: something the user must see\n"


def test_debug_logging_lets_it_through(capfd: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("edgefleet.runtime.native_stderr")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with filtered_native_stderr():
            os.write(2, XNNPACK)
    finally:
        logger.setLevel(previous)
    assert capfd.readouterr().err == XNNPACK.decode()


def test_fd_2_is_restored_after_an_exception(capfd: pytest.CaptureFixture[str]) -> None:
    def load() -> None:
        with filtered_native_stderr():
            os.write(2, b"before the failure\n")
            raise RuntimeError("load failed")

    with pytest.raises(RuntimeError):
        load()
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "before the failure\nafter\n"
