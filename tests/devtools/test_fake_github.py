"""`bin/fake-github` serves the sandbox over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
import pytest
from click.testing import CliRunner

from devtools.sandbox.cli import fake_github
from tests.conftest import ROOT, assert_refused


@pytest.mark.slow
def test_it_prints_its_urls_and_serves_until_stopped():
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bin" / "fake-github"),
            "--repo",
            "acme/widgets:120",
            "--days",
            "90",
            "--seed",
            "7",
            "--port",
            "0",
            "--fault",
            "graphql:502:1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    cleanup = []
    try:
        urls = json.loads(process.stdout.readline())
        assert set(urls) >= {"rest", "graphql", "inngest", "token", "event_key"}
        client = httpx.Client(headers={"Authorization": f"Bearer {urls['token']}"}, timeout=10)
        cleanup.append(client.close)
        query = '{ repository(owner: "acme", name: "widgets") { pullRequests(first: 5) '
        query += "{ totalCount } } }"
        assert client.post(urls["graphql"], json={"query": query}).status_code == 502
        body = client.post(urls["graphql"], json={"query": query}).json()
        assert body["data"]["repository"]["pullRequests"]["totalCount"] == 120
        listed = client.get(f"{urls['rest']}/repos/acme/widgets/pulls?state=all")
        assert listed.headers["link"].startswith(f"<{urls['rest']}/repos/acme/widgets/pulls?")
        sent = httpx.post(f"{urls['inngest']}/e/{urls['event_key']}", json={"name": "x"})
        assert sent.json()["status"] == 200
        run = client.post(
            f"{urls['rest']}/repos/acme/ops/actions/workflows/capture-job.yml/dispatches",
            json={
                "ref": "main",
                "inputs": {"job_id": "J", "attempt": "1"},
                "return_run_details": True,
            },
        )
        assert run.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        process.stdout.close()
        for close in cleanup:
            close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repo", "acme"], "is not owner/name:PULLS"),
        (["--repo", "acme/w:-1"], "is not owner/name:PULLS"),
        (["--days", "0"], "Invalid value for '--days'"),
        (["--port", "70000"], "Invalid value for '--port'"),
        (["--fault", "graphql"], "is not TARGET:KIND"),
        (["--fault", "ftp:502"], "TARGET one of graphql, rest, dispatch, inngest"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args, message):
    result = CliRunner().invoke(fake_github, args)
    assert_refused(result, message)
