"""Keep the native runtimes' own chatter out of edgefleet's output.

LiteRT's C++ core writes ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` straight to
file descriptor 2 whenever an interpreter allocates its tensors: noise on every model-loading
command. :func:`filtered_native_stderr` points fd 2 at a temporary file for the duration, then
writes back everything except the known chatter, which goes to the debug log instead (so
``--verbose`` shows it). Other threads' stderr output in that window is delayed, never lost.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["CHATTER", "filtered_native_stderr"]

log = logging.getLogger(__name__)

CHATTER = (
    re.compile(rb"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.?\s*$"),
    re.compile(rb"^INFO: Initialized TensorFlow Lite runtime\.?\s*$"),
)

_lock = threading.Lock()


def _is_chatter(line: bytes) -> bool:
    return any(pattern.match(line) for pattern in CHATTER)


@contextmanager
def filtered_native_stderr() -> Iterator[None]:
    """Drop the runtime's known INFO lines from fd 2 while the block runs (unless debug logging)."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    with _lock:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield  # no usable fd 2 (a daemon with stderr closed): nothing to filter
            return
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                for line in capture.read().splitlines(keepends=True):
                    if _is_chatter(line):
                        log.debug("runtime: %s", line.decode(errors="replace").strip())
                    else:
                        os.write(2, line)
