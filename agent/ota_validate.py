"""Validating a candidate bundle in a separate process before it may serve.

The running agent never opens a candidate model itself: a model that crashes the runtime
natively (a segfault, an abort) or hangs would take the data path with it. Instead
:func:`validate_in_subprocess` runs ``python -m edgefleet.agent.ota_validate`` with a timeout; the
child loads the bundle (sha256 of every file), checks that it cuts the same windows as the running
streams, opens the model (an unresolved custom op fails here), checks its tensors against the
manifest, replays its canaries (outputs within the manifest's tolerance) and measures its
latency on a batch, optionally beside the active bundle's (same run, same machine: a ratio).
It prints one JSON line; the parent turns a timeout, a death by signal or unreadable output into
a refusal naming what happened.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ValidationLimits", "ValidationResult", "WindowShape", "main", "validate_in_subprocess"]

_LATENCY_RUNS = 20
_BATCH = 16


@dataclass(frozen=True)
class WindowShape:
    """What the running streams cut: a candidate must take exactly these windows."""

    channels: int
    window_length: int
    hop: int


@dataclass(frozen=True)
class ValidationLimits:
    timeout_s: float = 60.0
    max_latency_ms: float | None = None
    """Budget for the p95 latency of one batch of ``_BATCH`` windows; None: no absolute budget."""
    max_latency_ratio: float | None = None
    """Budget relative to the active bundle's p95, measured in the same child; None: not checked."""


@dataclass
class ValidationResult:
    ok: bool
    problems: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        return "; ".join(self.problems)


