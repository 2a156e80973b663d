"""The README's shell examples, run as written against the sandbox: a doc that drifts
from the scripts fails here. Each fenced `sh` block after a "run by tests/test_readme.py"
marker runs in bash (-e: every command must succeed) with the environment
`bin/fake-github` prints, on this test's database."""

from __future__ import annotations

import os
import re
import socket
import subprocess

import pytest

from tests.conftest import ROOT

MARKER = "<!-- run by tests/test_readme.py against the sandbox -->"
BLOCKS = re.findall(
    re.escape(MARKER) + r"\s*```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S
)


def test_the_readme_marks_its_runnable_examples():
    assert len(BLOCKS) == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=["scripts", "http-api"])
def test_a_readme_example_runs_as_written(block, database_url, served):
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB", "PGAPPNAME"))}
    env = {**keep, **served.env, "DATABASE_URL": database_url, "PORT": str(free_port())}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    if "v1/captures" in block:
        assert '"job_id"' in done.stdout
        assert '"jobs"' in done.stdout
