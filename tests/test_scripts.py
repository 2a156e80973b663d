"""Every script answers --help; serve-inngest refuses bad input in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from capture.inngest_serve import serve_inngest
from tests.conftest import ROOT, assert_refused, count_events

SCRIPTS = sorted(p.name for p in (ROOT / "bin").iterdir())


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_has_help(script):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bin" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout


def test_every_script_is_also_a_console_entry_point():
    setup = (ROOT / "setup.cfg").read_text()
    for script in SCRIPTS:
        if script != "demo":  # the demo needs this checkout's workflow files
            module = (ROOT / "bin" / script).read_text().split("from ")[1].split(" import ")
            assert f"{module[0]}:{module[1].split()[0]}" in setup, script


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