def validate_in_subprocess(
    candidate: Path,
    windows: WindowShape,
    limits: ValidationLimits,
    *,
    baseline: Path | None = None,
    load_kwargs: dict[str, Any] | None = None,
) -> ValidationResult:
    """Run the validator child on ``candidate``; never raises for anything the candidate does."""
    cmd = [
        sys.executable,
        "-m",
        "edgefleet.agent.ota_validate",
        str(candidate),
        "--channels",
        str(windows.channels),
        "--window-length",
        str(windows.window_length),
        "--hop",
        str(windows.hop),
        "--load-kwargs",
        json.dumps(load_kwargs or {}),
    ]
    if baseline is not None and limits.max_latency_ratio is not None:
        cmd += ["--baseline", str(baseline)]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=limits.timeout_s, check=False, env=_child_env()
        )
    except subprocess.TimeoutExpired:
        return ValidationResult(
            False,
            [
                f"validation timed out: the candidate did not finish loading and running its canaries within"
                f" {limits.timeout_s:g} s (a hang in the model runtime?); raise [ota] validation_timeout_s"
                " if the device is just slow"
            ],
            {"validation_s": round(time.monotonic() - started, 3)},
        )
    elapsed = round(time.monotonic() - started, 3)
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        tail = proc.stderr.strip().splitlines()[-3:]
        return ValidationResult(
            False,
            [f"the candidate crashed the model runtime (validator killed by {name})" + _tail(tail)],
            {"validation_s": elapsed},
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    try:
        doc = json.loads(lines[-1])
        problems = [str(p) for p in doc["problems"]]
        metrics = dict(doc.get("metrics", {}))
    except (IndexError, ValueError, KeyError, TypeError):
        tail = proc.stderr.strip().splitlines()[-3:]
        return ValidationResult(
            False,
            [f"the validator exited with status {proc.returncode} without a report" + _tail(tail)],
            {"validation_s": elapsed},
        )
    metrics["validation_s"] = elapsed
    problems += _latency_problems(metrics, limits)
    return ValidationResult(not problems, problems, metrics)


def _tail(lines: list[str]) -> str:
    return (": " + " | ".join(lines)) if lines else ""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONFAULTHANDLER", "1")  # a native crash leaves a trace on stderr
    return env


def _latency_problems(metrics: dict[str, Any], limits: ValidationLimits) -> list[str]:
    problems: list[str] = []
    p95 = metrics.get("latency_p95_ms")
    if not isinstance(p95, int | float):
        return problems
    if limits.max_latency_ms is not None and p95 > limits.max_latency_ms:
        problems.append(
            f"latency: p95 {p95:.3g} ms per batch of {_BATCH} is over the budget of"
            f" {limits.max_latency_ms:g} ms ([ota] max_latency_ms)"
        )
    base = metrics.get("baseline_p95_ms")
    if limits.max_latency_ratio is not None and isinstance(base, int | float) and base > 0:
        ratio = p95 / base
        metrics["latency_ratio"] = round(ratio, 3)
        if ratio > limits.max_latency_ratio:
            problems.append(
                f"latency: p95 {p95:.3g} ms is {ratio:.2f}x the active model's {base:.3g} ms"
                f" (limit {limits.max_latency_ratio:g}x, [ota] max_latency_ratio)"
            )
    return problems


# -- the child ----------------------------------------------------------------------------------


def _p95_ms(model: Any, batch: Any) -> float:
    times: list[float] = []
    for _ in range(_LATENCY_RUNS):
        t0 = time.perf_counter()
        model.predict(batch)
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    return times[min(len(times) - 1, int(0.95 * len(times)))]


def _check(
    path: Path, windows: WindowShape, load_kwargs: dict[str, Any], baseline: Path | None
) -> dict[str, Any]:
    import numpy as np

    from edgefleet.errors import EdgefleetError
    from edgefleet.runtime.bundle import load_bundle
    from edgefleet.runtime.bundle_verify import check_tensors, run_canaries

    problems: list[str] = []
    metrics: dict[str, Any] = {}
    try:
        bundle = load_bundle(path)
    except EdgefleetError as exc:
        return {"problems": [f"bundle: {exc.message}"], "metrics": metrics}
    prep = bundle.manifest.preprocessing
    got = (prep.channels, prep.window_length, prep.hop)
    want = (windows.channels, windows.window_length, windows.hop)
    if got != want:
        return {
            "problems": [
                f"streams: the candidate takes windows of (channels, length, hop) {got}; the running streams"
                f" cut {want} (a model for other windows needs a config change and a restart)"
            ],
            "metrics": metrics,
        }
    try:
        model = bundle.open_model(**load_kwargs)
    except EdgefleetError as exc:
        return {"problems": [f"model: {exc.message.splitlines()[0]}"], "metrics": metrics}
    try:
        problems += [f"tensors: {p}" for p in check_tensors(bundle.manifest, model)]
        if problems:
            return {"problems": problems, "metrics": metrics}
        try:
            canary_problems, worst = run_canaries(bundle, model)
        except EdgefleetError as exc:
            canary_problems, worst = [exc.message.splitlines()[0]], float("nan")
        problems += [f"canary: {p}" for p in canary_problems]
        metrics["canaries"] = len(bundle.manifest.canary)
        metrics["canary_max_diff"] = None if worst != worst else round(worst, 6)
        rng = np.random.default_rng(0)
        raw = rng.standard_normal((_BATCH, prep.window_length, prep.channels)).astype(np.float32)
        metrics["latency_p95_ms"] = round(_p95_ms(model, bundle.preprocess(raw)), 4)
    except EdgefleetError as exc:
        problems.append(f"model: {exc.message.splitlines()[0]}")
    finally:
        model.close()
    if baseline is not None and not problems:
        try:
            active = load_bundle(baseline)
            base_model = active.open_model(**load_kwargs)
            try:
                metrics["baseline_p95_ms"] = round(_p95_ms(base_model, active.preprocess(raw)), 4)
            finally:
                base_model.close()
        except EdgefleetError as exc:  # the active model's figure is a comparison, not a gate
            metrics["baseline_error"] = exc.message.splitlines()[0]
    return {"problems": problems, "metrics": metrics}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgefleet.agent.ota_validate", description=__doc__)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--channels", type=int, required=True)
    parser.add_argument("--window-length", type=int, required=True)
    parser.add_argument("--hop", type=int, required=True)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--load-kwargs", default="{}")
    args = parser.parse_args(argv)
    windows = WindowShape(args.channels, args.window_length, args.hop)
    report = _check(args.bundle, windows, json.loads(args.load_kwargs), args.baseline)
    print(json.dumps(report), flush=True)
    return 0 if not report["problems"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
