"""The paced replay turn written out for speed gives exactly what the general block loop gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgefleet.agent.sources import ReplaySource, ReplaySourceConfig
from edgefleet.agent.sources.hub import default_hub
from tests.integration.agent.sources.helpers import Collector

pytestmark = pytest.mark.integration


def opened(path: Path, sink: Collector, base: float) -> ReplaySource:
    config = ReplaySourceConfig(name="turns", file=path, loop=True, block_size=16)
    source = ReplaySource(config, sink)
    source._open(default_hub(), 0.0)  # not started on it: the test turns it; pacing starts at 0
    source._base = base  # both sides stamp from the same wall time
    return source


def test_the_written_out_turn_equals_the_block_loop_over_paces_jumps_and_loops(tmp_path: Path) -> None:
    rows = 301  # not a multiple of the block, so blocks end early and loops start mid-block
    path = tmp_path / "rec.csv"
    path.write_text("timestamp,a,b\n" + "".join(f"{i * 0.01:.2f},{i},{-i}\n" for i in range(rows)))
    fast_sink, loop_sink = Collector(), Collector()
    fast, loop = opened(path, fast_sink, 1000.0), opened(path, loop_sink, 1000.0)
    fast.STAMPS_AHEAD = loop.STAMPS_AHEAD = 50  # stamps run out mid-recording too
    blocks_taken = 0
    general = fast._turn_blocks

    def counted(now: float, blocks: int | None = None) -> float | None:
        nonlocal blocks_taken
        blocks_taken += 1
        return general(now, blocks)

    fast._turn_blocks = counted  # type: ignore[method-assign]
    rng = np.random.default_rng(11)
    now = 0.0
    for _ in range(400):
        # mostly a tick's worth, sometimes nothing new, sometimes seconds at once (catching up)
        now += float(rng.choice([0.1, 0.1, 0.1, 0.003, 0.0, 0.55, 2.0]))
        assert fast._turn(now) == loop._turn_blocks(now)
    fast_samples, fast_times = fast_sink.arrays(2)
    loop_samples, loop_times = loop_sink.arrays(2)
    assert len(fast_samples) > 3 * rows  # several loops of the recording
    np.testing.assert_array_equal(fast_samples, loop_samples)
    np.testing.assert_array_equal(fast_times, loop_times)
    assert fast.stats == loop.stats
    # most turns took the written-out path; catching up, new stamps and loops the general one
    assert 20 < blocks_taken < 200
