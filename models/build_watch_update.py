"""Train version 1.1.0 of the watch edge model: the new version the demo's OTA campaign rolls out.

Same network (:data:`models.build_watch.EDGE_ARCH`), same training subjects (1-8, so the same
normalisation as the shipped 1.0.0 bundle), same fully-int8 LiteRT export; what changes is the
training length, chosen without the held-out subjects:

- ``validate``: trains each of :data:`CANDIDATE_EPOCHS` on subjects 1-6 and measures the int8
  model on subjects 7 and 8; the most accurate there is the recipe (ties: fewer epochs). 1.0.0's
  own recipe (30 epochs) is among the candidates, so "no better" is a possible answer;
- ``model``: trains the chosen recipe on subjects 1-8, exports ``demo/watch-edge-int8-1.1.0.tflite``
  and measures it and the shipped 1.0.0 file on the held-out subjects 9 and 10
  (``demo/watch_update_metrics.json``).

The demo packages and signs the file at start (:mod:`edgefleet.demo_ota`), as keys are per demo run.

    .venv-build/bin/python models/build_watch_update.py                  # validate, then train
    .venv-build/bin/python models/build_watch_update.py --epochs 60      # skip validation
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script: make ``models.build_watch`` importable

from models.build_demo import export_tflite_int8, tflite_predictor  # noqa: E402
from models.build_watch import (  # noqa: E402
    BUNDLE_DIR,
    DEMO_DIR,
    EDGE_ARCH,
    MAX_EDGE_PARAMS,
    MAX_INT8_DROP,
    METRICS,
    SEED,
    VALIDATION_SUBJECTS,
    WatchData,
    param_count,
    score,
    train_keras,
)

VERSION = "1.1.0"
MODEL_FILE = DEMO_DIR / f"watch-edge-int8-{VERSION}.tflite"
UPDATE_METRICS = DEMO_DIR / "watch_update_metrics.json"
SHIPPED_BUNDLE = BUNDLE_DIR / "watch-edge-tflite"
CANDIDATE_EPOCHS = (30, 60, 90)


def int8_probs(model: Any, ds: WatchData, path: Path) -> Any:
    """Export ``model`` fully int8 to ``path`` (calibrated as build_watch does) and run the test windows."""
    export_tflite_int8(model, ds.train_windows[::4], path)
    return tflite_predictor(path)(ds.test_windows)


def stage_validate() -> tuple[int, list[dict[str, Any]]]:
    ds = WatchData(validation=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for epochs in CANDIDATE_EPOCHS:
            probs = int8_probs(train_keras(ds, EDGE_ARCH, epochs), ds, Path(tmp) / f"e{epochs}.tflite")
            acc = float((probs.argmax(axis=1) == ds.test_y).mean())
            conf = float(probs.max(axis=1).mean())
            rows.append(
                {"epochs": epochs, "window_accuracy": round(acc, 4), "mean_confidence": round(conf, 4)}
            )
            print(f"validation: {epochs} epochs -> window accuracy {acc:.4f}, mean confidence {conf:.4f}")
    best = max(rows, key=lambda r: (r["window_accuracy"], -r["epochs"]))
    return int(best["epochs"]), rows


def stage_model(epochs: int, validation: list[dict[str, Any]] | None) -> dict[str, Any]:
    ds = WatchData()
    shipped = json.loads((SHIPPED_BUNDLE / "manifest.json").read_text(encoding="utf-8"))
    prep = shipped["preprocessing"]
    # demo_ota.py packages 1.1.0 with the shipped bundle's normalisation: it must be this model's.
    if not (np.allclose(prep["mean"], ds.mean, atol=1e-6) and np.allclose(prep["std"], ds.std, atol=1e-6)):
        raise SystemExit("the shipped watch-edge-tflite bundle's mean/std differ from subjects 1-8's")
    import tensorflow as tf

    # Keras numbers layer names per process: without this, the file's tensor names (not its
    # weights) would depend on whether the validation stage ran first.
    tf.keras.backend.clear_session()
    model = train_keras(ds, EDGE_ARCH, epochs)
    if param_count(model) > MAX_EDGE_PARAMS:
        raise SystemExit(f"edge model has {param_count(model)} parameters (> {MAX_EDGE_PARAMS})")
    keras_probs = np.asarray(model.predict(ds.test_windows, verbose=0))
    keras_acc = float((keras_probs.argmax(axis=1) == ds.test_y).mean())
    new = score(int8_probs(model, ds, MODEL_FILE), ds)
    if keras_acc - new["window_accuracy"] > MAX_INT8_DROP:
        raise SystemExit(f"int8 loses {keras_acc - new['window_accuracy']:.3f} window accuracy against Keras")
    old_file = SHIPPED_BUNDLE / shipped["model"]["path"]
    old = score(tflite_predictor(old_file)(ds.test_windows), ds)
    old_epochs = json.loads(METRICS.read_text(encoding="utf-8"))["epochs"]
    metrics: dict[str, Any] = {
        "dataset": "held-out subjects 9 and 10, windows of 100 samples, hop 50 (as watch_metrics.json)",
        "seed": SEED,
        "runtime": "ai_edge_litert Interpreter",
        "recipe": f"build_watch.py's edge model and export; {epochs} epochs instead of {old_epochs}",
        "validation": {
            "on": f"trained on subjects 1-6, measured (int8) on subjects {VALIDATION_SUBJECTS[0]} and "
            f"{VALIDATION_SUBJECTS[1]}; the most accurate number of epochs is the recipe",
            "candidates": validation,
        },
        "versions": {
            VERSION: {
                "file": MODEL_FILE.name,
                "size_bytes": MODEL_FILE.stat().st_size,
                "params": param_count(model),
                "epochs": epochs,
                **new,
                "keras_fp32_window_accuracy": round(keras_acc, 4),
            },
            shipped["version"]: {
                "file": old_file.name,
                "size_bytes": old_file.stat().st_size,
                "epochs": old_epochs,
                **old,
            },
        },
    }
    UPDATE_METRICS.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(metrics["versions"], indent=2))
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, help="train this many epochs; no validation stage")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    validation = None
    epochs = args.epochs
    if epochs is None:
        epochs, validation = stage_validate()
    stage_model(epochs, validation)
    return 0


if __name__ == "__main__":
    sys.exit(main())
