"""Where the fixed load's CPU goes: edgefleet's core path in one thread, stage by stage.

    python bench/fixed_load_stages.py [--ticks 2000] [--streams 16]

The shape of ``bench/fixed_load.py`` (16 streams x 6 channels, window 50, hop 10, one 10-sample
block per stream per tick, batch 16, the demo int8 LiteRT model) without threads, sources, SQLite
or pacing: ``StreamBuffer.push_block`` per stream per tick, ``Batcher.next_batch`` (the streams'
ring group popped at once, one ``Batch`` per batch; also measured with a pop per stream) and
``Model.predict`` (normalization folded into the model's input quantizer; with several streams
the agent quantizes per batch, not at ingest). Beside it, same run: the hand-written loop's work
per tick (16 windows cut with numpy, normalised and quantized in one pass, LiteRT invoked
directly). CPU time per window; comparing the sum with the agent's CPU per window in
``bench/fixed_load.py`` says how much of it the core path explains.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from agentbench import BUNDLE, model_file

from edgefleet.runtime.batcher import Batcher
from edgefleet.runtime.loading import load_model
from edgefleet.runtime.ring_group import RingGroup
from edgefleet.runtime.ringbuffer import StreamBuffer

WINDOW, HOP, CHANNELS = 50, 10, 6


def edgefleet_stages(
    streams: int, ticks: int, *, encode: bool = False, grouped: bool = True
) -> tuple[float, float, float]:
    """CPU us per window of (push_block, next_batch, predict); with ``encode``, each stream
    quantizes at ingest and the model runs ``predict_encoded`` (the agent does so for one stream).
    ``grouped``: the streams share one :class:`RingGroup` and are popped together (the agent's
    way with several streams); otherwise one pop per stream (the way before ring groups)."""
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    prep = manifest["preprocessing"]
    model = load_model(model_file(), threads=1)
    model.set_input_normalization(prep["mean"], prep["std"])
    buffers = []
    for i in range(streams):
        buf = StreamBuffer(f"s{i:02d}", CHANNELS, window_length=WINDOW, hop=HOP, capacity=4096)
        if encode:
            encoder = model.input_encoder()
            if encoder is None:
                raise SystemExit("the demo model has no input encoder: rebuild models/ (make models)")
            buf.attach_encoder(encoder)
        buffers.append(buf)
    group = RingGroup(buffers) if grouped and streams > 1 else None
    batcher = Batcher(buffers, max_batch_size=streams, batch_timeout=0.05, group=group)
    block = np.random.default_rng(0).standard_normal((HOP, CHANNELS)).astype(np.float32)
    clock = [0.0]

    def push_all() -> None:
        clock[0] += HOP / 100.0
        stamps = np.arange(HOP, dtype=np.float64) / 100.0 + clock[0]
        for buf in buffers:
            buf.push_block(block, stamps)

    for _ in range(WINDOW // HOP):  # fill the first windows
        push_all()
    while batcher.next_batch(timeout=0) is not None:
        pass
    push_cpu = pop_cpu = predict_cpu = 0.0
    windows = 0
    for _ in range(ticks):  # one tick at a time, as the agent: push, one batch, predict
        t0 = time.process_time()
        push_all()
        t1 = time.process_time()
        batch = batcher.next_batch(timeout=0)
        t2 = time.process_time()
        if batch is None:
            raise SystemExit("no full batch after a tick: the stage benchmark is broken")
        codes, encoder = batch.codes, buffers[0].encoder
        if encode and codes is not None and encoder is not None:
            model.predict_encoded(codes, encoder)
        else:
            model.predict(batch.data)
        t3 = time.process_time()
        push_cpu, pop_cpu, predict_cpu = push_cpu + t1 - t0, pop_cpu + t2 - t1, predict_cpu + t3 - t2
        windows += len(batch)
    return push_cpu / windows * 1e6, pop_cpu / windows * 1e6, predict_cpu / windows * 1e6


def hand_written(streams: int, ticks: int) -> float:
    """CPU us per window of the hand-written loop's work per tick (no SQLite, no sleeping)."""
    from ai_edge_litert.interpreter import Interpreter

    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    prep = manifest["preprocessing"]
    mean = np.asarray(prep["mean"], np.float32)
    std = np.asarray(prep["std"], np.float32)
    interpreter = Interpreter(model_path=str(model_file()), num_threads=1)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [streams, WINDOW, CHANNELS])
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    out_index = interpreter.get_output_details()[0]["index"]
    scale, zero = detail["quantization"]
    recording = np.random.default_rng(0).standard_normal((4096, CHANNELS)).astype(np.float32)
    windows = np.empty((streams, WINDOW, CHANNELS), np.float32)
    positions = [i * 97 % recording.shape[0] for i in range(streams)]
    t0 = time.process_time()
    for _ in range(ticks):
        for s in range(streams):
            index = (positions[s] + np.arange(WINDOW)) % recording.shape[0]
            windows[s] = recording[index]
            positions[s] = (positions[s] + HOP) % recording.shape[0]
        quantized = np.clip(np.rint((windows - mean) / std / scale) + zero, -128, 127).astype(np.int8)
        interpreter.set_tensor(detail["index"], quantized)
        interpreter.invoke()
        interpreter.get_tensor(out_index)
    return (time.process_time() - t0) / (ticks * streams) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=16)
    args = parser.parse_args()
    loop_us = hand_written(args.streams, args.ticks)
    push_us, pop_us, predict_us = edgefleet_stages(args.streams, args.ticks)
    _, each_pop_us, _ = edgefleet_stages(args.streams, args.ticks, grouped=False)
    _, enc_pop_us, enc_predict_us = edgefleet_stages(args.streams, args.ticks, encode=True, grouped=False)
    core = push_us + pop_us + predict_us
    shape = f"{args.streams} streams, window {WINDOW}, hop {HOP}, batch {args.streams}"
    print(f"fixed load's shape, one thread: {shape}")
    print(f"  {'stage':44} {'CPU us/window':>14}")
    print(f"  {'StreamBuffer.push_block (per stream per tick)':44} {push_us:14.1f}")
    print(f"  {'Batcher.next_batch (one ring group pop)':44} {pop_us:14.1f}")
    print(f"  {'Model.predict':44} {predict_us:14.1f}")
    print(f"  {'edgefleet core path, total':44} {core:14.1f}")
    print(f"  {'hand-written loop work, same run':44} {loop_us:14.1f}")
    print(f"  core path / hand-written = {core / loop_us:.2f}x")
    print(
        f"  next_batch with a pop per stream instead (no ring group), same run: {each_pop_us:.1f} us/window"
    )
    print(
        f"  with ingest encoding instead (the agent's choice for one stream): next_batch "
        f"{enc_pop_us:.1f} + predict_encoded {enc_predict_us:.1f} = {enc_pop_us + enc_predict_us:.1f}, "
        f"against {pop_us + predict_us:.1f} us/window"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
