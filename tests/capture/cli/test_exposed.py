"""`bin/serve` probed as an attacker or a clumsy client would, over real sockets: bodies
too large refused by their declared length before they are read, idle and half-sent
connections that do not starve real clients."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from capture.wsgi import CHANNEL_TIMEOUT, LARGEST
from tests.conftest import ROOT, count_events

TOKEN = "exposed-token-0123456789abcdef"


@pytest.fixture
def served(database_url, store) -> Iterator[dict]:
    env = {**os.environ, "DATABASE_URL": database_url, "CAPTURE_API_TOKENS": TOKEN}
    process = subprocess.Popen(
        [sys.executable, ROOT / "bin" / "serve", "--port", "0", "--threads", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        urls = json.loads(process.stdout.readline())
        host, port = urls["url"].removeprefix("http://").split(":")
        yield {**urls, "host": host, "port": int(port)}
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err


def declared(served: dict, method: str, path: str, length: int, token: bool) -> tuple[str, float]:
    """Sends only the headers of a `length`-byte body (and a few bytes of it): the status
    line of the answer, and how long it took."""
    started = time.monotonic()
    with socket.create_connection((served["host"], served["port"]), timeout=10) as conn:
        auth = f"Authorization: Bearer {TOKEN}\r\n" if token else ""
        conn.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n{{}}".encode()
        )
        answer = conn.recv(4096).decode(errors="replace")
    return answer.split("\r\n", 1)[0], time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("token", [False, True])
@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/captures"), ("PUT", "/api/inngest"), ("POST", "/")]
)
def test_a_body_over_the_limit_is_413_by_its_declared_length_unread(
    served, database_url, method, path, token
):
    before = count_events(database_url)
    status, took = declared(served, method, path, 100 * 1024 * 1024, token)
    assert status.startswith("HTTP/1.1 413"), status
    assert took < 5  # answered at once: the 100 MB never came
    assert count_events(database_url) == before


@pytest.mark.slow
def test_each_route_holds_its_own_limit(served):
    auth = {"authorization": f"Bearer {TOKEN}"}
    small = httpx.post(f"{served['url']}/metrics", headers=auth, content=b"x" * 70_000)
    assert small.status_code == 413
    assert "takes at most 65,536" in small.json()["error"]
    spec = json.dumps({"job_type": "pr-reviews", "repository": "acme/w", "days": 1})
    fine = httpx.post(f"{served['url']}/v1/captures", headers=auth, content=spec)
    assert fine.status_code == 201, fine.text
    too_big = httpx.post(f"{served['url']}/v1/captures", headers=auth, content=b" " * LARGEST)
    assert too_big.status_code == 413


@pytest.mark.slow
def test_idle_and_half_sent_connections_do_not_starve_real_clients(served):
    idle = []
    try:
        for n in range(150):  # more than waitress's default limit of 100, more than threads
            conn = socket.create_connection((served["host"], served["port"]), timeout=10)
            if n % 2:  # half-sent: headers begun, never finished
                conn.sendall(b"POST /v1/captures HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n")
            idle.append(conn)
        times = []
        for _ in range(20):
            started = time.monotonic()
            assert httpx.get(f"{served['url']}/healthz", timeout=10).status_code == 200
            times.append(time.monotonic() - started)
        assert sorted(times)[int(len(times) * 0.95) - 1] < 1.0  # answered, not queued
    finally:
        for conn in idle:
            conn.close()
    assert CHANNEL_TIMEOUT <= 60  # and a silent client is closed within a minute
