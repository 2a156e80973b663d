"""Every script answers --help, also without the project's environment activated;
product scripts are console scripts, the rig's are not; serve-inngest refuses bad input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from capture.cli.serve_inngest import serve_inngest
from tests.conftest import ROOT, assert_refused, count_events

SCRIPTS = sorted(p.name for p in (ROOT / "bin").iterdir() if not p.name.startswith("_"))


def target(script: str) -> str:
    """The `module:command` a bin/ shim runs."""
    pattern = r'_shim\.run\("([\w.]+:\w+)", "bin/' + re.escape(script) + r'"\)'
    match = re.search(pattern, (ROOT / "bin" / script).read_text())
    assert match, f"bin/{script} does not run its command through _shim.run"
    return match.group(1)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_has_help_and_version(script):
    for flag, expected in (
        ("--help", f"Usage: bin/{script}"),
        ("--version", f"bin/{script} (prcapture "),
    ):
        done = subprocess.run(
            [sys.executable, str(ROOT / "bin" / script), flag],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        assert expected in done.stdout


def test_product_scripts_are_console_scripts_and_the_rig_is_not_installed():
    setup = (ROOT / "setup.cfg").read_text()
    for script in SCRIPTS:
        command = target(script)
        if command.startswith("devtools."):
            assert command not in setup, f"bin/{script} is the dev rig: not a console script"
        else:
            assert f"prcapture-{script} = {command}" in setup, script


def test_a_script_runs_without_the_environment_activated():
    """Started by a Python without the project's packages, a script runs under .venv."""
    base = Path(sys.base_prefix) / "bin" / "python3"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix)
    )
    done = subprocess.run(
        [str(base), str(ROOT / "bin" / "jobs"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: bin/jobs" in done.stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {"INNGEST_SIGNING_KEY": ""}, "INNGEST_SIGNING_KEY is not set"),
        (["--port", "70000"], {"INNGEST_DEV": "1"}, "Invalid value for '--port'"),
        (["--port", "x"], {"INNGEST_DEV": "1"}, "Invalid value for '--port'"),
        ([], {"INNGEST_DEV": "1", "CAPTURE_BATCH_SIZE": "many"}, "CAPTURE_BATCH_SIZE must be"),
        ([], {"INNGEST_DEV": "1", "JOBSTORE_ROLLOUT_PERCENT": "-5"}, "JOBSTORE_ROLLOUT_PERCENT"),
    ],
)
def test_serve_inngest_bad_input_exits_2(database_url, store, args, env, message):
    before = count_events(database_url)
    result = CliRunner().invoke(serve_inngest, args, env={"DATABASE_URL": database_url, **env})
    assert_refused(result, message)
    assert count_events(database_url) == before
