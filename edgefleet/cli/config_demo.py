"""``edgefleet config example --demo``: an agent config that runs as printed, here.

The deployment example (``config example``) points at ``/var/lib/edgefleet`` and a fleet
broker, as ``/etc/edgefleet/agent.toml`` would. This one uses what ships with edgefleet: the
demo bundle, a replay of the BasicMotions test recording, the store in the current directory,
and no sync, so ``edgefleet agent run --config`` on it stores results at once.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["demo_example_text"]

DEMO_BUNDLE = "basicmotions-edge-tflite"
DEMO_RECORDING = "basicmotions_test_stream.csv"


def _toml_path(path: Path) -> str:
    return json.dumps(str(path))  # JSON string escapes are valid TOML basic-string escapes


def demo_example_text(workdir: Path | None = None) -> str:
    """The demo config for this machine; ``workdir`` (default: the current directory) holds the state."""
    from edgefleet.demo import find_models_dir

    models = find_models_dir()
    here = (workdir or Path.cwd()).resolve()
    bundle = models.resolve() / "bundles" / DEMO_BUNDLE
    recording = models.resolve() / "data" / DEMO_RECORDING
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
