"""Extract the BasicMotions data set from the aeon wheel into a compact committed copy.

BasicMotions (UEA multivariate archive) is shipped inside the ``aeon`` wheel as
``aeon/datasets/data/BasicMotions/BasicMotions_{TRAIN,TEST}.ts``. Fetch the wheel once with

    pip download --no-deps aeon==1.6.0 -d /tmp/aeon

then run

    python models/extract_basicmotions.py /tmp/aeon/aeon-1.6.0-py3-none-any.whl

(a directory holding the two ``.ts`` files works too). It writes

- ``models/data/basicmotions.npz``: ``X_train`` (40, 100, 6) and ``X_test`` (40, 100, 6) float32,
  time-major and channels-last; ``y_train``/``y_test`` int64 class indices into ``labels``;
  ``labels`` and ``channel_names`` (acc_x..gyr_z) as unicode arrays; ``sample_rate_hz`` (10.0).
- ``models/data/basicmotions_test_stream.csv`` and ``.npz``: the 40 test series concatenated in a
  fixed shuffled order into one 10 Hz replay stream (see :func:`write_test_stream`).

Only numpy is needed; nothing here touches TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

DATA_DIR = Path(__file__).resolve().parent / "data"
MEMBER = "aeon/datasets/data/BasicMotions/BasicMotions_{split}.ts"
CHANNEL_NAMES = ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")
SAMPLE_RATE_HZ = 10.0
SERIES_LENGTH = 100
STREAM_SEED = 20181031  # fixed so the replay order never changes between runs


def parse_ts(text: str) -> tuple[npt.NDArray[np.float32], list[str], list[str]]:
    """Parse an equal-length multivariate ``.ts`` file.

    Returns ``(X, y, class_labels)`` with ``X`` shaped (series, time, channels).
    """
    class_labels: list[str] = []
    rows: list[npt.NDArray[np.float32]] = []
    y: list[str] = []
    in_data = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            lower = line.lower()
            if lower.startswith("@classlabel"):
                parts = line.split()
                class_labels = parts[2:] if len(parts) > 2 and parts[1].lower() == "true" else []
            elif lower.startswith("@data"):
                in_data = True
            continue
        *dims, label = line.split(":")
        series = [np.array(d.split(","), dtype=np.float32) for d in dims]
        lengths = {len(s) for s in series}
        if len(series) != len(CHANNEL_NAMES) or lengths != {SERIES_LENGTH}:
            raise ValueError(
                f"line {lineno}: expected {len(CHANNEL_NAMES)} dimensions of {SERIES_LENGTH} values, "
                f"got {len(series)} dimensions of lengths {sorted(lengths)}"
            )
        rows.append(np.stack(series, axis=1))  # (time, channels)
        y.append(label)
    if not rows:
        raise ValueError("no @data rows found")
    return np.stack(rows).astype(np.float32), y, class_labels


def read_split(source: Path, split: str) -> str:
    """Text of ``BasicMotions_<split>.ts`` from a wheel/zip or a directory."""
    if source.is_dir():
        return (source / f"BasicMotions_{split}.ts").read_text(encoding="utf-8")
    with zipfile.ZipFile(source) as wheel:
        return wheel.read(MEMBER.format(split=split)).decode("utf-8")


def write_test_stream(
    x_test: npt.NDArray[np.float32],
    y_test: npt.NDArray[np.int64],
    labels: list[str],
    out_dir: Path,
) -> npt.NDArray[np.int64]:
    """Concatenate the test series into one 10 Hz stream, in a fixed shuffled order.

    CSV columns: ``timestamp`` (seconds from 0, sample index / 10 Hz), the six channels,
    ``label`` (true activity of the series the sample came from). The ``.npz`` twin holds
    ``timestamp`` (n,) float64, ``samples`` (n, 6) float32, ``label`` (n,) int64 class indices,
    ``series_index`` (n,) int64 (row in ``X_test``), ``order``, ``labels`` and ``channel_names``.
    """
    order = np.random.default_rng(STREAM_SEED).permutation(len(x_test)).astype(np.int64)
    samples = x_test[order].reshape(-1, x_test.shape[2])
    n = samples.shape[0]
    timestamp = np.arange(n, dtype=np.float64) / SAMPLE_RATE_HZ
    label_idx = np.repeat(y_test[order], x_test.shape[1])
    series_index = np.repeat(order, x_test.shape[1])
    np.savez_compressed(
        out_dir / "basicmotions_test_stream.npz",
        timestamp=timestamp,
        samples=samples.astype(np.float32),
        label=label_idx,
        series_index=series_index,
        order=order,
        labels=np.array(labels),
        channel_names=np.array(CHANNEL_NAMES),
    )
    lines = [",".join(("timestamp", *CHANNEL_NAMES, "label"))]
    for t, row, lab in zip(timestamp, samples, label_idx, strict=True):
        values = ",".join(f"{float(v):.6f}" for v in row)
        lines.append(f"{t:.1f},{values},{labels[int(lab)]}")
    (out_dir / "basicmotions_test_stream.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return order


def extract(source: Path, out_dir: Path) -> None:
    x_train, ytr, labels = parse_ts(read_split(source, "TRAIN"))
    x_test, yte, labels_test = parse_ts(read_split(source, "TEST"))
    if labels != labels_test:
        raise ValueError(f"TRAIN labels {labels} differ from TEST labels {labels_test}")
    index = {name: i for i, name in enumerate(labels)}
    y_train = np.array([index[v] for v in ytr], dtype=np.int64)
    y_test = np.array([index[v] for v in yte], dtype=np.int64)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out_dir / "basicmotions.npz",
        X_train=x_train,
        y_train=y_train,
        X_test=x_test,
        y_test=y_test,
        labels=np.array(labels),
        channel_names=np.array(CHANNEL_NAMES),
        sample_rate_hz=np.float32(SAMPLE_RATE_HZ),
    )
    order = write_test_stream(x_test, y_test, labels, out_dir)
    print(f"train {x_train.shape} test {x_test.shape} labels {labels}")
    print(f"test stream: {len(order)} series, {len(order) * x_test.shape[1]} samples -> {out_dir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="aeon wheel (.whl) or a directory with the two .ts files")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help=f"output directory (default {DATA_DIR})")
    args = parser.parse_args(argv)
    if not args.source.exists():
        print(
            f"error: {args.source} does not exist\n"
            "  hint: pip download --no-deps aeon==1.6.0 -d /tmp/aeon, then pass the .whl",
            file=sys.stderr,
        )
        return 1
    extract(args.source, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
