"""Real bundle versions for OTA tests, made from the demo bundle.

:func:`make_version` copies ``models/bundles/basicmotions-edge-tflite``, sets its manifest version
and re-signs it with a test key. ``std_scale`` > 1 makes a *consistent but bad* model: its
normalisation squashes every window towards zero, so it answers with low confidence; its
canaries are re-recorded with the real model so that it passes validation (as a badly trained
but correctly packaged model would) and only probation can catch it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgefleet.runtime.bundle import load_bundle
from edgefleet.runtime.bundle_signing import sign_bundle

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = REPO_ROOT / "models" / "bundles" / "basicmotions-edge-tflite"
WATCH = REPO_ROOT / "models" / "bundles" / "watch-edge-tflite"


def _manifest(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((path / "manifest.json").read_text())
    return data


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def make_version(
    dest: Path,
    version: str,
    key: Path | None,
    *,
    source: Path = DEMO,
    std_scale: float = 1.0,
    edit: Any = None,
) -> Path:
    """A signed (when ``key``) copy of ``source`` at ``version``; see the module doc."""
    shutil.copytree(source, dest)
    (dest / "manifest.sig").unlink(missing_ok=True)
    manifest = _manifest(dest)
    manifest["version"] = version
    if std_scale != 1.0:
        prep = manifest["preprocessing"]
        prep["std"] = [s * std_scale for s in prep["std"]]
        write_manifest(dest, manifest)
        bundle = load_bundle(dest)
        model = bundle.open_model()
        try:
            inputs = bundle.canary_inputs()
            for case in manifest["canary"]:
                outputs = model.predict(bundle.preprocess(inputs[case["index"] : case["index"] + 1]))
                for name in case["expected"]:
                    case["expected"][name] = np.asarray(outputs[name], dtype=np.float64).ravel().tolist()
                case["expected_label"] = bundle.interpret(outputs)[0].label
        finally:
            model.close()
    if edit is not None:
        edit(manifest)
    write_manifest(dest, manifest)
    if key is not None:
        sign_bundle(dest, key)
    return dest


def replace_model_file(bundle: Path, model_bytes: bytes, name: str, fmt: str) -> None:
    """Put another model file into ``bundle`` and fix the manifest's file entry (sha256, size)."""
    manifest = _manifest(bundle)
    (bundle / manifest["model"]["path"]).unlink()
    (bundle / name).write_bytes(model_bytes)
    manifest["model"] = {
        "path": name,
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "size_bytes": len(model_bytes),
        "format": fmt,
    }
    write_manifest(bundle, manifest)


ONNX_BASE = REPO_ROOT / "models" / "bundles" / "basicmotions-edge-onnx"


def _onnx_model(
    nodes: list[Any], initializers: list[Any], extra_opsets: dict[str, int] | None = None
) -> bytes:
    from onnx import TensorProto, helper

    window = helper.make_tensor_value_info("window", TensorProto.FLOAT, [None, 50, 6])
    probs = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph(nodes, "candidate", [window], [probs], initializer=initializers)
    opsets = [helper.make_opsetid("", 18)] + [
        helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()
    ]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _head() -> tuple[list[Any], list[Any]]:
    """window (N, 50, 6) -> mean over time (N, 6) -> MatMul (6, 4) -> Softmax: probabilities."""
    from onnx import helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((6, 4), dtype=np.float32) * 0.1, "w")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("ReduceMean", ["window", "axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
    ]
    return nodes, [weights, axes]


def custom_op_model() -> bytes:
    """A model whose last step is a vendor op no runtime here provides."""
    from onnx import helper

    nodes, inits = _head()
    nodes.append(helper.make_node("FancySoftmax", ["logits"], ["probabilities"], domain="com.example.vendor"))
    return _onnx_model(nodes, inits, {"com.example.vendor": 1})


def hanging_model() -> bytes:
    """A model that never finishes a batch: a Loop of 10**15 iterations feeds its output."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = _head()
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "one"], ["acc_out"]),
        ],
        "spin",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1]),
        ],
        initializer=[numpy_helper.from_array(np.ones(1, dtype=np.float32), "one")],
    )
    inits += [
        numpy_helper.from_array(np.array(10**15, dtype=np.int64), "trips"),
        numpy_helper.from_array(np.array(True), "go"),
        numpy_helper.from_array(np.zeros(1, dtype=np.float32), "acc0"),
        numpy_helper.from_array(np.zeros(1, dtype=np.float32), "zero"),
    ]
    nodes += [
        helper.make_node("Loop", ["trips", "go", "acc0"], ["acc"], body=body),
        helper.make_node("Mul", ["acc", "zero"], ["nothing"]),
        helper.make_node("Add", ["logits", "nothing"], ["shifted"]),
        helper.make_node("Softmax", ["shifted"], ["probabilities"], axis=1),
    ]
    return _onnx_model(nodes, inits)


def onnx_candidate(dest: Path, version: str, key: Path | None, model_bytes: bytes) -> Path:
    """The ONNX demo bundle at ``version`` with ``model_bytes`` as its model, signed with ``key``."""
    make_version(dest, version, None, source=ONNX_BASE)
    replace_model_file(dest, model_bytes, "candidate.onnx", "onnx")
    if key is not None:
        sign_bundle(dest, key)
    return dest
