"""``edgefleet model``: inspect, run and benchmark a model file."""

from __future__ import annotations

import argparse
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefleet.cli.arguments import positive_float, positive_int, print_usage
from edgefleet.errors import EdgefleetError, ModelInputError

if TYPE_CHECKING:
    from edgefleet.runtime import Model, ModelInfo, TensorSpec
    from edgefleet.types import AnyArray, NanPolicy

__all__ = ["register"]

_NAN_POLICIES: dict[str, NanPolicy] = {"reject": "reject", "zero": "zero", "allow": "allow"}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    group = subparsers.add_parser("model", help="inspect, run and benchmark a .tflite/.onnx model")
    commands = group.add_subparsers(dest="model_command", metavar="SUBCOMMAND")

    inspect = commands.add_parser("inspect", help="show inputs, outputs, quantization, backend and sha256")
    inspect.add_argument("path", type=Path, metavar="PATH", help=".tflite or .onnx model file")
    inspect.add_argument("--json", action="store_true", help="print the model info as JSON")
    _add_load_options(inspect)
    inspect.set_defaults(handler=_inspect)

    run = commands.add_parser("run", help="run a model on inputs from a .npz/.npy file")
    run.add_argument("path", type=Path, metavar="PATH", help=".tflite or .onnx model file")
    run.add_argument(
        "--input",
        type=Path,
        required=True,
        metavar="IN",
        help=".npz keyed by input name; for a single-input model also a .npy or a one-array .npz",
    )
    run.add_argument(
        "--output", type=Path, required=True, metavar="OUT", help=".npz to write, keyed by output name"
    )
    run.add_argument(
        "--nan-policy",
        choices=tuple(_NAN_POLICIES),
        default="reject",
        help="what to do with NaN/inf inputs (default: reject)",
    )
    _add_load_options(run)
    run.set_defaults(handler=_run)

    bench = commands.add_parser("bench", help="measure latency and throughput")
    bench.add_argument(
        "path",
        type=Path,
        metavar="PATH",
        help=".tflite or .onnx model file: a windowed (batch, length, channels) model, or any fixed-size "
        "input such as an image model (then edgefleet's path is Model.predict)",
    )
    bench.add_argument("--batch", type=positive_int, default=32, metavar="N", help="batch size (default 32)")
    bench.add_argument(
        "--seconds", type=positive_float, default=5.0, metavar="S", help="how long to measure (default 5)"
    )
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.add_argument(
        "--backend", choices=("litert", "onnxruntime"), help="backend (default: from the file extension)"
    )
    bench.add_argument(
        "--threads", type=positive_int, metavar="N", help="LiteRT num_threads / ONNX intra-op threads"
    )
    bench.add_argument(
        "--hop", type=positive_int, metavar="N", help="window hop in samples (default: the window length)"
    )
    bench.add_argument(
        "--push-chunk",
        type=positive_int,
        metavar="N",
        help="samples per push into the ring buffer (default 64, a replay source's block)",
    )
    bench.set_defaults(handler=_bench)

    group.set_defaults(handler=lambda _args: print_usage(group))


def _add_load_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", choices=("litert", "onnxruntime"), help="backend (default: from the file extension)"
    )
    parser.add_argument(
        "--provider",
        action="append",
        dest="providers",
        metavar="NAME",
        help="ONNX execution provider, in preference order (cpu, cuda, tensorrt, openvino, xnnpack "
        "or a full name); repeatable. Unavailable ones fall back to CPU with a warning",
    )
    parser.add_argument(
        "--threads", type=positive_int, metavar="N", help="LiteRT num_threads / ONNX intra-op threads"
    )


def _load(args: argparse.Namespace, *, warmup: bool, nan_policy: str = "reject") -> Model:
    from edgefleet.runtime import load_model

    return load_model(
        args.path,
        backend=args.backend,
        providers=args.providers,
        threads=args.threads,
        nan_policy=_NAN_POLICIES[nan_policy],
        warmup=warmup,
    )


# -- inspect ------------------------------------------------------------------------------------


