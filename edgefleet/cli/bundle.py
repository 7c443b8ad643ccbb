"""``edgefleet bundle``: build, verify and inspect model bundles."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefleet.cli.arguments import positive_int, print_usage
from edgefleet.errors import BundleError, EdgefleetError

if TYPE_CHECKING:
    from edgefleet.runtime.bundle import Bundle, Preprocessing
    from edgefleet.runtime.bundle_verify import VerifyReport
    from edgefleet.types import FloatArray

__all__ = ["register"]

_REFERENCE_KEYS = ("X_train", "windows", "X", "samples")
# Mirrors edgefleet.runtime.bundle_manifest.Task; kept literal so `edgefleet --help` stays fast.
TASKS = ("classification", "regression", "detection", "raw")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    group = subparsers.add_parser("bundle", help="build, verify and inspect model bundles")
    commands = group.add_subparsers(dest="bundle_command", metavar="SUBCOMMAND")

    build = commands.add_parser(
        "build",
        help="wrap a .tflite/.onnx model with its manifest, normalization, reference profile and canaries",
        description="Build a bundle directory (or --tar archive). Normalization comes from --mean/--std "
        "or is computed from --reference-data, which also yields the drift reference profile and the "
        "canary windows.",
    )
    build.add_argument("--model", type=Path, required=True, help=".tflite or .onnx model file")
    build.add_argument("--name", help="bundle name (default: the model file's stem)")
    build.add_argument("--version", required=True, help="semantic version, e.g. 1.0.0")
    build.add_argument(
        "--task",
        choices=TASKS,
        default="classification",
        help="classification (default; needs --labels, results carry a label and confidence); "
        "regression, detection or raw: results carry the model's output values, no label",
    )
    build.add_argument("--labels", type=_csv, help="comma-separated class labels, in output order")
    build.add_argument("--window-length", type=positive_int, required=True, help="samples per window")
    build.add_argument("--hop", type=positive_int, help="samples between windows (default: window length)")
    build.add_argument("--channel-names", type=_csv, help="comma-separated channel names")
    build.add_argument("--sample-rate-hz", type=float, help="sensor sample rate (Hz)")
    build.add_argument("--mean", type=_csv_floats, help="per-channel mean, comma-separated")
    build.add_argument("--std", type=_csv_floats, help="per-channel std, comma-separated")
    build.add_argument(
        "--reference-data",
        type=Path,
        metavar="NPZ",
        help="training data: (series, time, channels) or (time, channels) raw samples; also read: "
        "labels, channel_names, sample_rate_hz",
    )
    build.add_argument(
        "--reference-key", help=f"array in NPZ (default: first of {', '.join(_REFERENCE_KEYS)})"
    )
    build.add_argument(
        "--canaries", type=int, default=4, metavar="N", help="canary windows to store (default 4)"
    )
    build.add_argument("--canary-tolerance", type=float, help="max |diff| for canary outputs")
    build.add_argument("--description", default="", help="free text stored in the manifest")
    build.add_argument("--out", type=Path, required=True, help="bundle directory, or .tar file with --tar")
    build.add_argument("--tar", action="store_true", help="write a single .tar archive")
    build.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    build.set_defaults(handler=_build)

    verify = commands.add_parser("verify", help="check hashes, model tensors and canaries")
    verify.add_argument("path", type=Path, metavar="PATH", help="bundle directory or .tar")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--no-canary", action="store_true", help="skip running the canary cases")
    verify.add_argument(
        "--trust",
        type=Path,
        nargs="+",
        metavar="PUBLIC_KEY",
        help="also require manifest.sig to verify against one of these public keys",
    )
    verify.set_defaults(handler=_verify)

    sign = commands.add_parser(
        "sign",
        help="add a detached Ed25519 signature (manifest.sig) over the bundle's manifest",
        description="Integrity-check the bundle, then write manifest.sig (replacing an older one) into "
        "the bundle directory or .tar. The manifest carries every file's sha256, so the signature "
        "covers the whole bundle.",
    )
    sign.add_argument("path", type=Path, metavar="BUNDLE", help="bundle directory or .tar")
    sign.add_argument(
        "--key", type=Path, required=True, metavar="PRIVATE_KEY", help="from `edgefleet keys generate`"
    )
    sign.set_defaults(handler=_sign)

    inspect = commands.add_parser("inspect", help="show a bundle's manifest")
    inspect.add_argument("path", type=Path, metavar="PATH", help="bundle directory or .tar")
    inspect.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    inspect.set_defaults(handler=_inspect)

    group.set_defaults(handler=lambda _args: print_usage(group))


def _csv(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def _csv_floats(text: str) -> list[float]:
    try:
        return [float(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


# ------------------------------------------------------------------------------------------ build


def _load_reference(path: Path, key: str | None) -> tuple[FloatArray, dict[str, Any]]:
    """The raw reference array and any metadata (labels, channel_names, sample_rate_hz) in the npz."""
    import numpy as np

    from edgefleet.cli.numpy_files import check_numpy_file

    if path.is_file():
        try:
            check_numpy_file(path)
        except EdgefleetError as exc:
            raise BundleError(f"cannot read reference data: {exc.message}", hint=exc.hint) from None
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(
            f"cannot read reference data {path}: {exc}", hint="pass an .npz written by numpy.savez"
        ) from exc
    with data:
        keys = list(data.files)
        chosen = key or next((k for k in _REFERENCE_KEYS if k in keys), None)
        if chosen is None or chosen not in keys:
            raise BundleError(
                f"reference data {path} has no array {chosen or ' / '.join(_REFERENCE_KEYS)!r}; "
                f"it holds {keys}",
                hint="name the array with --reference-key",
            )
        arr = np.asarray(data[chosen], dtype=np.float32)
        meta = {k: data[k] for k in ("labels", "channel_names", "sample_rate_hz") if k in keys}
    if arr.ndim == 2:
        arr = arr[None, ...]
    if arr.ndim != 3:
        raise BundleError(
            f"reference array {chosen!r} has shape {arr.shape}; expected (series, time, channels) or "
            "(time, channels)",
            hint="store raw samples time-major, channels last",
        )
    return arr, meta


def _cut(series: FloatArray, window_length: int, hop: int) -> FloatArray:
    import numpy as np

    if series.shape[1] < window_length:
        raise BundleError(
            f"reference series have {series.shape[1]} samples; a window needs {window_length}",
            hint="use longer reference series or a shorter --window-length",
        )
    starts = range(0, series.shape[1] - window_length + 1, hop)
    return np.concatenate([series[:, s : s + window_length, :] for s in starts]).astype(np.float32)


def _preprocessing(
    args: argparse.Namespace, series: FloatArray | None, meta: dict[str, Any]
) -> Preprocessing:
    import numpy as np
    from pydantic import ValidationError

    from edgefleet.runtime.bundle import Preprocessing

    mean, std = args.mean, args.std
    if (mean is None) != (std is None):
        raise BundleError("--mean and --std go together", hint="pass both, or neither with --reference-data")
    if mean is None:
        if series is None:
            raise BundleError(
                "no normalization: pass --mean and --std, or --reference-data to compute them",
                hint="for un-normalized models pass --mean 0,0,... --std 1,1,...",
            )
        flat = series.reshape(-1, series.shape[2]).astype(np.float64)
        mean = [float(v) for v in flat.mean(axis=0)]
        std = [float(v) if v > 0 else 1.0 for v in flat.std(axis=0)]
    channels = len(mean)
    names = (
        args.channel_names
        or [str(n) for n in meta.get("channel_names", [])]
        or [f"ch{i}" for i in range(channels)]
    )
    rate = args.sample_rate_hz or (float(meta["sample_rate_hz"]) if "sample_rate_hz" in meta else None)
    if rate is None:
        raise BundleError("the sample rate is unknown", hint="pass --sample-rate-hz")
    try:
        return Preprocessing(
            window_length=args.window_length,
            hop=args.hop or args.window_length,
            channels=channels,
            channel_names=names,
            sample_rate_hz=rate,
            mean=mean,
            std=std,
        )
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'preprocessing'}: {e['msg']}" for e in exc.errors()]
        raise BundleError(
            "invalid preprocessing settings",
            problems=problems,
            hint="--mean, --std and --channel-names need one entry per channel",
        ) from exc


def _build(args: argparse.Namespace) -> int:
    import numpy as np
    from pydantic import ValidationError

    from edgefleet.runtime.bundle import build_bundle
    from edgefleet.runtime.bundle_verify import verify_bundle

    series: FloatArray | None = None
    meta: dict[str, Any] = {}
    if args.reference_data is not None:
        series, meta = _load_reference(args.reference_data, args.reference_key)
    prep = _preprocessing(args, series, meta)
    labels = args.labels or [str(v) for v in meta.get("labels", [])]
    windows = canaries = None
    if series is not None:
        windows = _cut(series, prep.window_length, prep.hop)
        count = min(max(args.canaries, 0), len(windows))
        if count:
            canaries = windows[np.linspace(0, len(windows) - 1, count).round().astype(int)]
    try:
        out = build_bundle(
            args.model,
            args.out,
            name=args.name or args.model.stem,
            version=args.version,
            task=args.task,
            preprocessing=prep,
            labels=labels,
            reference_windows=windows,
            reference_source=f"{args.reference_data.name}: {len(windows)} windows"
            if windows is not None
            else "",
            canary_windows=canaries,
            canary_tolerance=args.canary_tolerance,
            description=args.description,
            tar=args.tar,
            overwrite=args.force,
        )
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']}" for e in exc.errors()]
        raise BundleError(
            "invalid bundle settings", problems=problems, hint="fix the listed options and build again"
        ) from exc
    _print_report(verify_bundle(out))
    print(f"built {out}")
    return 0


# ----------------------------------------------------------------------------------- verify/inspect


def _print_report(report: VerifyReport) -> None:
    title = f"{report.name} {report.version}" if report.name else report.path
    print(f"{title}: {'OK' if report.ok else 'FAILED'}")
    for check in report.checks:
        print(f"  [{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}")


def _sign(args: argparse.Namespace) -> int:
    from edgefleet.runtime.bundle_signing import sign_bundle

    signer = sign_bundle(args.path, args.key)
    print(f"signed {args.path} with key {signer}")
    return 0


def _check_signature(path: Path, trust: list[Path]) -> str:
    """The verifying key's id; BundleError (printed as ``error: ...``) when the signature fails."""
    import tempfile

    from edgefleet.runtime.bundle import load_bundle
    from edgefleet.runtime.bundle_signing import load_trusted_keys

    trusted = load_trusted_keys(trust)
    with tempfile.TemporaryDirectory(prefix="edgefleet-verify-") as cache:
        # load_bundle checks the signature before the manifest is parsed, then every file's sha256.
        bundle = load_bundle(path, cache_dir=cache, trusted_keys=trusted)
        signed = (bundle.path / "manifest.sig").read_text(encoding="utf-8")
    return str(json.loads(signed)["key_id"])


