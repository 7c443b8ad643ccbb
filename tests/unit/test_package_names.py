"""The top-level agent/, runtime/ and cloud_sync/ folders are importable under one name only.

They are edgefleet.agent, edgefleet.runtime and edgefleet.cloud_sync (symlinked into the
package); with the repository root on sys.path (pytest's ``pythonpath``, or running from the
root) they would also be reachable as ``agent`` & co., loading every module a second time as a
different module object. Importing them under that second name fails instead.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import edgefleet.agent.pipeline
import edgefleet.cloud_sync.topics
import edgefleet.runtime.model

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
FOLDERS = ("agent", "runtime", "cloud_sync")


@pytest.mark.parametrize(
    "name", ["agent", "agent.pipeline", "runtime", "runtime.model", "cloud_sync", "cloud_sync.topics"]
)
def test_a_folder_cannot_be_imported_under_its_short_name(name: str) -> None:
    assert str(REPO) in [str(Path(p).resolve()) for p in sys.path if p]  # reachable: the case at hand
    package = name.split(".")[0]
    with pytest.raises(ImportError, match=rf"import it as edgefleet\.{package}, not as '{package}'"):
        importlib.import_module(name)
    assert not [m for m in sys.modules if m.split(".")[0] in FOLDERS]


def test_the_edgefleet_names_are_the_only_module_objects() -> None:
    for module in (edgefleet.agent.pipeline, edgefleet.runtime.model, edgefleet.cloud_sync.topics):
        assert sys.modules[module.__name__] is module
    assert Path(edgefleet.agent.pipeline.__file__).parent.name == "agent"


def test_running_from_the_repository_root_refuses_the_short_name_too() -> None:
    probe = (
        "import edgefleet.agent.pipeline\n"
        "try:\n    import agent.pipeline\nexcept ImportError as e:\n    print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "import it as edgefleet.agent, not as 'agent'" in done.stdout
