"""Model runtime: load ``.tflite`` (LiteRT) and ``.onnx`` (ONNX Runtime) models and run them.

>>> from edgefleet.runtime import load_model
>>> with load_model("models/demo/har_int8.tflite") as model:   # doctest: +SKIP
...     scores = model.predict(windows)["scores"]                  # float32, any batch size
"""

from __future__ import annotations

from edgefleet.runtime.backends import BACKENDS, available_backends, supported_extensions
from edgefleet.runtime.loading import load_model
from edgefleet.runtime.model import Model
from edgefleet.runtime.tensors import ModelFormat, ModelInfo, QuantParams, TensorSpec

__all__ = [
    "BACKENDS",
    "Model",
    "ModelFormat",
    "ModelInfo",
    "QuantParams",
    "TensorSpec",
    "available_backends",
    "load_model",
    "supported_extensions",
]

if __name__ != "edgefleet.runtime":
    # With the repository root on sys.path this folder is also reachable as 'runtime': two names
    # would load every module twice, as two module objects with their own state and classes.
    # (Checked last, after the imports above, which name edgefleet.runtime anyway.)
    raise ImportError(
        f"this folder is the package edgefleet.runtime; import it as edgefleet.runtime, not as {__name__!r}"
    )
