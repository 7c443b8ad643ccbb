"""Shared helpers for the source integration tests: a thread-safe sink and a polling wait."""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt

from edgefleet.types import FloatArray


class Collector:
    """A sink that keeps every block it is given."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: list[FloatArray] = []
        self._times: list[npt.NDArray[np.float64]] = []

    def __call__(self, samples: FloatArray, timestamps: npt.NDArray[np.float64]) -> None:
        assert samples.dtype == np.float32
        assert timestamps.dtype == np.float64
        assert samples.ndim == 2
        assert samples.shape[0] == timestamps.shape[0]
        with self._lock:
            self._samples.append(samples.copy())
            self._times.append(timestamps.copy())

    @property
    def count(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._samples)

    @property
    def blocks(self) -> int:
        with self._lock:
            return len(self._samples)

    def arrays(self, channels: int) -> tuple[FloatArray, npt.NDArray[np.float64]]:
        with self._lock:
            if not self._samples:
                return np.empty((0, channels), np.float32), np.empty((0,), np.float64)
            return np.concatenate(self._samples), np.concatenate(self._times)
