"""`pip install edgefleet` without extras: commands that need one say which, at once, in one line.

Builds a real venv with the package and its base dependencies only (pip's cache keeps this
quick), then runs the real `edgefleet` console script there.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("no-extras") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return venv


def run(
    venv: Path, *args: str, timeout: float = 90, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "edgefleet"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=venv.parent,
        env=None if env is None else {**os.environ, **env},
    )


def test_the_bare_install_really_lacks_the_extras(bare_venv: Path) -> None:
    probe = subprocess.run(
        [
            str(bare_venv / "bin" / "python"),
            "-c",
            "import importlib.util as u; print(u.find_spec('uvicorn'))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=bare_venv.parent,
    )
    assert probe.stdout.strip() == "None"


@pytest.mark.parametrize(
    ("args", "extra", "module"),
    [
        (("controller", "serve", "--port", "0"), "controller", "uvicorn"),
        (("demo", "--seconds", "5", "--http-port", "0"), "controller", "fastapi"),
        (
            ("controller", "migrate", "--database-url", "postgresql://u@127.0.0.1:9/x"),
            "controller",
            "psycopg",
        ),
    ],
)
def test_a_command_needing_an_extra_says_which_in_one_line(
    bare_venv: Path, args: tuple[str, ...], extra: str, module: str
) -> None:
    result = run(bare_venv, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert f"'{extra}' extra" in lines[0]
    assert repr(module) in lines[0]
    assert f"pip install 'edgefleet[{extra}]'" in lines[0]
    # `demo` used to start a controller, wait for it and then print the child's traceback: one
    # line and nothing else on stderr means it was refused before anything was started.


def test_agent_side_commands_work_without_extras(bare_venv: Path) -> None:
    assert run(bare_venv, "--help").returncode == 0
    example = run(bare_venv, "config", "example")
    assert example.returncode == 0, example.stderr
    assert "[model]" in example.stdout
    # The controller's SQLite tools need no extra.
    migrate = run(bare_venv, "controller", "migrate", "--database-url", f"sqlite:///{bare_venv.parent}/c.db")
    assert migrate.returncode == 0, migrate.stderr


def test_the_installed_package_carries_the_licence(bare_venv: Path) -> None:
    probe = subprocess.run(
        [
            str(bare_venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; d = m.distribution('edgefleet');"
            "print(d.metadata['License-Expression']);"
            "print([str(f) for f in d.files if f.name == 'LICENSE'][0]);"
            "print([f for f in d.files if f.name == 'LICENSE'][0].read_text())",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=bare_venv.parent,  # not the checkout, whose egg-info would answer instead
    )
    assert probe.returncode == 0, probe.stderr
    expression, path, text = probe.stdout.split("\n", 2)
    assert expression == "Apache-2.0"
    assert path.endswith(".dist-info/licenses/LICENSE")
    assert text == (ROOT / "LICENSE").read_text() + "\n"
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text


def test_the_bare_install_runs_the_demo_config_as_printed(bare_venv: Path) -> None:
    # No checkout to lean on: the demo bundle and recording ship inside the wheel.
    env = {"EDGEFLEET_MODELS_DIR": ""}
    printed = run(bare_venv, "config", "example", "--demo", env=env)
    assert printed.returncode == 0, printed.stderr
    installed = subprocess.run(
        [
            str(bare_venv / "bin" / "python"),
            "-c",
            "import edgefleet, pathlib; print(pathlib.Path(edgefleet.__file__).parent.resolve())",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=bare_venv.parent,
    ).stdout.strip()
    for key in ("file", "bundle"):
        line = next(x for x in printed.stdout.splitlines() if x.startswith(f"{key} = "))
        assert line.startswith(f'{key} = "{installed}/data/demo/'), line  # not the checkout's models/
    config = bare_venv.parent / "demo.toml"
    config.write_text(printed.stdout)
    store = bare_venv.parent / "edgefleet-demo.db"
    log = bare_venv.parent / "agent.log"
    with log.open("wb") as out:
        agent = subprocess.Popen(
            [str(bare_venv / "bin" / "edgefleet"), "agent", "run", "--config", str(config)],
            cwd=bare_venv.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    try:
        deadline = time.monotonic() + 90
        count = 0
        while time.monotonic() < deadline and agent.poll() is None and count < 2:
            time.sleep(0.5)
            if store.exists():
                try:
                    with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
                        count = int(db.execute("SELECT count(*) FROM results").fetchone()[0])
                except sqlite3.OperationalError:
                    count = 0
        assert count >= 2, log.read_text()
    finally:
        agent.terminate()
        agent.wait(timeout=30)