def _inspect(args: argparse.Namespace) -> int:
    with _load(args, warmup=False) as model:
        info = model.info
    if args.json:
        print(info.model_dump_json(indent=2))
    else:
        print(render_info(info))
    return 0


def _tensor_rows(specs: list[TensorSpec], width: int) -> list[str]:
    from edgefleet.runtime.tensors import format_shape

    rows = []
    for spec in specs:
        quant = "-"
        if spec.quantization is not None:
            q = spec.quantization
            quant = f"scale={q.scale:.6g} zero_point={q.zero_point} (float32 to callers)"
        rows.append(f"  {spec.name:<{width}}  {format_shape(spec.shape):<16} {spec.dtype:<8} {quant}")
    return rows


def render_info(info: ModelInfo) -> str:
    """Human-readable ``model inspect`` output."""
    width = max((len(s.name) for s in info.inputs + info.outputs), default=0)
    lines = [
        f"model      {info.path}",
        f"format     {info.format}",
        f"backend    {info.backend} ({info.runtime})",
        f"providers  {', '.join(info.providers) or '-'}",
        f"sha256     {info.sha256}",
        f"size       {info.size_bytes} bytes",
        "inputs     name, shape (? = dynamic), dtype, quantization",
        *_tensor_rows(info.inputs, width),
        "outputs",
        *_tensor_rows(info.outputs, width),
    ]
    return "\n".join(lines)


# -- run ----------------------------------------------------------------------------------------


def _read_inputs(path: Path, input_names: list[str]) -> AnyArray | dict[str, AnyArray]:
    import numpy as np

    if not path.is_file():
        raise EdgefleetError(f"{path}: no such input file", hint="pass an existing .npz or .npy file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array: AnyArray = np.load(path, allow_pickle=False)
            if len(input_names) != 1:
                raise ModelInputError(
                    f"{path}: a .npy holds one array but the model has inputs {input_names}",
                    expected=f".npz with keys {input_names}",
                    got=".npy",
                    hint="save the inputs with np.savez(path, **{name: array})",
                )
            return array
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                arrays: dict[str, AnyArray] = {key: archive[key] for key in archive.files}
        else:
            raise EdgefleetError(
                f"{path}: unsupported input file type {suffix or '(none)'!r}; expected .npz or .npy",
                hint="save inputs with np.savez (keyed by input name) or np.save",
            )
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise EdgefleetError(
            f"{path}: cannot read the input file: {exc}",
            hint="write it with numpy (np.savez / np.save); pickled object arrays are refused",
        ) from None
    if len(input_names) == 1 and len(arrays) == 1 and input_names[0] not in arrays:
        return next(iter(arrays.values()))  # np.savez(path, x) stores "arr_0"
    return arrays


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    if args.output.suffix.lower() != ".npz":
        raise EdgefleetError(
            f"{args.output}: the output file must end in .npz", hint="e.g. --output outputs.npz"
        )
    with _load(args, warmup=False, nan_policy=args.nan_policy) as model:
        inputs = _read_inputs(args.input, [s.name for s in model.inputs])
        outputs = model.predict(inputs)
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with args.output.open("wb") as handle:
            save: Callable[..., None] = np.savez  # numpy's stub mistypes **arrays
            save(handle, **outputs)
    except OSError as exc:
        raise EdgefleetError(
            f"{args.output}: cannot write the outputs: {exc.strerror}",
            hint="check the directory and permissions",
        ) from None
    for name, array in outputs.items():
        print(f"{name}: shape {list(array.shape)} {array.dtype}")
    print(f"wrote {args.output}")
    return 0


# -- bench --------------------------------------------------------------------------------------


def _bench(args: argparse.Namespace) -> int:
    # Imported here: the benchmark pulls in the ring buffer and batcher, which inspect/run never need.
    from edgefleet.bench import run_benchmark

    report = run_benchmark(
        args.path,
        batch=args.batch,
        seconds=args.seconds,
        backend=args.backend,
        threads=args.threads,
        hop=args.hop,
        push_chunk=args.push_chunk,
    )
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        print(report.render_text())
    return 0
