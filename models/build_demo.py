"""Train, export, evaluate and bundle the BasicMotions demo models.

Needs TensorFlow for training only (never at run time). One-time setup:

    python -m venv .venv-build && .venv-build/bin/pip install -e '.[build]' ai-edge-litert

Then, from the repository root:

    .venv-build/bin/python models/build_demo.py            # train + export + evaluate + bundle
    .venv-build/bin/python models/build_demo.py --stage bundles   # rebuild bundles from models/demo/*

Stages:

``models``
    Cuts every training series (100 samples at 10 Hz) into windows of 50 samples (5 s) with hop 10,
    normalizes each channel with the training mean/std, trains two 1D CNNs with fixed seeds
    (``edge``: ~3k parameters; ``cloud``: ~15x larger) and exports

    - ``demo/basicmotions-int8.tflite``: fully int8 (int8 input and output) LiteRT model,
    - ``demo/basicmotions-fp32.onnx``: the same network as fp32 ONNX, written with ``onnx.helper``
      from the Keras weights (checked against Keras to 1e-4),
    - ``demo/basicmotions-int8.onnx``: onnxruntime static QDQ int8 quantization of the fp32 ONNX,
    - ``demo/basicmotions-cloud-fp32.onnx``: the larger fp32 "cloud" model,

    and ``demo/metrics.json``: accuracy on the BasicMotions TEST split measured with the real runtimes
    (onnxruntime, ai_edge_litert), window-level and series-level (majority vote), plus int8-vs-fp32
    agreement. Fails if an int8 model loses more than 3 accuracy points against fp32.
``bundles``
    Wraps the exported models into ``bundles/`` with :func:`edgefleet.runtime.bundle.build_bundle`
    (manifest, normalization, reference profile from the training windows, canary cases).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "basicmotions.npz"
STREAM = HERE / "data" / "basicmotions_test_stream.npz"
DEMO_DIR = HERE / "demo"
BUNDLE_DIR = HERE / "bundles"

SEED = 7
WINDOW_LENGTH = 50
HOP = 10
SAMPLE_RATE_HZ = 10.0
VERSION = "1.0.0"
# Fixed so that rebuilding gives byte-identical bundles (the manifest records it).
BUILD_DATE = datetime(2026, 11, 23, tzinfo=timezone.utc)
MAX_INT8_DROP = 0.03
LABEL_SMOOTHING = 0.2
ONNX_OPSET = 17
ONNX_IR_VERSION = 8  # readable by onnxruntime >= 1.14

# (filters, kernel) per Conv1D layer, then hidden Dense widths; the softmax Dense is added at the end.
EDGE_ARCH: dict[str, Any] = {"convs": [(16, 5), (32, 5)], "dense": []}
CLOUD_ARCH: dict[str, Any] = {"convs": [(64, 5), (64, 5), (64, 5)], "dense": [64]}

FArray = npt.NDArray[np.float32]
IArray = npt.NDArray[np.int64]


# --------------------------------------------------------------------------- data


def sliding_windows(series: FArray, window_length: int = WINDOW_LENGTH, hop: int = HOP) -> FArray:
    """(S, T, C) -> (S, W, window_length, C) windows starting every ``hop`` samples."""
    starts = range(0, series.shape[1] - window_length + 1, hop)
    return np.stack([series[:, s : s + window_length, :] for s in starts], axis=1).astype(np.float32)


class Dataset:
    def __init__(self, path: Path = DATA) -> None:
        d = np.load(path)
        self.x_train: FArray = d["X_train"]
        self.y_train: IArray = d["y_train"]
        self.x_test: FArray = d["X_test"]
        self.y_test: IArray = d["y_test"]
        self.labels: list[str] = [str(s) for s in d["labels"]]
        self.channel_names: list[str] = [str(s) for s in d["channel_names"]]
        flat = self.x_train.reshape(-1, self.x_train.shape[2]).astype(np.float64)
        self.mean: FArray = flat.mean(axis=0).astype(np.float32)
        self.std: FArray = flat.std(axis=0).astype(np.float32)
        tr = sliding_windows(self.x_train)
        te = sliding_windows(self.x_test)
        self.windows_per_series = tr.shape[1]
        self.train_windows_raw: FArray = tr.reshape(-1, WINDOW_LENGTH, tr.shape[3])
        self.test_windows_raw: FArray = te.reshape(-1, WINDOW_LENGTH, te.shape[3])
        self.train_window_y: IArray = np.repeat(self.y_train, self.windows_per_series)
        self.test_window_y: IArray = np.repeat(self.y_test, self.windows_per_series)
        self.train_windows = self.normalize(self.train_windows_raw)
        self.test_windows = self.normalize(self.test_windows_raw)

    def normalize(self, windows: FArray) -> FArray:
        return ((windows - self.mean) / self.std).astype(np.float32)


# --------------------------------------------------------------------------- training (TensorFlow)


def train_keras(ds: Dataset, arch: dict[str, Any], epochs: int) -> Any:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    layers: list[Any] = [tf.keras.Input(shape=(WINDOW_LENGTH, ds.train_windows.shape[2]), name="window")]
    for filters, kernel in arch["convs"]:
        layers.append(tf.keras.layers.Conv1D(filters, kernel, padding="valid", activation="relu"))
    layers.append(tf.keras.layers.GlobalAveragePooling1D())
    for width in arch["dense"]:
        layers.append(tf.keras.layers.Dense(width, activation="relu"))
    layers.append(tf.keras.layers.Dense(len(ds.labels), activation="softmax", name="probabilities"))
    model = tf.keras.Sequential(layers)
    # Label smoothing keeps the softmax from saturating at 1.0, so confidence still means something
    # to the agent's cloud fallback (low-confidence windows) and the canaries test real numbers.
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=3e-3),
        loss=tf.keras.losses.CategoricalCrossentropy(label_smoothing=LABEL_SMOOTHING),
        metrics=["accuracy"],
    )
    onehot = np.eye(len(ds.labels), dtype=np.float32)[ds.train_window_y]
    model.fit(ds.train_windows, onehot, epochs=epochs, batch_size=16, shuffle=True, verbose=0)
    return model


def export_tflite_int8(model: Any, calibration: FArray, out: Path) -> None:
    import tensorflow as tf

    def representative() -> Iterator[list[FArray]]:
        for w in calibration:
            yield [w[None, ...]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    out.write_bytes(converter.convert())


# --------------------------------------------------------------------------- ONNX (no tf2onnx)


def keras_to_onnx(model: Any, out: Path, *, name: str) -> None:
    """Write the Conv1D/MaxPool/GAP/Dense Keras network as an fp32 ONNX graph, weight for weight."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits: list[Any] = []
    nodes: list[Any] = [helper.make_node("Transpose", ["window"], ["x_ncl"], perm=[0, 2, 1])]
    current = "x_ncl"
    conv_i = dense_i = 0
    for layer in model.layers:
        kind = type(layer).__name__
        weights = [np.asarray(w, dtype=np.float32) for w in layer.get_weights()]
        if kind == "Conv1D":
            kernel, bias = weights  # keras kernel: (k, in, out); onnx Conv W: (out, in, k)
            w_name, b_name = f"conv{conv_i}_W", f"conv{conv_i}_B"
            inits += [
                numpy_helper.from_array(np.ascontiguousarray(kernel.transpose(2, 1, 0)), w_name),
                numpy_helper.from_array(bias, b_name),
            ]
            nodes += [
                helper.make_node(
                    "Conv",
                    [current, w_name, b_name],
                    [f"conv{conv_i}"],
                    kernel_shape=[kernel.shape[0]],
                    strides=[1],
                    pads=[0, 0],
                ),
                helper.make_node("Relu", [f"conv{conv_i}"], [f"relu{conv_i}"]),
            ]
            current = f"relu{conv_i}"
            conv_i += 1
        elif kind == "MaxPooling1D":
            pool = int(layer.get_config()["pool_size"][0])
            nodes.append(
                helper.make_node("MaxPool", [current], [f"pool{conv_i}"], kernel_shape=[pool], strides=[pool])
            )
            current = f"pool{conv_i}"
        elif kind == "Dropout":
            continue  # identity at inference
        elif kind == "GlobalAveragePooling1D":
            nodes += [
                helper.make_node("GlobalAveragePool", [current], ["gap"]),
                helper.make_node("Flatten", ["gap"], ["features"], axis=1),
            ]
            current = "features"
        elif kind == "Dense":
            kernel, bias = weights  # (in, out)
            w_name, b_name = f"dense{dense_i}_W", f"dense{dense_i}_B"
            inits += [numpy_helper.from_array(kernel, w_name), numpy_helper.from_array(bias, b_name)]
            out_name = f"dense{dense_i}"
            nodes.append(helper.make_node("Gemm", [current, w_name, b_name], [out_name]))
            activation = layer.get_config()["activation"]
            if activation == "relu":
                nodes.append(helper.make_node("Relu", [out_name], [f"{out_name}_relu"]))
                current = f"{out_name}_relu"
            elif activation == "softmax":
                nodes.append(helper.make_node("Softmax", [out_name], ["probabilities"], axis=1))
                current = "probabilities"
            else:
                raise ValueError(f"unsupported Dense activation {activation!r}")
            dense_i += 1
        else:
            raise ValueError(f"unsupported layer {kind}")
    if current != "probabilities":
        raise ValueError("the network must end in a softmax Dense layer")
    window_length = int(model.input_shape[1])
    channels = int(model.input_shape[2])
    n_classes = int(model.output_shape[1])
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["batch", window_length, channels])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_classes])],
        initializer=inits,
    )
    onnx_model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="edgefleet-build_demo"
    )
    onnx_model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(out))


