"""Verifying a bundle on this machine: its model loads, its tensors match the manifest, and
its canaries give the recorded outputs.

:func:`verify_bundle` is what ``edgefleet bundle verify`` and ``bundle build`` run, and what a
device can run before switching to a new bundle. Kept apart from :mod:`edgefleet.runtime.bundle`
because it needs the model runtime, which loading and running a bundle's metadata does not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefleet.errors import BundleError, EdgefleetError
from edgefleet.runtime.bundle import Bundle, load_bundle
from edgefleet.runtime.bundle_manifest import HINT_REBUILD, BundleManifest

if TYPE_CHECKING:
    from edgefleet.runtime.model import Model

__all__ = ["VerifyCheck", "VerifyReport", "check_tensors", "run_canaries", "verify_bundle"]


@dataclass(frozen=True)
class VerifyCheck:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class VerifyReport:
    path: str
    name: str | None = None
    version: str | None = None
    checks: list[VerifyCheck] = field(default_factory=list)
    hint: str = HINT_REBUILD

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def problems(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]

    def add(self, name: str, problems: list[str], ok_detail: str = "") -> None:
        if problems:
            self.checks.extend(VerifyCheck(name, False, p) for p in problems)
        else:
            self.checks.append(VerifyCheck(name, True, ok_detail))

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "name": self.name,
            "version": self.version,
            "ok": self.ok,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "hint": None if self.ok else self.hint,
        }

    def raise_for_problems(self) -> None:
        if not self.ok:
            raise BundleError(
                f"bundle {self.path} failed verification",
                path=self.path,
                problems=self.problems,
                hint=self.hint,
            )


def _dims_compatible(
    a: list[int | None] | tuple[int | None, ...], b: list[int | None] | tuple[int | None, ...]
) -> bool:
    if len(a) != len(b):
        return False
    # The batch dimension may be fixed to 1 on one side and dynamic on the other (LiteRT's
    # converter writes 1; the runtime resizes), so dim 0 only has to agree when both are > 1.
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x is None or y is None or x == y or (i == 0 and 1 in (x, y)):
            continue
        return False
    return True


def check_tensors(manifest: BundleManifest, model: Model) -> list[str]:
    """Differences between the manifest's tensor specs and the loaded model's."""
    problems: list[str] = []
    for kind, promised, actual in (
        ("input", manifest.inputs, model.info.inputs),
        ("output", manifest.outputs, model.info.outputs),
    ):
        if len(promised) != len(actual):
            problems.append(f"manifest lists {len(promised)} {kind}s; the model has {len(actual)}")
            continue
        for p, a in zip(promised, actual, strict=True):
            if p.name != a.name:
                problems.append(f"{kind} named {p.name!r} in the manifest is {a.name!r} in the model")
            if not _dims_compatible(p.shape, tuple(a.shape)):
                problems.append(f"{kind} {p.name!r}: manifest shape {p.shape}, model shape {list(a.shape)}")
            if p.dtype != a.dtype:
                problems.append(f"{kind} {p.name!r}: manifest dtype {p.dtype}, model dtype {a.dtype}")
    first = model.info.inputs[0].shape if model.info.inputs else ()
    prep = manifest.preprocessing
    if len(first) != 3 or first[1] not in (None, prep.window_length) or first[2] not in (None, prep.channels):
        problems.append(
            f"model input shape {list(first)} does not take (N, {prep.window_length}, {prep.channels}) "
            "windows as preprocessing promises"
        )
    if manifest.task == "classification" and model.info.outputs:
        last = model.info.outputs[0].shape[-1] if model.info.outputs[0].shape else None
        if last is not None and last != len(manifest.labels):
            problems.append(f"first output has {last} values; manifest has {len(manifest.labels)} labels")
    return problems


def run_canaries(bundle: Bundle, model: Model) -> tuple[list[str], float]:
    """Replay the canary cases; return the failures and the largest absolute difference seen."""
    cases = bundle.manifest.canary
    if not cases:
        return [], 0.0
    inputs = bundle.canary_inputs()
    problems: list[str] = []
    worst = 0.0
    for case in cases:
        if case.index >= len(inputs):
            problems.append(f"canary {case.index}: canary.npz holds only {len(inputs)} inputs")
            continue
        outputs = model.predict(bundle.preprocess(inputs[case.index : case.index + 1]))
        for name, expected in case.expected.items():
            got = np.asarray(outputs.get(name, np.zeros(0)), dtype=np.float64).ravel()
            want = np.asarray(expected, dtype=np.float64)
            if got.shape != want.shape:
                problems.append(
                    f"canary {case.index}: output {name!r} has {got.size} values; expected {want.size}"
                )
                continue
            diff = float(np.abs(got - want).max()) if want.size else 0.0
            worst = max(worst, diff)
            if not diff <= case.tolerance:  # also catches NaN
                problems.append(
                    f"canary {case.index}: output {name!r} differs by {diff:.3g} "
                    f"(tolerance {case.tolerance:g})"
                )
        if case.expected_label is not None:
            label = bundle.interpret(outputs)[0].label
            if label != case.expected_label:
                problems.append(f"canary {case.index}: predicted {label!r}; expected {case.expected_label!r}")
    return problems, worst


def verify_bundle(
    path: str | os.PathLike[str],
    *,
    run_canary: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    load_kwargs: Mapping[str, Any] | None = None,
) -> VerifyReport:
    """Check a bundle end to end without raising: manifest, files, hashes, model load, tensor
    specs, canaries. Inspect ``report.ok`` / ``report.problems``."""
    report = VerifyReport(path=str(path))
    try:
        bundle = load_bundle(path, cache_dir=cache_dir)
    except BundleError as exc:
        report.add("manifest", exc.problems or [exc.message.splitlines()[0]])
        report.hint = exc.hint or report.hint
        return report
    m = bundle.manifest
    report.name, report.version = m.name, m.version
    report.add("manifest", [], f"schema {m.schema_version}, {m.task}, {len(m.labels)} labels")
    report.add("files", [], f"{m.model.path} sha256 {m.model.sha256[:12]}... ({m.model.size_bytes} bytes)")
    try:
        model = bundle.open_model(**dict(load_kwargs or {}))
    except EdgefleetError as exc:
        report.add("model", [exc.message.splitlines()[0]])
        report.hint = exc.hint or report.hint
        return report
    try:
        report.add("model", [], f"{model.info.format} via {model.info.backend}")
        report.add("tensors", check_tensors(m, model), "inputs and outputs match the manifest")
        if not run_canary:
            return report
        if not m.canary:
            report.add("canary", [], "no canary cases")
            return report
        try:
            problems, worst = run_canaries(bundle, model)
        except EdgefleetError as exc:
            problems, worst = [exc.message.splitlines()[0]], float("nan")
        report.add("canary", problems, f"{len(m.canary)} cases, max |diff| {worst:.3g}")
    finally:
        model.close()
    return report
