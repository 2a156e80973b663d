"""`bin/serve` as an operator runs it: a real process serving the API, the dashboard,
/metrics and (with Inngest configured) the capture function on one port; SIGTERM stops
it cleanly; bad configuration exits 2 in one line with nothing written."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest
from click.testing import CliRunner

from capture.cli.serve import serve
from tests.conftest import ROOT, assert_refused, count_events

TOKEN = "serve-token-0123456789abcdef"


def test_one_process_serves_the_api_metrics_and_the_inngest_function(database_url, store):
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CAPTURE_API_TOKENS": TOKEN,
        "INNGEST_DEV": "1",
    }
    process = subprocess.Popen(
        [sys.executable, ROOT / "bin" / "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        urls = json.loads(process.stdout.readline())
        auth = {"authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{urls['url']}/healthz").status_code == 200
        metrics = httpx.get(urls["metrics"], headers=auth)
        assert metrics.status_code == 200
        assert 'prcapture_jobs{lane="local",state="pending"} 0.0' in metrics.text
        assert httpx.get(urls["metrics"]).status_code == 401
        assert "<title>prcapture</title>" in httpx.get(urls["dashboard"], headers=auth).text
        inngest = httpx.get(urls["inngest"])  # the SDK's introspection, signed by Inngest
        assert inngest.status_code == 200, inngest.text
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err


@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "CAPTURE_API_TOKENS is not set"),
        ([], {"CAPTURE_API_TOKENS": "short"}, "at least 16 characters"),
        (["--port", "x"], {"CAPTURE_API_TOKENS": TOKEN}, "Invalid value for '--port'"),
        (["--threads", "0"], {"CAPTURE_API_TOKENS": TOKEN}, "Invalid value for '--threads'"),
        ([], {"CAPTURE_API_TOKENS": TOKEN, "CAPTURE_TIER_HOT": "soon"}, "CAPTURE_TIER_HOT"),
    ],
)
def test_bad_configuration_exits_2(database_url, store, args, env, message):
    before = count_events(database_url)
    result = CliRunner().invoke(serve, args, env={"DATABASE_URL": database_url, **env})
    assert_refused(result, message)
    assert count_events(database_url) == before


def test_a_port_in_use_is_one_line(database_url, store, busy_port):
    env = {"DATABASE_URL": database_url, "CAPTURE_API_TOKENS": TOKEN}
    result = CliRunner().invoke(serve, ["--port", str(busy_port)], env=env)
    assert_refused(result, f"cannot serve on 127.0.0.1:{busy_port}")
