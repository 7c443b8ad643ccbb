"""The Source base class: the bad-sample gate, error survival, stats, finishing and stopping."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import TypeAdapter, ValidationError

from edgefleet.agent.sources import (
    SOURCE_PLUGINS,
    SOURCE_TYPES,
    BaseSourceConfig,
    RateLimitedLog,
    Source,
    SourceConfig,
    SourceError,
)
from edgefleet.agent.sources import create_source as build
from edgefleet.types import FloatArray

pytestmark = pytest.mark.unit


class ScriptConfig(BaseSourceConfig):
    type: Literal["script"] = "script"


class ScriptSource(Source[ScriptConfig]):
    """Runs ``script(self)`` once per _run call: a pure-logic stand-in for a real reader."""

    type_key = "script"
    config_model = ScriptConfig

    def __init__(self, script: Callable[[ScriptSource], None], sink: Callable[..., None]) -> None:
        super().__init__(ScriptConfig(name="test-stream", restart_delay_s=0.01), sink)
        self.script = script
        self.runs = 0

    @property
    def channels(self) -> int:
        return 3

    def _run(self) -> None:
        self.runs += 1
        self.script(self)


class Collector:
    def __init__(self) -> None:
        self.blocks: list[tuple[FloatArray, npt.NDArray[np.float64]]] = []
        self.event = threading.Event()

    def __call__(self, samples: FloatArray, timestamps: npt.NDArray[np.float64]) -> None:
        self.blocks.append((samples, timestamps))
        self.event.set()

    @property
    def rows(self) -> FloatArray:
        return np.concatenate([b[0] for b in self.blocks]) if self.blocks else np.empty((0, 3), np.float32)


def emit_then_finish(*blocks: tuple[object, object]) -> Callable[[ScriptSource], None]:
    def script(source: ScriptSource) -> None:
        for samples, times in blocks:
            source._emit(samples, times)  # type: ignore[arg-type]
        source._mark_finished()

    return script


def test_good_blocks_reach_the_sink_as_float32_and_float64() -> None:
    sink = Collector()
    source = ScriptSource(emit_then_finish(([[1, 2, 3], [4, 5, 6]], [1.0, 2.0])), sink)
    with source:
        assert source.wait_finished(5)
    assert source.finished
    samples, times = sink.blocks[0]
    assert samples.dtype == np.float32
    assert times.dtype == np.float64
    assert source.stats.samples == 2
    assert source.stats.bad_samples == 0


def test_non_finite_rows_are_dropped_and_counted() -> None:
    sink = Collector()
    nan, inf = float("nan"), float("inf")
    block = ([[1, 2, 3], [nan, 0, 0], [0, inf, 0], [7, 8, 9], [1e39, 0, 0], [4, 4, 4]], [1, 2, 3, 4, 5, nan])
    source = ScriptSource(emit_then_finish(block), sink)
    with source:
        assert source.wait_finished(5)
    np.testing.assert_array_equal(sink.rows, [[1, 2, 3], [7, 8, 9]])
    assert source.stats.samples == 2
    assert source.stats.bad_samples == 4
    assert source.stats.last_error is not None
    assert "NaN or infinite" in source.stats.last_error


@pytest.mark.parametrize(
    ("samples", "times"),
    [
        ([[1, 2], [3, 4]], [1.0, 2.0]),  # wrong channel count
        ([[1, 2, 3, 4]], [1.0]),
        ([[1, 2, 3], [4, 5, 6]], [1.0]),  # timestamps do not match
        (np.zeros((2, 3, 1)), [1.0, 2.0]),  # not 2-D
    ],
)
def test_wrong_shapes_never_reach_the_sink(samples: object, times: object) -> None:
    sink = Collector()
    source = ScriptSource(emit_then_finish((samples, times), ([[1, 1, 1]], [9.0])), sink)
    with source:
        assert source.wait_finished(5)
    np.testing.assert_array_equal(sink.rows, [[1, 1, 1]])
    assert source.stats.bad_samples >= 1
    assert "expected (n, 3)" in (source.stats.last_error or "")


def test_a_single_sample_vector_is_accepted() -> None:
    sink = Collector()
    source = ScriptSource(emit_then_finish(([1, 2, 3], [5.0])), sink)
    with source:
        assert source.wait_finished(5)
    np.testing.assert_array_equal(sink.rows, [[1, 2, 3]])


def test_a_failing_sink_does_not_kill_the_source() -> None:
    calls: list[int] = []

    def sink(samples: FloatArray, timestamps: npt.NDArray[np.float64]) -> None:
        calls.append(len(samples))
        if len(calls) == 1:
            raise RuntimeError("consumer broke")

    source = ScriptSource(emit_then_finish(([[1, 2, 3]], [1.0]), ([[4, 5, 6]], [2.0])), sink)
    with source:
        assert source.wait_finished(5)
    assert calls == [1, 1]
    assert source.stats.samples == 1
    assert "consumer broke" in (source.stats.last_error or "")


def test_an_exception_in_run_is_recorded_and_run_is_restarted() -> None:
    def script(source: ScriptSource) -> None:
        if source.runs < 3:
            raise OSError("device unplugged")
        source._mark_finished()

    source = ScriptSource(script, Collector())
    with source:
        assert source.wait_finished(5)
    assert source.runs == 3
    assert "device unplugged" in (source.stats.last_error or "")


def test_stop_ends_a_blocking_run_and_start_is_idempotent() -> None:
    def script(source: ScriptSource) -> None:
        source._stopping.wait()

    source = ScriptSource(script, Collector())
    source.start()
    source.start()
    was_running = source.running
    source.stop()
    assert was_running
    assert not source.running
    assert not source.finished
    assert source.runs == 1


def test_bad_samples_are_logged_with_the_stream_name_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    def script(source: ScriptSource) -> None:
        for _ in range(50):
            source._emit([[float("nan"), 0, 0]], [1.0])
        source._mark_finished()

    source = ScriptSource(script, Collector())
    with caplog.at_level(logging.WARNING), source:
        assert source.wait_finished(5)
    messages = [r.getMessage() for r in caplog.records if "bad sample" in r.getMessage()]
    assert source.stats.bad_samples == 50
    assert 1 <= len(messages) < 5
    assert "'test-stream'" in messages[0]


def test_rate_limited_log_reports_suppressed_count(caplog: pytest.LogCaptureFixture) -> None:
    limited = RateLimitedLog(logging.getLogger("edgefleet.test"), interval_s=0.0)
    with caplog.at_level(logging.WARNING):
        limited.warning("once %s", "a")
    assert caplog.records[-1].getMessage() == "once a"
    slow = RateLimitedLog(logging.getLogger("edgefleet.test"), interval_s=3600)
    with caplog.at_level(logging.WARNING):
        slow.warning("x")
        slow.warning("x")
        slow.warning("x")
    assert [r.getMessage() for r in caplog.records[-1:]] == ["x"]
    slow._last = -float("inf")  # as if the interval had passed
    with caplog.at_level(logging.WARNING):
        slow.warning("x")
    assert caplog.records[-1].getMessage() == "x (2 similar messages suppressed)"


def test_registry_holds_every_type_and_refuses_mismatched_configs() -> None:
    assert set(SOURCE_TYPES) == {"replay", "synthetic", "udp", "unix", "mqtt"}
    with pytest.raises(SourceError, match="no source of type 'script'"):
        build(ScriptConfig(name="x"), Collector())


def test_the_config_union_and_the_registry_come_from_one_list_of_plugins() -> None:
    union = get_args(get_args(SourceConfig)[0])
    assert union == tuple(cls.config_model for cls in SOURCE_PLUGINS)
    assert {cls.type_key: cls for cls in SOURCE_PLUGINS} == SOURCE_TYPES
    for cls in SOURCE_PLUGINS:  # each plugin's key is the tag its config model carries
        assert cls.config_model.model_fields["type"].default == cls.type_key
    adapter: TypeAdapter[BaseSourceConfig] = TypeAdapter(SourceConfig)
    with pytest.raises(ValidationError, match="'replay', 'synthetic', 'udp', 'unix', 'mqtt'"):
        adapter.validate_python({"type": "serial", "name": "imu"})