def quantize_onnx_int8(fp32: Path, out: Path, calibration: FArray) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class TrainWindows(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter(calibration[i : i + 16] for i in range(0, len(calibration), 16))

        def get_next(self) -> dict[str, FArray] | None:
            batch = next(self._it, None)
            return None if batch is None else {"window": batch}

    quantize_static(
        str(fp32),
        str(out),
        TrainWindows(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=CalibrationMethod.MinMax,
    )


# --------------------------------------------------------------------------- evaluation (real runtimes)

Predict = Callable[[FArray], FArray]


def onnx_predictor(path: Path) -> Predict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def predict(x: FArray) -> FArray:
        return np.asarray(session.run(["probabilities"], {"window": x})[0], dtype=np.float32)

    return predict


def tflite_predictor(path: Path) -> Predict:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    outp = interp.get_output_details()[0]

    def predict(x: FArray) -> FArray:
        scale, zero = inp["quantization"]
        q = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
        rows = []
        for i in range(len(q)):  # batch 1 is the converter's natural input shape
            interp.set_tensor(inp["index"], q[i : i + 1])
            interp.invoke()
            o_scale, o_zero = outp["quantization"]
            raw = interp.get_tensor(outp["index"]).astype(np.float32)
            rows.append((raw - o_zero) * o_scale)
        return np.concatenate(rows).astype(np.float32)

    return predict


def score(probs: FArray, ds: Dataset) -> dict[str, float]:
    pred = probs.argmax(axis=1)
    window_acc = float((pred == ds.test_window_y).mean())
    per_series = pred.reshape(-1, ds.windows_per_series)
    mean_probs = probs.reshape(-1, ds.windows_per_series, probs.shape[1]).mean(axis=1)
    votes = []
    for row, tie_break in zip(per_series, mean_probs, strict=True):
        counts = np.bincount(row, minlength=probs.shape[1]).astype(np.float64)
        votes.append(int(np.argmax(counts + 1e-3 * tie_break)))  # majority; mean prob breaks ties
    series_acc = float((np.array(votes) == ds.y_test).mean())
    return {
        "window_accuracy": round(window_acc, 4),
        "series_accuracy": round(series_acc, 4),
        "mean_confidence": round(float(probs.max(axis=1).mean()), 4),
        "min_confidence": round(float(probs.max(axis=1).min()), 4),
    }


def score_stream(predict: Predict, ds: Dataset) -> dict[str, float | int]:
    """Accuracy on ``data/basicmotions_test_stream.npz`` as the agent sees it: windows of 50, hop 10,
    over the concatenated test series. A window is labelled with its majority activity; ``pure``
    windows lie inside one series, the others straddle two activities."""
    with np.load(STREAM) as s:
        samples, label = s["samples"], s["label"]
    starts = np.arange(0, len(samples) - WINDOW_LENGTH + 1, HOP)
    windows = np.stack([samples[i : i + WINDOW_LENGTH] for i in starts])
    truth = np.array([np.bincount(label[i : i + WINDOW_LENGTH]).argmax() for i in starts])
    pure = np.array([len(set(label[i : i + WINDOW_LENGTH].tolist())) == 1 for i in starts])
    pred = predict(ds.normalize(windows)).argmax(axis=1)
    return {
        "windows": len(starts),
        "pure_windows": int(pure.sum()),
        "accuracy_pure": round(float((pred == truth)[pure].mean()), 4),
        "accuracy_all": round(float((pred == truth).mean()), 4),
    }


def param_count(model: Any) -> int:
    return int(sum(np.prod(w.shape) for w in model.get_weights()))


def stage_models(ds: Dataset, epochs: int) -> dict[str, Any]:
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    paths = {
        "tflite_int8": DEMO_DIR / "basicmotions-int8.tflite",
        "onnx_fp32": DEMO_DIR / "basicmotions-fp32.onnx",
        "onnx_int8": DEMO_DIR / "basicmotions-int8.onnx",
        "cloud_fp32": DEMO_DIR / "basicmotions-cloud-fp32.onnx",
    }
    edge = train_keras(ds, EDGE_ARCH, epochs)
    cloud = train_keras(ds, CLOUD_ARCH, epochs)
    keras_edge = np.asarray(edge.predict(ds.test_windows, verbose=0), dtype=np.float32)
    keras_cloud = np.asarray(cloud.predict(ds.test_windows, verbose=0), dtype=np.float32)

    export_tflite_int8(edge, ds.train_windows, paths["tflite_int8"])
    keras_to_onnx(edge, paths["onnx_fp32"], name="basicmotions_edge")
    keras_to_onnx(cloud, paths["cloud_fp32"], name="basicmotions_cloud")
    quantize_onnx_int8(paths["onnx_fp32"], paths["onnx_int8"], ds.train_windows)

    predictors = {
        key: (tflite_predictor if key.startswith("tflite") else onnx_predictor)(p) for key, p in paths.items()
    }
    probs = {key: predict(ds.test_windows) for key, predict in predictors.items()}
    for key, reference in (("onnx_fp32", keras_edge), ("cloud_fp32", keras_cloud)):
        diff = float(np.abs(probs[key] - reference).max())
        if diff > 1e-4:
            raise SystemExit(f"{key}: ONNX differs from Keras by {diff:.2e} (> 1e-4); exporter bug")
        print(f"{key}: max |onnx - keras| = {diff:.2e}")

    fp32_pred = probs["onnx_fp32"].argmax(axis=1)
    metrics: dict[str, Any] = {
        "dataset": "BasicMotions (UEA), TEST split: 40 series, windows of "
        f"{WINDOW_LENGTH} samples, hop {HOP} -> {len(ds.test_window_y)} windows",
        "window_length": WINDOW_LENGTH,
        "hop": HOP,
        "seed": SEED,
        "epochs": epochs,
        "runtimes": "onnxruntime (CPUExecutionProvider), ai_edge_litert Interpreter",
        "models": {},
    }
    params = {
        "tflite_int8": param_count(edge),
        "onnx_fp32": param_count(edge),
        "onnx_int8": param_count(edge),
        "cloud_fp32": param_count(cloud),
    }
    for key, path in paths.items():
        entry: dict[str, Any] = {"file": path.name, "size_bytes": path.stat().st_size, "params": params[key]}
        entry.update(score(probs[key], ds))
        if key in ("tflite_int8", "onnx_int8"):
            agree = float((probs[key].argmax(axis=1) == fp32_pred).mean())
            entry["agreement_with_fp32"] = round(agree, 4)
            entry["max_abs_prob_diff_vs_fp32"] = round(
                float(np.abs(probs[key] - probs["onnx_fp32"]).max()), 4
            )
        entry["replay_stream"] = score_stream(predictors[key], ds)
        metrics["models"][key] = entry
    fp32_acc = metrics["models"]["onnx_fp32"]["window_accuracy"]
    for key in ("tflite_int8", "onnx_int8"):
        drop = fp32_acc - metrics["models"][key]["window_accuracy"]
        if drop > MAX_INT8_DROP:
            raise SystemExit(f"{key}: int8 loses {drop:.3f} window accuracy against fp32 (> {MAX_INT8_DROP})")
    (DEMO_DIR / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(metrics["models"], indent=2))
    return metrics


# --------------------------------------------------------------------------- bundles


def stage_bundles(ds: Dataset) -> list[Path]:
    from edgefleet.runtime.bundle import Preprocessing, build_bundle

    prep = Preprocessing(
        window_length=WINDOW_LENGTH,
        hop=HOP,
        channels=len(ds.channel_names),
        channel_names=ds.channel_names,
        sample_rate_hz=SAMPLE_RATE_HZ,
        mean=[float(v) for v in ds.mean],
        std=[float(v) for v in ds.std],
    )
    # Canaries: one test window per class (first of each), as raw sensor values.
    canary_idx = [int(np.flatnonzero(ds.test_window_y == c)[0]) for c in range(len(ds.labels))]
    canary = ds.test_windows_raw[canary_idx]
    BUNDLE_DIR.mkdir(parents=True, exist_ok=True)
    specs = [
        (
            "basicmotions-edge-tflite",
            "basicmotions-int8.tflite",
            0.02,
            True,
            "Edge activity classifier, fully int8 LiteRT (1D CNN, 50x6 window).",
        ),
        (
            "basicmotions-edge-onnx",
            "basicmotions-int8.onnx",
            0.02,
            False,
            "Edge activity classifier, int8 QDQ ONNX (1D CNN, 50x6 window).",
        ),
        (
            "basicmotions-cloud",
            "basicmotions-cloud-fp32.onnx",
            1e-4,
            False,
            "Cloud fallback activity classifier, larger fp32 ONNX 1D CNN.",
        ),
    ]
    built: list[Path] = []
    for name, model_file, tol, also_tar, description in specs:
        for tar in (False, True) if also_tar else (False,):
            out = BUNDLE_DIR / (f"{name}-{VERSION}.tar" if tar else name)
            built.append(
                build_bundle(
                    DEMO_DIR / model_file,
                    out,
                    name=name,
                    version=VERSION,
                    task="classification",
                    labels=ds.labels,
                    preprocessing=prep,
                    reference_windows=ds.train_windows_raw,
                    reference_source=f"BasicMotions TRAIN: {len(ds.train_windows_raw)} windows of "
                    f"{WINDOW_LENGTH}, hop {HOP}",
                    canary_windows=canary,
                    canary_tolerance=tol,
                    description=description,
                    tar=tar,
                    overwrite=True,
                    created_at=BUILD_DATE,
                )
            )
            print(f"bundle: {built[-1]}")
    return built


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage", choices=("all", "models", "bundles"), default="all")
    parser.add_argument("--epochs", type=int, default=80)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ds = Dataset()
    if args.stage in ("all", "models"):
        stage_models(ds, args.epochs)
    if args.stage in ("all", "bundles"):
        stage_bundles(ds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
