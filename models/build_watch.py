"""Train, export, evaluate and bundle the smartwatch exercise models used by the cloud fallback.

BasicMotions is too easy to show a fallback (every model scores 100 %). The shoulder-exercise
recordings (``data/watch.npz``, see ``extract_watch.py`` and ``data/ATTRIBUTION.md``) are harder:
7 exercises, 10 subjects, and subjects 9 and 10 held out. A small edge model is clearly weaker
there than a larger convolutional cloud model, which is what the fallback needs.

Needs TensorFlow for training only (never at run time); same venv as ``build_demo.py``:

    .venv-build/bin/python models/build_watch.py                  # validate, train, export, evaluate, bundle
    .venv-build/bin/python models/build_watch.py --keep-cloud     # the same, keeping the shipped cloud model
    .venv-build/bin/python models/build_watch.py --stage validate # only choose the fallback threshold
    .venv-build/bin/python models/build_watch.py --stage bundles  # rebuild bundles from models/demo/watch-*

The ``validate`` stage never sees the held-out subjects: it trains both models on subjects 1-6 and
picks ``fallback.min_confidence`` on subjects 7 and 8 (``fallback_policy`` in the metrics, with what
that threshold then does on the held-out subjects). With ``--shares 0.15 0.2 0.25 0.3`` it also
runs the share-targeted policy (``fallback.target_share``, :mod:`edgefleet.agent.fallback_share`)
there for each share and score, and writes the table and the share and score to ship
(:func:`choose_share`) to ``demo/watch_share_validation.json``; ``--probs-cache FILE.npz`` keeps the
validation models' probabilities so that a second run needs no training.

Windows are 100 samples (2 s at 50 Hz). Training windows start every 20 samples; the evaluation
(and the bundles' ``hop``, what the agent uses) every 50. Each channel is normalized with the
mean/std of the training subjects' samples. Outputs, beside the BasicMotions ones in ``demo/``:

- ``watch-edge-int8.tflite`` (fully int8), ``watch-edge-fp32.onnx``, ``watch-edge-int8.onnx`` (QDQ),
  all the same small 1D CNN with pooling (at most ~5k parameters);
- ``watch-cloud-fp32.onnx``: a larger 1D CNN with pooling (the "cloud" model);
- ``watch_metrics.json``: accuracies on the held-out subjects, measured with the real runtimes;
- ``bundles/watch-edge-tflite``, ``bundles/watch-edge-onnx``, ``bundles/watch-cloud``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script: make ``models.build_demo`` importable

from edgefleet.agent.fallback_share import SCORES, ScoreKind, ShareTarget, uncertainty  # noqa: E402
from models.build_demo import (  # noqa: E402
    Predict,
    export_tflite_int8,
    keras_to_onnx,
    onnx_predictor,
    quantize_onnx_int8,
    tflite_predictor,
)

DATA = HERE / "data" / "watch.npz"
DEMO_DIR = HERE / "demo"
BUNDLE_DIR = HERE / "bundles"
METRICS = DEMO_DIR / "watch_metrics.json"
SHARE_VALIDATION = DEMO_DIR / "watch_share_validation.json"

SEED = 11
WINDOW_LENGTH = 100
TRAIN_HOP = 20
HOP = 50
SAMPLE_RATE_HZ = 50.0
VERSION = "1.0.0"
BUILD_DATE = datetime(2026, 12, 2, tzinfo=timezone.utc)
MAX_INT8_DROP = 0.03
# The fallback threshold is chosen on subjects 7 and 8 with models trained on 1-6 (never on the
# held-out 9 and 10): the largest min_confidence sending at most VALIDATION_SHARE of their windows,
# 5 points under the 30 % because the share moves from one set of subjects to another.
VALIDATION_SUBJECTS = (7, 8)
VALIDATION_SHARE = 0.25
SHARE_WINDOW = 500  # fallback.target_window's default
GOAL_SHARE = 0.30  # issue 15's goal: within GOAL_POINTS of cloud-only, sending at most GOAL_SHARE
GOAL_POINTS = 0.01
MAX_EDGE_PARAMS = 5000
LABEL_SMOOTHING = 0.1

# Conv1D layers as (filters, kernel, max-pool after it or 1), then hidden Dense widths.
# ``dropout`` applies after the pooling and after each hidden Dense (training only).
# The edge model was chosen on validation subjects 7-8 (models trained on 1-6), among variants of at
# most ~5k parameters, by the accuracy of the confidence fallback at 20-30 % sent (validation cloud
# model 0.871): pooling after the first two convolutions gave 0.872 and 0.886 at 30 % (seeds 5 and
# 11), the previous 1k model without pooling 0.860, a 3.3k model without pooling 0.862, 3.8k and
# 4.9k variants with pooling 0.831-0.874; label smoothing 0.1 ranked confidences better than none.
EDGE_ARCH: dict[str, Any] = {"convs": [(8, 7, 2), (16, 5, 2), (16, 5, 1)], "dense": [], "dropout": 0.0}
CLOUD_ARCH: dict[str, Any] = {
    "convs": [(64, 7, 2), (64, 5, 2), (128, 5, 2), (128, 3, 1)],
    "dense": [64],
    "dropout": 0.3,
}

FArray = npt.NDArray[np.float32]
IArray = npt.NDArray[np.int64]


def recording_windows(samples: FArray, hop: int) -> FArray:
    """(T, C) -> (W, WINDOW_LENGTH, C): the windows the agent would cut from one recording."""
    starts = range(0, len(samples) - WINDOW_LENGTH + 1, hop)
    return np.stack([samples[s : s + WINDOW_LENGTH] for s in starts]).astype(np.float32)


class WatchData:
    """The extracted recordings, split by subject, cut into windows and normalized.

    ``validation=True`` never touches the held-out subjects: it trains on subjects 1-6 and "tests"
    on :data:`VALIDATION_SUBJECTS` (7 and 8), which is where the fallback threshold is chosen.
    """

    def __init__(self, path: Path = DATA, *, validation: bool = False) -> None:
        with np.load(path) as d:
            samples: FArray = d["samples"]
            offsets: IArray = d["offsets"]
            self.y: IArray = d["y"]
            self.test: npt.NDArray[np.bool_] = d["test"]
            subject: IArray = d["subject"]
            self.labels: list[str] = [str(s) for s in d["labels"]]
            self.channel_names: list[str] = [str(s) for s in d["channel_names"]]
        recordings = [samples[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
        if validation:
            keep = ~self.test
            recordings = [r for r, k in zip(recordings, keep, strict=True) if k]
            self.y = self.y[keep]
            self.test = np.isin(subject[keep], VALIDATION_SUBJECTS)
        train_recs = [r for r, t in zip(recordings, self.test, strict=True) if not t]
        flat = np.concatenate(train_recs).astype(np.float64)
        self.mean: FArray = flat.mean(axis=0).astype(np.float32)
        self.std: FArray = flat.std(axis=0).astype(np.float32)
        tr_x: list[FArray] = []
        te_x: list[FArray] = []
        tr_y: list[IArray] = []
        te_y: list[IArray] = []
        te_rec: list[IArray] = []
        for i, (rec, y, is_test) in enumerate(zip(recordings, self.y, self.test, strict=True)):
            w = recording_windows(rec, HOP if is_test else TRAIN_HOP)
            (te_x if is_test else tr_x).append(w)
            (te_y if is_test else tr_y).append(np.full(len(w), y, dtype=np.int64))
            if is_test:
                te_rec.append(np.full(len(w), i, dtype=np.int64))
        self.train_windows_raw: FArray = np.concatenate(tr_x)
        self.train_y: IArray = np.concatenate(tr_y)
        self.test_windows_raw: FArray = np.concatenate(te_x)
        self.test_y: IArray = np.concatenate(te_y)
        self.test_recording: IArray = np.concatenate(te_rec)
        self.train_windows = self.normalize(self.train_windows_raw)
        self.test_windows = self.normalize(self.test_windows_raw)

    def normalize(self, windows: FArray) -> FArray:
        return ((windows - self.mean) / self.std).astype(np.float32)


def train_keras(ds: WatchData, arch: dict[str, Any], epochs: int) -> Any:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    layers: list[Any] = [tf.keras.Input(shape=(WINDOW_LENGTH, len(ds.channel_names)), name="window")]
    for filters, kernel, pool in arch["convs"]:
        layers.append(tf.keras.layers.Conv1D(filters, kernel, padding="valid", activation="relu"))
        if pool > 1:
            layers.append(tf.keras.layers.MaxPooling1D(pool))
    layers.append(tf.keras.layers.GlobalAveragePooling1D())
    dropout = float(arch["dropout"])
    if dropout:
        layers.append(tf.keras.layers.Dropout(dropout))
    for width in arch["dense"]:
        layers.append(tf.keras.layers.Dense(width, activation="relu"))
        if dropout:
            layers.append(tf.keras.layers.Dropout(dropout))
    layers.append(tf.keras.layers.Dense(len(ds.labels), activation="softmax", name="probabilities"))
    model = tf.keras.Sequential(layers)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=2e-3),
        loss=tf.keras.losses.CategoricalCrossentropy(label_smoothing=LABEL_SMOOTHING),
        metrics=["accuracy"],
    )
    onehot = np.eye(len(ds.labels), dtype=np.float32)[ds.train_y]
    model.fit(ds.train_windows, onehot, epochs=epochs, batch_size=64, shuffle=True, verbose=0)
    return model


def score(probs: FArray, ds: WatchData) -> dict[str, float]:
    """Window accuracy on the held-out subjects, and per recording by mean probability."""
    pred = probs.argmax(axis=1)
    rec_ids = np.unique(ds.test_recording)
    rec_pred = np.array([probs[ds.test_recording == r].mean(axis=0).argmax() for r in rec_ids])
    return {
        "window_accuracy": round(float((pred == ds.test_y).mean()), 4),
        "recording_accuracy": round(float((rec_pred == ds.y[rec_ids]).mean()), 4),
        "mean_confidence": round(float(probs.max(axis=1).mean()), 4),
    }


def param_count(model: Any) -> int:
    return int(sum(np.prod(w.shape) for w in model.get_weights()))


def fallback_mix(edge: FArray, cloud: FArray, y: IArray, threshold: float) -> tuple[float, float]:
    """(share sent, accuracy) of the confidence policy: windows whose edge top probability is under
    ``threshold`` take the cloud's answer (what the agent's router does)."""
    sent = edge.max(axis=1) < threshold
    pred = np.where(sent, cloud.argmax(axis=1), edge.argmax(axis=1))
    return float(sent.mean()), float((pred == y).mean())


def validation_probs(epochs: int, ds: WatchData, cache: Path | None = None) -> tuple[FArray, FArray]:
    """The int8 edge model's and the cloud model's probabilities on subjects 7 and 8, both trained
    on subjects 1-6 exactly as the shipped ones; ``cache`` (an .npz) saves retraining between runs."""
    import tempfile

    if cache is not None and cache.exists():
        with np.load(cache) as d:
            return d["edge"], d["cloud"]
    edge = train_keras(ds, EDGE_ARCH, epochs)
    cloud = train_keras(ds, CLOUD_ARCH, epochs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "edge.tflite"
        export_tflite_int8(edge, ds.train_windows[::4], path)
        edge_probs = tflite_predictor(path)(ds.test_windows)
    cloud_probs = np.asarray(cloud.predict(ds.test_windows, verbose=0), dtype=np.float32)
    if cache is not None:
        np.savez(cache, edge=edge_probs, cloud=cloud_probs)
    return edge_probs, cloud_probs


def share_mix(
    edge: FArray, cloud: FArray, y: IArray, share: float, kind: ScoreKind, *, window: int | None
) -> tuple[float, float]:
    """(share sent, accuracy) of the share-targeted policy at ``share`` on windows in recording
    order, in batches of 32 through the agent's own :class:`ShareTarget` (``window`` scores kept);
    ``window`` None: the exact least confident ``share`` of all of them (what a perfect estimate of
    the quantile would send)."""
    scores = uncertainty(edge, kind)
    if window is None:
        order = np.argsort(-scores, kind="stable")
        sent = np.zeros(len(scores), dtype=bool)
        sent[order[: round(share * len(scores))]] = True
    else:
        target = ShareTarget(share, window=window, score=kind)
        sent = np.concatenate([target.claim(scores[i : i + 32]) for i in range(0, len(scores), 32)])
    pred = np.where(sent, cloud.argmax(axis=1), edge.argmax(axis=1))
    return float(sent.mean()), float((pred == y).mean())


def validate_shares(edge: FArray, cloud: FArray, y: IArray, shares: Sequence[float]) -> dict[str, Any]:
    """Per target share and uncertainty score, what the share-targeted policy does on the
    validation subjects (exact and streamed with the default ring); printed as a table."""
    cloud_only = float((cloud.argmax(axis=1) == y).mean())
    rows: list[dict[str, Any]] = []
    print(f"validation cloud-only {cloud_only:.4f}; edge-only {float((edge.argmax(axis=1) == y).mean()):.4f}")
    print(
        "score       target  exact: sent  accuracy  vs cloud | streamed (ring 500): sent  accuracy  vs cloud"
    )
    for kind in SCORES:
        for share in shares:
            exact = share_mix(edge, cloud, y, share, kind, window=None)
            streamed = share_mix(edge, cloud, y, share, kind, window=SHARE_WINDOW)
            rows.append(
                {
                    "score": kind,
                    "target_share": share,
                    "exact": {"cloud_share": round(exact[0], 4), "accuracy": round(exact[1], 4)},
                    "streamed": {"cloud_share": round(streamed[0], 4), "accuracy": round(streamed[1], 4)},
                }
            )
            print(
                f"{kind:<11} {share:6.2f}  {exact[0]:11.3f}  {exact[1]:8.4f}  "
                f"{(exact[1] - cloud_only) * 100:+6.1f} pt | {streamed[0]:24.3f}  {streamed[1]:8.4f}  "
                f"{(streamed[1] - cloud_only) * 100:+6.1f} pt"
            )
    chosen = choose_share(rows, cloud_only)
    print(f"chosen: {json.dumps(chosen)}")
    return {"cloud_only": round(cloud_only, 4), "window": SHARE_WINDOW, "chosen": chosen, "rows": rows}


def choose_share(rows: Sequence[dict[str, Any]], cloud_only: float) -> dict[str, Any] | None:
    """The ``fallback.target_share`` and ``fallback.score`` to ship, fixed before the held-out
    subjects are run: the largest share that, streamed in recording order (a wearer's windows one
    recording after another, which the ring follows with a lag, so it sends more than the exact
    share), sends at most GOAL_SHARE of the validation windows and stays within GOAL_POINTS of
    cloud-only both exact and streamed; among the scores at that share, the most accurate streamed."""
    ok = [
        r
        for r in rows
        if r["streamed"]["cloud_share"] <= GOAL_SHARE
        and min(r["exact"]["accuracy"], r["streamed"]["accuracy"]) >= cloud_only - GOAL_POINTS
    ]
    if not ok:
        return None
    share = max(r["target_share"] for r in ok)
    best = max((r for r in ok if r["target_share"] == share), key=lambda r: r["streamed"]["accuracy"])
    return {
        "target_share": share,
        "score": best["score"],
        "rule": f"largest share sending <= {GOAL_SHARE:.0%} streamed and within {GOAL_POINTS * 100:.0f} pt of"
        " cloud-only exact and streamed; at it, the score most accurate streamed",
    }


def stage_validate(epochs: int, *, shares: Sequence[float] = (), cache: Path | None = None) -> dict[str, Any]:
    """Choose ``fallback.min_confidence`` without the held-out subjects: train both models on
    subjects 1-6 exactly as the shipped ones, run the int8 edge model and the cloud model on subjects
    7 and 8, and take the largest threshold (step 0.01) that sends at most VALIDATION_SHARE of those
    windows. ``shares``: also print (and write to SHARE_VALIDATION) what ``fallback.target_share``
    does there at each of them."""
    ds = WatchData(validation=True)
    edge_probs, cloud_probs = validation_probs(epochs, ds, cache)
    if shares:
        table = validate_shares(edge_probs, cloud_probs, ds.test_y, shares)
        SHARE_VALIDATION.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    grid = [round(t, 2) for t in np.arange(0.30, 1.0, 0.01)]
    threshold = max(
        t for t in grid if fallback_mix(edge_probs, cloud_probs, ds.test_y, t)[0] <= VALIDATION_SHARE
    )
    share, accuracy = fallback_mix(edge_probs, cloud_probs, ds.test_y, threshold)
    policy = {
        "policy": "confidence",
        "min_confidence": threshold,
        "chosen_on": f"subjects {VALIDATION_SUBJECTS[0]} and {VALIDATION_SUBJECTS[1]} "
        f"({len(ds.test_y)} windows, hop {HOP}) with both models trained on subjects 1-6; "
        f"largest threshold sending <= {VALIDATION_SHARE:.0%} of them",
        "validation": {
            "edge_only": round(float((edge_probs.argmax(axis=1) == ds.test_y).mean()), 4),
            "cloud_only": round(float((cloud_probs.argmax(axis=1) == ds.test_y).mean()), 4),
            "cloud_share": round(share, 4),
            "accuracy": round(accuracy, 4),
        },
    }
    print(json.dumps(policy, indent=2))
    return policy


def stage_models(
    ds: WatchData, epochs: int, *, keep_cloud: bool = False, policy: dict[str, Any] | None = None
) -> dict[str, Any]:
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    paths = {
        "edge_tflite_int8": DEMO_DIR / "watch-edge-int8.tflite",
        "edge_onnx_fp32": DEMO_DIR / "watch-edge-fp32.onnx",
        "edge_onnx_int8": DEMO_DIR / "watch-edge-int8.onnx",
        "cloud_fp32": DEMO_DIR / "watch-cloud-fp32.onnx",
    }
    edge = train_keras(ds, EDGE_ARCH, epochs)
    if param_count(edge) > MAX_EDGE_PARAMS:
        raise SystemExit(f"edge model has {param_count(edge)} parameters (> {MAX_EDGE_PARAMS})")
    keras_edge = np.asarray(edge.predict(ds.test_windows, verbose=0), dtype=np.float32)
    previous = json.loads(METRICS.read_text(encoding="utf-8")) if METRICS.exists() else {}
    cloud: Any = None
    cloud_params = int(previous.get("models", {}).get("cloud_fp32", {}).get("params", 0))
    if not keep_cloud:
        cloud = train_keras(ds, CLOUD_ARCH, epochs)
        cloud_params = param_count(cloud)
        keras_cloud = np.asarray(cloud.predict(ds.test_windows, verbose=0), dtype=np.float32)
    elif not paths["cloud_fp32"].exists() or not cloud_params:
        raise SystemExit(
            "--keep-cloud needs the shipped watch-cloud-fp32.onnx and its entry in watch_metrics.json"
        )

    # Calibrate on every 4th training window: plenty for min/max, and keeps the build quick.
    calibration = ds.train_windows[::4]
    export_tflite_int8(edge, calibration, paths["edge_tflite_int8"])
    keras_to_onnx(edge, paths["edge_onnx_fp32"], name="watch_edge")
    if cloud is not None:
        keras_to_onnx(cloud, paths["cloud_fp32"], name="watch_cloud")
    quantize_onnx_int8(paths["edge_onnx_fp32"], paths["edge_onnx_int8"], calibration)

    predictors: dict[str, Predict] = {
        key: (tflite_predictor if key.endswith("tflite_int8") else onnx_predictor)(p)
        for key, p in paths.items()
    }
    probs = {key: predict(ds.test_windows) for key, predict in predictors.items()}
    references = [("edge_onnx_fp32", keras_edge)] + (
        [("cloud_fp32", keras_cloud)] if cloud is not None else []
    )
    for key, reference in references:
        diff = float(np.abs(probs[key] - reference).max())
        if diff > 1e-4:
            raise SystemExit(f"{key}: ONNX differs from Keras by {diff:.2e} (> 1e-4); exporter bug")
    metrics: dict[str, Any] = {
        "dataset": "smartwatch shoulder exercises (Burns et al. 2018), held-out subjects 9 and 10: "
        f"{len(np.unique(ds.test_recording))} recordings, windows of {WINDOW_LENGTH} samples, hop {HOP} "
        f"-> {len(ds.test_y)} windows",
        "window_length": WINDOW_LENGTH,
        "hop": HOP,
        "train_hop": TRAIN_HOP,
        "seed": SEED,
        "epochs": epochs,
        "runtimes": "onnxruntime (CPUExecutionProvider), ai_edge_litert Interpreter",
        "models": {},
    }
    fp32_pred = probs["edge_onnx_fp32"].argmax(axis=1)
    for key, path in paths.items():
        params = cloud_params if key == "cloud_fp32" else param_count(edge)
        entry: dict[str, Any] = {"file": path.name, "size_bytes": path.stat().st_size, "params": params}
        entry.update(score(probs[key], ds))
        if key.endswith("int8"):
            entry["agreement_with_fp32"] = round(float((probs[key].argmax(axis=1) == fp32_pred).mean()), 4)
        metrics["models"][key] = entry
    fp32_acc = metrics["models"]["edge_onnx_fp32"]["window_accuracy"]
    for key in ("edge_tflite_int8", "edge_onnx_int8"):
        drop = fp32_acc - metrics["models"][key]["window_accuracy"]
        if drop > MAX_INT8_DROP:
            raise SystemExit(f"{key}: int8 loses {drop:.3f} window accuracy against fp32 (> {MAX_INT8_DROP})")
    if keep_cloud:
        metrics["cloud_model"] = "kept from the previous build (--keep-cloud), re-measured here"
    policy = policy or previous.get("fallback_policy")
    if policy:
        share, accuracy = fallback_mix(
            probs["edge_tflite_int8"], probs["cloud_fp32"], ds.test_y, policy["min_confidence"]
        )
        metrics["fallback_policy"] = {
            **policy,
            "held_out": {"cloud_share": round(share, 4), "accuracy": round(accuracy, 4)},
        }
    METRICS.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(metrics["models"], indent=2))
    return metrics


def stage_bundles(ds: WatchData) -> list[Path]:
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
    canary_idx = [int(np.flatnonzero(ds.test_y == c)[0]) for c in range(len(ds.labels))]
    canary = ds.test_windows_raw[canary_idx]
    # The reference profile comes from the training subjects, every 5th window (one per 2 s).
    reference = ds.train_windows_raw[::5]
    specs = [
        (
            "watch-edge-tflite",
            "watch-edge-int8.tflite",
            0.02,
            "Edge shoulder-exercise classifier, fully int8 LiteRT.",
        ),
        (
            "watch-edge-onnx",
            "watch-edge-int8.onnx",
            0.02,
            "Edge shoulder-exercise classifier, int8 QDQ ONNX.",
        ),
        (
            "watch-cloud",
            "watch-cloud-fp32.onnx",
            1e-4,
            "Cloud fallback shoulder-exercise classifier, fp32 ONNX CNN.",
        ),
    ]
    BUNDLE_DIR.mkdir(parents=True, exist_ok=True)
    built: list[Path] = []
    for name, model_file, tol, description in specs:
        built.append(
            build_bundle(
                DEMO_DIR / model_file,
                BUNDLE_DIR / name,
                name=name,
                version=VERSION,
                task="classification",
                labels=ds.labels,
                preprocessing=prep,
                reference_windows=reference,
                reference_source=f"watch training subjects 1-8: {len(reference)} windows of {WINDOW_LENGTH}",
                canary_windows=canary,
                canary_tolerance=tol,
                description=description,
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
    parser.add_argument("--stage", choices=("all", "validate", "models", "bundles"), default="all")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--keep-cloud", action="store_true", help="retrain only the edge model; keep the shipped cloud model"
    )
    parser.add_argument(
        "--shares",
        type=float,
        nargs="+",
        default=(),
        help="validate stage: also print what fallback.target_share does at these shares",
    )
    parser.add_argument(
        "--probs-cache", type=Path, help="validate stage: keep the validation probabilities in this .npz"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ds = WatchData()
    print(f"train windows {ds.train_windows.shape}, test windows {ds.test_windows.shape}")
    policy = (
        stage_validate(args.epochs, shares=args.shares, cache=args.probs_cache)
        if args.stage in ("all", "validate")
        else None
    )
    if args.stage in ("all", "models"):
        stage_models(ds, args.epochs, keep_cloud=args.keep_cloud, policy=policy)
    if args.stage in ("all", "bundles"):
        stage_bundles(ds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
