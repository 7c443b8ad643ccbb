"""Several streams of one shape through the pipeline's ring group: the right window in every row."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from edgefleet.agent.pipeline import Pipeline, PipelineSettings, StreamSpec
from edgefleet.agent.sources import ReplaySourceConfig, create_source
from edgefleet.agent.store import Store, StoreConfig
from edgefleet.runtime.bundle import Bundle, load_bundle
from edgefleet.runtime.ring_group import GroupPop, RingGroup

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
BUNDLE = REPO / "models" / "bundles" / "basicmotions-edge-tflite"
REPLAY = REPO / "models" / "data" / "basicmotions_test_stream.csv"
STREAMS = ("s0", "s1", "s2", "s3")


@pytest.fixture
def bundle() -> Bundle:
    if not (BUNDLE / "manifest.json").is_file():
        pytest.skip("demo bundle not built")
    return load_bundle(BUNDLE)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "store.db", StoreConfig(path=tmp_path / "store.db", store_raw_outputs=True))
    yield store
    store.close()


def test_streams_of_one_recording_get_the_same_answer_for_each_window(
    bundle: Bundle, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four streams replay the same recording with no loss, so window k of every stream holds the
    same samples: a row with another stream's or another window's data would differ."""
    group_pops: list[int] = []
    pop = RingGroup.pop

    def counting_pop(self: RingGroup, count: int) -> GroupPop | None:
        got = pop(self, count)
        if got is not None:
            group_pops.append(len(got.data))
        return got

    monkeypatch.setattr(RingGroup, "pop", counting_pop)
    specs = [
        StreamSpec(name, partial(create_source, ReplaySourceConfig(name=name, file=REPLAY, rate_hz=2000.0)))
        for name in STREAMS
    ]
    pipeline = Pipeline(
        store=store,
        streams=specs,
        load_bundle=lambda: bundle,
        # paced, so windows are batched while the streams play; the ring holds the whole
        # recording, so none is lost under drop_oldest (whose hub pass hooks are what the agent runs)
        settings=PipelineSettings(max_batch_size=16, buffer_capacity=4096, store_outputs=True),
    )
    pipeline.start()
    deadline = time.monotonic() + 60
    while not all(getattr(s, "finished", False) for s in pipeline.sources().values()) or len(
        pipeline.sources()
    ) < len(STREAMS):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    report = pipeline.stop(timeout=30)
    assert report.completed
    rows = store.query_results(limit=10_000)
    by_stream = {
        s: sorted((r for r in rows if r["stream"] == s), key=lambda r: r["window_seq"]) for s in STREAMS
    }
    assert {s: [r["window_seq"] for r in v] for s, v in by_stream.items()} == {
        s: list(range(396)) for s in STREAMS
    }
    for k in range(396):
        first = by_stream["s0"][k]
        for s in STREAMS[1:]:
            other = by_stream[s][k]
            assert (other["outputs"], other["label"]) == (first["outputs"], first["label"]), (s, k)
    assert group_pops, "no batch came from the ring group"
    # Drained windows may come out of the ring group too (the drain runs the same batcher), so they
    # are not added: the rows above already show each window stored once.
    assert sum(group_pops) <= 4 * 396
