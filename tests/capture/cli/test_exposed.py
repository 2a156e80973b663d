"""`bin/serve` probed as an attacker or a clumsy client would, over real sockets: bodies
too large refused by their declared length before they are read, idle, half-sent and
slow connections that do not starve real clients and are closed, and a thousand event
streams that cost no thread and no connection each."""

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
import psycopg
import pytest

from capture.serving import LARGEST, Server
from tests.conftest import ROOT, count_events

TOKEN = "exposed-token-0123456789abcdef"


@pytest.fixture
def served(database_url, store, tmp_path) -> Iterator[dict]:
    env = {**os.environ, "DATABASE_URL": database_url, "CAPTURE_API_TOKENS": TOKEN}
    serve = [sys.executable, ROOT / "bin" / "serve", "--port", "0", "--threads", "4"]
    log = tmp_path / "serve.log"  # a line per request: more than a pipe holds unread
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [*serve, "--idle-timeout", "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert process.stdout is not None
        urls = json.loads(process.stdout.readline())
        host, port = urls["url"].removeprefix("http://").split(":")
        yield {**urls, "host": host, "port": int(port), "pid": process.pid}
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    err = log.read_text()
    assert process.returncode == 0, err[-2000:]
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
    too_big = httpx.post(f"{served['url']}/v1/captures", headers=auth, content=b" " * (LARGEST + 1))
    assert too_big.status_code == 413


@pytest.mark.slow
def test_idle_and_half_sent_connections_do_not_starve_real_clients(served):
    idle = []
    try:
        for n in range(300):  # far more than threads
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
        # and each is closed once the idle timeout (2 s here) has passed
        for conn in idle:
            conn.settimeout(10)
            started = time.monotonic()
            closing = conn.recv(4096)
            assert closing == b"" or closing.startswith(b"HTTP/1.1 4"), closing
            assert time.monotonic() - started < 10
    finally:
        for conn in idle:
            conn.close()


def test_a_slow_body_is_408_and_holds_no_thread(database_url):
    """A body trickled slower than the deadline is refused, the request never reaching a
    thread of the app (here: one thread, which keeps answering meanwhile)."""
    import flask

    app = flask.Flask("slow")

    @app.post("/v1/echo")
    def echo() -> dict:
        return {"got": len(flask.request.get_data())}

    @app.get("/healthz")
    def health() -> dict:
        return {"ok": True}

    server = Server(app, "127.0.0.1", 0, threads=1, body_deadline=1.0).start()
    try:
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        slow.sendall(b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123")
        assert httpx.get(f"{server.url}/healthz").status_code == 200  # the thread is free
        answer = slow.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 408"), answer
        whole = httpx.post(f"{server.url}/v1/echo", content=b"x" * 100)
        assert whole.json() == {"got": 100}
        slow.close()
    finally:
        server.stop()


def stream_connections(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE '%/streams'"
        ).fetchone()
    return row[0]


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def open_stream(served: dict, job_id: str) -> socket.socket:
    conn = socket.create_connection((served["host"], served["port"]), timeout=20)
    conn.sendall(
        f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
    )
    return conn


@pytest.mark.slow
def test_a_thousand_streams_cost_no_thread_and_no_connection_each(served, store, database_url):
    spec = {"job_type": "pr-reviews", "repository": "acme/streams", "days": 1}
    auth = {"authorization": f"Bearer {TOKEN}"}
    ids = []
    for n in range(10):
        answer = httpx.post(
            f"{served['url']}/v1/captures", headers=auth, json={**spec, "pr_numbers": [n + 1]}
        )
        ids.append(answer.json()["job_id"])
    streams = [open_stream(served, ids[n % 10]) for n in range(1000)]
    try:
        for i, conn in enumerate(streams):  # every stream has begun: its history so far
            head = b""
            while b"event: Queued" not in head:
                try:
                    head += conn.recv(65536)
                except TimeoutError:
                    raise AssertionError(f"stream {i}: {head[:300]!r}") from None
            assert head.startswith(b"HTTP/1.1 200"), head[:200]
        # --threads 4 for requests, the hub's, the pools' and the server's own: 15 here
        assert threads_of(served["pid"]) <= 25  # not a thread per stream
        assert stream_connections(database_url) <= 1  # one connection feeds them all
        for job_id in ids:  # each job ends: every stream of it says so and closes
            store.cancel(job_id, "seen enough")
        for conn in streams:
            tail = b""
            while not tail.endswith(b"\r\n0\r\n\r\n"):
                more = conn.recv(65536)
                assert more, tail[-200:]
                tail += more
            assert b"event: Cancelled" in tail
            assert b"event: end" in tail
    finally:
        for conn in streams:
            conn.close()
    assert httpx.get(f"{served['url']}/healthz").status_code == 200
