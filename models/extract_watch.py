"""Extract the smartwatch shoulder-exercise recordings from the seglearn wheel into a compact copy.

The data set (Burns et al., 2018) ships inside the ``seglearn`` 1.2.5 wheel as
``seglearn/data/watch_dataset.npy``, a *pickled* Python dict. Fetch the wheel once with

    pip download --no-deps seglearn==1.2.5 -d /tmp/seglearn

then run

    python models/extract_watch.py /tmp/seglearn/seglearn-1.2.5-py3-none-any.whl

The pickle is loaded here, at build time, and nowhere else: everything the project reads at run time
is the plain-array ``.npz`` this script writes (``np.load`` without ``allow_pickle``).

It writes ``models/data/watch.npz``:

- ``samples`` (n, 6) float32: all 140 recordings concatenated, time-major, channels-last
  (``acc_x acc_y acc_z`` in g, ``gyr_x gyr_y gyr_z`` in rad/s; the original names are ax..wz);
- ``offsets`` (141,) int64: recording ``i`` is ``samples[offsets[i]:offsets[i + 1]]``;
- ``y`` (140,) int64 exercise index into ``labels``; ``subject`` (140,) int64 (1..10);
  ``side`` (140,) int64 (the original ``side`` flag, 0 or 1);
- ``test`` (140,) bool: subjects 9 and 10, the held-out split;
- ``labels``, ``label_names``, ``channel_names`` unicode arrays; ``sample_rate_hz`` (50.0).

Only numpy is needed; nothing here touches TensorFlow.
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"
MEMBER = "seglearn/data/watch_dataset.npy"
CHANNEL_NAMES = ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")
SOURCE_CHANNELS = ("ax", "ay", "az", "wx", "wy", "wz")
SAMPLE_RATE_HZ = 50.0
TEST_SUBJECTS = (9, 10)
# The paper's exercise abbreviations, spelled out for people reading results.
LABEL_NAMES = {
    "PEN": "pendulum",
    "ABD": "abduction",
    "FEL": "forward elevation",
    "IR": "internal rotation",
    "ER": "external rotation",
    "TRAP": "trapezius extension",
    "ROW": "upright row",
}


def read_pickle(source: Path) -> dict[str, Any]:
    """The seglearn dict, from the wheel or from an extracted ``watch_dataset.npy``."""
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            raw = wheel.read(MEMBER)
        obj = np.load(io.BytesIO(raw), allow_pickle=True)
    else:
        obj = np.load(source, allow_pickle=True)
    data = obj.item()
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a pickled dict, got {type(data).__name__}")
    return data


def extract(source: Path, out_dir: Path) -> None:
    d = read_pickle(source)
    if list(d["X_labels"]) != list(SOURCE_CHANNELS):
        raise ValueError(f"unexpected channels {d['X_labels']}, expected {list(SOURCE_CHANNELS)}")
    labels = [str(v) for v in d["y_labels"]]
    if set(labels) != set(LABEL_NAMES):
        raise ValueError(f"unexpected labels {labels}, expected {sorted(LABEL_NAMES)}")
    recordings = [np.asarray(x, dtype=np.float32) for x in d["X"]]
    for i, rec in enumerate(recordings):
        if rec.ndim != 2 or rec.shape[1] != len(CHANNEL_NAMES):
            raise ValueError(f"recording {i}: shape {rec.shape}, expected (time, {len(CHANNEL_NAMES)})")
    lengths = np.array([len(r) for r in recordings], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    subject = np.asarray(d["subject"]).astype(np.int64)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out_dir / "watch.npz",
        samples=np.concatenate(recordings).astype(np.float32),
        offsets=offsets,
        y=np.asarray(d["y"]).astype(np.int64),
        subject=subject,
        side=np.asarray(d["side"]).astype(np.int64),
        test=np.isin(subject, TEST_SUBJECTS),
        labels=np.array(labels),
        label_names=np.array([LABEL_NAMES[v] for v in labels]),
        channel_names=np.array(CHANNEL_NAMES),
        sample_rate_hz=np.float32(SAMPLE_RATE_HZ),
    )
    test = np.isin(subject, TEST_SUBJECTS)
    print(
        f"{len(recordings)} recordings, {int(offsets[-1])} samples; test (subjects {TEST_SUBJECTS}): "
        f"{int(test.sum())} recordings, {int(lengths[test].sum())} samples; labels {labels} -> {out_dir}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="seglearn 1.2.5 wheel (.whl) or watch_dataset.npy")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help=f"output directory (default {DATA_DIR})")
    args = parser.parse_args(argv)
    if not args.source.exists():
        print(
            f"error: {args.source} does not exist\n"
            "  hint: pip download --no-deps seglearn==1.2.5 -d /tmp/seglearn, then pass the .whl",
            file=sys.stderr,
        )
        return 1
    extract(args.source, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
