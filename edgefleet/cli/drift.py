"""``edgefleet drift check``: stream a recording through the agent's drift monitor, offline.

The recording is cut into the bundle's windows (``window_length``, ``hop``) exactly as a stream
buffer cuts them and fed to the same :class:`~edgefleet.agent.drift_monitor.DriftMonitor` the
agent runs, with the ``[drift]`` defaults unless a flag overrides one. ``interval_s`` counts
recording time (samples / ``sample_rate_hz``), so a report closes where the agent's would for a
source replaying the file at its recorded rate.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.agent.config import DriftConfig
from edgefleet.agent.drift_monitor import DriftMonitor, DriftReport, DriftSettings
from edgefleet.cli.arguments import non_negative_float, positive_float, positive_int, print_usage
from edgefleet.errors import EdgefleetError
from edgefleet.runtime.bundle import Bundle, load_bundle

__all__ = ["drift_status_lines", "load_recording", "register", "run_check"]

_DATA_HINT = "pass --data a .npz (with a 'samples' array, or one array), a .npy, or a .csv with a header row"
_FEED_WINDOWS = 64  # windows handed to the monitor at once, like one inference batch


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser(
        "drift",
        help="input drift against a bundle's reference profile",
        description="Input drift statistics against a bundle's reference profile (docs/drift.md).",
    )
    group.set_defaults(handler=lambda _args: print_usage(group))
    sub = group.add_subparsers(dest="drift_command", metavar="COMMAND")
    check = sub.add_parser(
        "check",
        help="stream a recording through the agent's drift monitor and print its reports and alerts",
        description=(
            "Stream a recording through the same drift monitor, windowing and thresholds the agent "
            "uses; print each report and every alert. Exit 0 when it ran (drifted or not)."
        ),
    )
    check.add_argument("bundle", help="bundle directory or .tar with a reference profile")
    check.add_argument(
        "--data",
        required=True,
        type=Path,
        help="recording, shape (time, channels) in the manifest's channel order: "
        ".npz ('samples' or a single array), .npy, or .csv with a header (columns named like "
        "the channels are picked by name)",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    defaults = DriftConfig()
    check.add_argument(
        "--interval-s", type=positive_float, default=defaults.interval_s, help="[drift] interval_s"
    )
    check.add_argument("--windows", type=positive_int, default=defaults.windows, help="[drift] windows")
    check.add_argument(
        "--min-interval-s",
        type=non_negative_float,
        default=defaults.min_interval_s,
        help="[drift] min_interval_s (recording time)",
    )
    check.add_argument(
        "--sample",
        action=argparse.BooleanOptionalAction,
        default=defaults.sample,
        help="[drift] sample",
    )
    check.add_argument(
        "--psi-threshold", type=positive_float, default=defaults.psi_threshold, help="[drift] psi_threshold"
    )
    check.add_argument(
        "--js-threshold", type=positive_float, default=defaults.js_threshold, help="[drift] js_threshold"
    )
    check.add_argument(
        "--ks-threshold", type=positive_float, default=defaults.ks_threshold, help="[drift] ks_threshold"
    )
    check.add_argument(
        "--scale-threshold",
        type=positive_float,
        default=defaults.scale_threshold,
        help="[drift] scale_threshold",
    )
    check.add_argument(
        "--swap-threshold",
        type=positive_float,
        default=defaults.swap_threshold,
        help="[drift] swap_threshold",
    )
    check.add_argument(
        "--alert-after", type=positive_int, default=defaults.alert_after, help="[drift] alert_after"
    )
    check.add_argument(
        "--clear-after", type=positive_int, default=defaults.clear_after, help="[drift] clear_after"
    )
    check.add_argument(
        "--min-samples", type=positive_int, default=defaults.min_samples, help="[drift] min_samples"
    )
    check.set_defaults(handler=_check)


def _settings(args: argparse.Namespace) -> DriftSettings:
    try:
        config = DriftConfig(
            interval_s=args.interval_s,
            windows=args.windows,
            min_interval_s=args.min_interval_s,
            sample=args.sample,
            psi_threshold=args.psi_threshold,
            js_threshold=args.js_threshold,
            ks_threshold=args.ks_threshold,
            scale_threshold=args.scale_threshold,
            swap_threshold=args.swap_threshold,
            alert_after=args.alert_after,
            clear_after=args.clear_after,
            min_samples=args.min_samples,
        )
    except ValueError as exc:
        raise EdgefleetError(
            f"invalid drift setting: {exc}", hint="see `edgefleet drift check --help`"
        ) from None
    return DriftSettings.from_config(config)


def _bad_data(path: Path, what: str) -> EdgefleetError:
    return EdgefleetError(f"{path}: {what}", hint=_DATA_HINT)


def load_recording(path: Path, channel_names: list[str]) -> npt.NDArray[np.float64]:
    """The recording as ``(time, channels)`` float64 in ``channel_names`` order; errors name what is wrong."""
    if not path.is_file():
        raise _bad_data(path, "no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                if "samples" in names:
                    raw: Any = archive["samples"]
                elif len(names) == 1:
                    raw = archive[names[0]]
                else:
                    raise _bad_data(path, f"holds arrays {names} but none is named 'samples'")
        elif suffix == ".npy":
            raw = np.load(path, allow_pickle=False)
        elif suffix == ".csv":
            raw = _read_csv(path, channel_names)
        else:
            raise _bad_data(path, f"unknown file type {suffix or '(none)'!r}")
        data = np.asarray(raw, dtype=np.float64)
    except EdgefleetError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise _bad_data(path, f"cannot be read: {exc}") from None
    if data.ndim != 2:
        raise _bad_data(path, f"has shape {data.shape}; expected (time, {len(channel_names)})")
    if data.shape[1] != len(channel_names):
        expected = f"{len(channel_names)}: {', '.join(channel_names)}"
        raise _bad_data(path, f"has {data.shape[1]} channels; the bundle expects {expected}")
    finite = [bool(np.isfinite(data[:, c]).any()) for c in range(data.shape[1])]
    dead = [name for name, ok in zip(channel_names, finite, strict=True) if not ok]
    if dead:
        raise _bad_data(path, f"channel(s) {', '.join(dead)} hold no finite value (only NaN/inf)")
    return data


def _read_csv(path: Path, channel_names: list[str]) -> npt.NDArray[np.float64]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise _bad_data(path, "is empty")
    header = [h.strip() for h in rows[0]]
    if set(channel_names) <= set(header):
        columns = [header.index(name) for name in channel_names]
    else:
        columns = list(range(len(header)))
    body = rows[1:]
    try:
        values = [[float(row[i]) if row[i].strip() else math.nan for i in columns] for row in body]
    except (ValueError, IndexError) as exc:
        named = [header[i] for i in columns]
        raise _bad_data(path, f"has a row that is not numbers in columns {named}: {exc}") from None
    return np.asarray(values, dtype=np.float64).reshape(len(values), len(columns))


def run_check(bundle: Bundle, data: npt.NDArray[np.float64], settings: DriftSettings) -> list[DriftReport]:
    """Every report of ``data`` streamed through the monitor (the last one partial)."""
    manifest = bundle.manifest
    if manifest.reference is None:
        raise EdgefleetError(
            f"bundle {manifest.name} {manifest.version} has no reference profile",
            hint="rebuild it with `edgefleet bundle build --reference-data ...`",
        )
    prep = manifest.preprocessing
    length, hop = prep.window_length, prep.hop
    if len(data) < length:
        raise EdgefleetError(
            f"the recording has {len(data)} samples, fewer than one window ({length})",
            hint="pass a longer recording",
        )
    now = [0.0]
    monitor = DriftMonitor(manifest.reference, window_length=length, settings=settings, clock=lambda: now[0])
    windows = np.lib.stride_tricks.sliding_window_view(data, (length, data.shape[1]))[::hop, 0]
    starts = np.arange(len(windows), dtype=np.int64) * hop
    reports: list[DriftReport] = []
    for at in range(0, len(windows), _FEED_WINDOWS):
        part = slice(at, at + _FEED_WINDOWS)
        t0 = starts[part] / prep.sample_rate_hz
        t1 = (starts[part] + length) / prep.sample_rate_hz
        now[0] = float(t1[-1])
        if monitor.sample_every > 1 and monitor.pass_over(len(t0)):
            continue  # left out by sampling, as the agent does
        reports += monitor.add_windows("recording", starts[part], windows[part], start_ts=t0, end_ts=t1)
    last = monitor.flush()
    if last is not None:
        reports.append(last)
    return reports


def _summary(reports: list[DriftReport]) -> dict[str, Any]:
    alerts = [
        {"report": a.report, "channel": a.channel, "metric": a.metric, "score": a.score}
        for r in reports
        for a in r.alerts
        if a.kind == "alert"
    ]
    return {
        "reports": [r.summary() for r in reports],
        "alerts": alerts,
        "drifted": any(r.any_drifted for r in reports),
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    bundle = load_bundle(args.bundle)
    data = load_recording(args.data, bundle.manifest.preprocessing.channel_names)
    reports = run_check(bundle, data, settings)
    if args.json:
        json.dump(_summary(reports), sys.stdout)
        print()
        return 0
    thresholds = settings.thresholds()
    print(
        f"{args.data}: {len(data)} samples; reports of {settings.windows} windows; thresholds "
        + ", ".join(f"{m} {v:g}" for m, v in thresholds.items())
        + f"; alert after {settings.alert_after}, clear after {settings.clear_after} reports"
    )
    for report in reports:
        state = "DRIFTED" if report.any_drifted else "ok"
        span = f"samples {report.start_sample}-{report.end_sample}, {report.windows} windows"
        print(f"report {report.index}: {span}, {state}")
        for c in report.scores.channels:
            over = report.over[c.name]
            flag = " FLAGGED" if report.drifted[c.name] else (f" over: {', '.join(over)}" if over else "")
            scores = f"psi {_fmt(c.psi)}  js {_fmt(c.js)}  ks {_fmt(c.ks)}  scale {_fmt(c.scale)}"
            swap = f"  swap {_fmt(c.swap)} (with {c.swap_with})" if c.swap_with else ""
            print(f"  {c.name:<12} {scores}  mean {_fmt(c.mean)}{swap}{flag}")
        for alert in report.alerts:
            verb = "ALERT" if alert.kind == "alert" else "cleared"
            print(f"  {verb}: channel {alert.channel} ({alert.metric} {alert.score:.3f})")
    drifted = any(r.any_drifted for r in reports)
    print("drift: " + ("DETECTED" if drifted else "none"))
    return 0


def drift_status_lines(status: dict[str, Any]) -> list[str]:
    """``agent status`` lines for the ``drift`` part of the agent's status snapshot."""
    drift = status.get("drift")
    if not isinstance(drift, dict):
        return []
    if not drift.get("enabled"):
        return [f"drift:      off ({drift.get('reason') or 'disabled'})"]
    channels = drift.get("channels") or {}
    flagged = [name for name, c in channels.items() if c.get("drifted")]
    lines = [
        f"drift:      {drift.get('reports', 0)} reports; "
        + (f"DRIFTED: {', '.join(flagged)}" if flagged else "no channel flagged")
    ]
    for name, c in channels.items():
        state = f"DRIFTED ({c.get('metric')})" if c.get("drifted") else "ok"
        scores = f"psi {_fmt(c.get('psi'))}  js {_fmt(c.get('js'))}  ks {_fmt(c.get('ks'))}"
        scores += f"  scale {_fmt(c.get('scale'))}"
        if c.get("swap_with"):
            scores += f"  swap {_fmt(c.get('swap'))} (with {c.get('swap_with')})"
        lines.append(f"  {name:<12} {state:<16} {scores}")
    return lines
