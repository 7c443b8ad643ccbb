"""Model.predict_encoded on the shipped int8 models: codes quantized at ingest, same answers.

The stream buffer quantizes each sample once (``Model.input_encoder``); the model must then
give exactly what ``predict`` gives for the float windows those codes came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgefleet.errors import ModelError, ModelInputError
from edgefleet.runtime.batcher import Batcher
from edgefleet.runtime.encoding import encode_overlapping_windows
from edgefleet.runtime.loading import load_model
from edgefleet.runtime.ringbuffer import StreamBuffer

pytestmark = pytest.mark.integration

DEMO = Path(__file__).resolve().parents[3] / "models" / "demo"
REPLAY = Path(__file__).resolve().parents[3] / "models" / "data" / "basicmotions_test_stream.csv"
MEAN = [0.2, -0.1, 0.05, 0.0, 0.3, -0.2]
STD = [1.5, 2.0, 0.8, 1.0, 3.0, 0.7]


def demo(name: str) -> Path:
    path = DEMO / name
    if not path.exists():
        pytest.skip(f"{path} is not built (python models/build_demo.py)")
    return path


def recorded_samples() -> np.ndarray:
    return np.loadtxt(REPLAY, delimiter=",", skiprows=1, usecols=range(1, 7), dtype=np.float32)


@pytest.mark.parametrize("normalized", [False, True])
@pytest.mark.parametrize("hop", [10, 50])
def test_codes_from_the_ring_give_predicts_answers_on_real_data(normalized: bool, hop: int) -> None:
    with load_model(demo("basicmotions-int8.tflite")) as model:
        if normalized:
            model.set_input_normalization(MEAN, STD)
        encoder = model.input_encoder()
        assert encoder is not None
        assert encoder.window_shape == (50, 6)
        buffer = StreamBuffer("imu", 6, 1000, window_length=50, hop=hop, policy="block", block_timeout=0.0)
        buffer.attach_encoder(encoder)
        batcher = Batcher([buffer], max_batch_size=32, batch_timeout=0.0)
        samples = recorded_samples()
        compared = 0
        for at in range(0, len(samples), 97):  # odd blocks: batches wrap the ring at varying rows
            block = samples[at : at + 97]
            buffer.push_block(block, at + np.arange(len(block), dtype=np.float64))
            while (batch := batcher.next_batch(timeout=0)) is not None:
                assert batch.codes is not None
                encoded = model.predict_encoded(batch.codes, encoder)
                floats = model.predict(batch.data)
                assert encoded.keys() == floats.keys()
                for name in floats:
                    np.testing.assert_array_equal(encoded[name], floats[name])
                compared += len(batch)
        assert compared == (len(samples) - 50) // hop + 1 - batcher.pending


def test_a_float_input_model_needs_no_encoder() -> None:
    # the demo ONNX model quantizes inside its graph (QDQ): its input is float32
    with load_model(demo("basicmotions-int8.onnx")) as model:
        assert model.input_encoder() is None
        model.set_input_normalization(MEAN, STD)
        assert model.input_encoder() is None


def test_codes_from_a_stale_encoder_are_refused() -> None:
    with load_model(demo("basicmotions-int8.tflite")) as model:
        old = model.input_encoder()
        assert old is not None
        codes = np.zeros((4, 50, 6), np.int8)
        model.set_input_normalization(MEAN, STD)  # new constants: old codes mean other values
        with pytest.raises(ModelInputError) as info:
            model.predict_encoded(codes, old)
        assert "no longer uses" in str(info.value)
        assert "input_encoder()" in (info.value.hint or "")
        fresh = model.input_encoder()
        assert fresh is not None
        assert set(model.predict_encoded(codes, fresh)) == {o.name for o in model.outputs}


@pytest.mark.parametrize(
    ("codes", "got"),
    [
        (np.zeros((4, 50, 6), np.float32), "float32"),
        (np.zeros((4, 50, 5), np.int8), "(4, 50, 5)"),
        (np.zeros((0, 50, 6), np.int8), "(0, 50, 6)"),
        ([[0] * 6] * 50, "list"),
    ],
)
def test_codes_that_do_not_fit_the_tensor_name_it(codes: object, got: str) -> None:
    with load_model(demo("basicmotions-int8.tflite")) as model:
        encoder = model.input_encoder()
        assert encoder is not None
        with pytest.raises(ModelInputError) as info:
            model.predict_encoded(codes, encoder)  # type: ignore[arg-type]
        assert info.value.tensor == model.inputs[0].name
        assert "int8 of shape (N>0, 50, 6)" in (info.value.expected or "")
        assert got in (info.value.got or "")


def test_a_closed_model_refuses_codes() -> None:
    model = load_model(demo("basicmotions-int8.tflite"))
    encoder = model.input_encoder()
    assert encoder is not None
    model.close()
    with pytest.raises(ModelError, match="closed"):
        model.predict_encoded(np.zeros((1, 50, 6), np.int8), encoder)


@pytest.mark.parametrize(
    ("name", "hop", "window", "encoded"),
    [
        ("basicmotions-int8.tflite", 10, 50, True),  # the bundle's windowing: 5 windows per sample
        ("basicmotions-int8.tflite", 50, 50, False),  # no overlap: encoding would only add a call
        ("basicmotions-int8.tflite", 10, 40, False),  # a window shape the model does not take
        ("basicmotions-int8.onnx", 10, 50, False),  # float input: nothing to encode
    ],
)
def test_streams_are_encoded_only_where_it_saves_work(
    name: str, hop: int, window: int, encoded: bool
) -> None:
    with load_model(demo(name)) as model:
        buffer = StreamBuffer("imu", 6, 1000, window_length=window, hop=hop)
        encoder = encode_overlapping_windows(model, buffer)
        assert (encoder is not None) is encoded
        assert buffer.encoder is encoder
