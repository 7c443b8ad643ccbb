"""``edgefleet config example --demo``: an agent config that runs as printed, here.

The deployment example (``config example``) points at ``/var/lib/edgefleet`` and a fleet
broker, as ``/etc/edgefleet/agent.toml`` would. This one uses what ships with edgefleet: the
demo bundle, a replay of the BasicMotions test recording, the store in the current directory,
and no sync, so ``edgefleet agent run --config`` on it stores results at once.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["demo_assets_dir", "demo_example_text"]

DEMO_BUNDLE = "basicmotions-edge-tflite"
DEMO_RECORDING = "basicmotions_test_stream.csv"
# The demo bundle and recording ship inside the package (package data, ~350 kB), so the printed
# config runs after a plain `pip install` too; in a checkout these are links into models/.
PACKAGED = Path(__file__).resolve().parent.parent / "data" / "demo"


def _toml_path(path: Path) -> str:
    return json.dumps(str(path))  # JSON string escapes are valid TOML basic-string escapes


def demo_assets_dir() -> Path:
    """Where the demo bundle and recording are: the package's own copy, else the models folder."""
    if (PACKAGED / "bundles" / DEMO_BUNDLE / "manifest.json").is_file() and (
        PACKAGED / "data" / DEMO_RECORDING
    ).is_file():
        return PACKAGED
    from edgefleet.demo import find_models_dir

    return find_models_dir()


def demo_example_text(workdir: Path | None = None) -> str:
    """The demo config for this machine; ``workdir`` (default: the current directory) holds the state."""
    models = demo_assets_dir()
    here = (workdir or Path.cwd()).resolve()
    bundle = (models / "bundles" / DEMO_BUNDLE).resolve()
    recording = (models / "data" / DEMO_RECORDING).resolve()
    return f"""\
# edgefleet agent configuration that runs as printed on this machine:
#   edgefleet config example --demo > demo.toml && edgefleet agent run --config demo.toml
#   edgefleet results --config demo.toml      (in another terminal: the latest results)
# It replays the shipped BasicMotions recording through the shipped demo model, keeps its store in
# {here}, and syncs nothing. For a device, start from `edgefleet config example` instead.

[device]
id = "demo-local"
name = "Local demo"
tags = ["demo"]
state_dir = {_toml_path(here / "edgefleet-state")}

[[sources]]
type = "replay"
name = "imu"
file = {_toml_path(recording)}
timestamp_column = "timestamp"
ignore_columns = ["label"]
speed = 1.0                          # the recorded rate; 2.0 plays twice as fast
realtime = true
loop = true                          # start over at the end

[model]
bundle = {_toml_path(bundle)}

[store]
path = {_toml_path(here / "edgefleet-demo.db")}

[sync]
enabled = false                      # no broker needed; see `edgefleet config example` for one

[logging]
level = "info"
"""