def _verify(args: argparse.Namespace) -> int:
    from edgefleet.runtime.bundle_verify import verify_bundle

    if args.trust:
        signer = _check_signature(args.path, args.trust)
        if not args.json:
            print(f"signature: ok (key {signer})")
    report = verify_bundle(args.path, run_canary=not args.no_canary)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        print()
    else:
        _print_report(report)
        if not report.ok:
            print(f"  hint: {report.hint}")
    return 0 if report.ok else 1


def _inspect(args: argparse.Namespace) -> int:
    from edgefleet.runtime.bundle import load_bundle

    bundle = load_bundle(args.path)
    if args.json:
        print(json.dumps(bundle.manifest.model_dump(mode="json"), indent=2))
        return 0
    _print_summary(bundle)
    return 0


def _print_summary(bundle: Bundle) -> None:
    m = bundle.manifest
    p = m.preprocessing
    print(f"{m.name} {m.version} ({m.task})  created {m.created_at.isoformat()}")
    if m.description:
        print(f"  {m.description}")
    print(f"  path:    {bundle.path}")
    print(f"  model:   {m.model.path} [{m.model.format}] {m.model.size_bytes} bytes sha256 {m.model.sha256}")
    for kind, specs in (("input", m.inputs), ("output", m.outputs)):
        for s in specs:
            shape = "[" + ", ".join("?" if d is None else str(d) for d in s.shape) + "]"
            print(f"  {kind + ':':<8} {s.name} {shape} {s.dtype}")
    if m.labels:
        print(f"  labels:  {', '.join(m.labels)}")
    print(
        f"  windows: {p.window_length} samples, hop {p.hop}, {p.sample_rate_hz:g} Hz, "
        f"{p.channels} channels ({', '.join(p.channel_names)})"
    )
    print(f"  mean:    {', '.join(f'{v:.4g}' for v in p.mean)}")
    print(f"  std:     {', '.join(f'{v:.4g}' for v in p.std)}")
    if m.reference is not None:
        print(f"  reference: {m.reference.source or 'unnamed'} ({m.reference.samples} samples)")
    print(f"  canaries: {len(m.canary)}")
