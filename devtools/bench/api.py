"""`bin/bench api`: the HTTP API on its production server (a real `bin/serve` process on
this machine) against the CLI's enqueue and the library call in the same run: requests
per second and latency of POST /v1/captures and GET /v1/jobs/ID, and the delay from a
Progressed event's commit to its server-sent event reaching a client."""

from __future__ import annotations

import json
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import click
import httpx
import psycopg

import jobstore
from devtools.bench.store import percentile, scratch_database
from jobstore import db
from jobstore.dispatcher import Dispatcher
from jobstore.settings import Settings, load
from jobstore.spec import JobSpec

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "bench-api-token-0123456789"


def spec_body(i: int) -> dict[str, Any]:
    return {"job_type": "pr-reviews", "repository": f"bench/repo-{i}", "days": 1, "lane": "local"}


def serve(url: str, threads: int) -> tuple[subprocess.Popen, str, IO[str]]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CAPTURE_API_TOKENS": TOKEN,
        "CAPTURE_API_SUBMIT_PER_MINUTE": str(10**6),  # throughput, not the quota, measured
    }
    for name in ("INNGEST_SIGNING_KEY", "INNGEST_DEV"):
        env.pop(name, None)
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - the server's access log, as long as it runs
    process = subprocess.Popen(
        [sys.executable, ROOT / "bin" / "serve", "--port", "0", "--threads", str(threads)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=30)
        log.seek(0)
        tail = " | ".join(log.read().strip().splitlines()[-3:])
        log.close()
        raise click.ClickException(f"bin/serve did not start: {tail}")
    return process, json.loads(line)["url"], log


def hammer(
    base: str, clients: int, calls: list[tuple[str, str, Any]]
) -> tuple[float, list[float], list[Any]]:
    """Runs `calls` (method, path, body) from `clients` concurrent connections; returns
    wall seconds, each call's latency (ms) and each answer's JSON."""
    local = threading.local()
    opened: list[httpx.Client] = []

    def one(call: tuple[str, str, Any]) -> tuple[float, Any]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(
                base_url=base, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30
            )
            opened.append(local.client)
        method, path, body = call
        started = time.perf_counter()
        answer = local.client.request(method, path, json=body)
        elapsed = (time.perf_counter() - started) * 1000
        if answer.status_code >= 300:
            raise click.ClickException(f"{method} {path}: HTTP {answer.status_code} {answer.text}")
        return elapsed, answer.json()

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(one, calls))
        wall = time.perf_counter() - started
    finally:
        for client in opened:
            client.close()
    return wall, [r[0] for r in results], [r[1] for r in results]


def cli_enqueue(url: str, n: int, offset: int) -> float:
    """`bin/enqueue` as a user runs it, one process per job; jobs per second."""
    env = {**os.environ, "DATABASE_URL": url}
    started = time.perf_counter()
    for i in range(offset, offset + n):
        body = spec_body(i)
        args = [body["job_type"], "--repo", body["repository"], "--days", "1", "--lane", "local"]
        script = [sys.executable, str(ROOT / "bin" / "enqueue")]
        subprocess.run([*script, *args, "--json"], env=env, check=True, capture_output=True)
    return n / (time.perf_counter() - started)


def library_submit(url: str, n: int, offset: int) -> float:
    """Dispatcher.submit in this process (what both call): the ceiling, jobs per second."""
    store = jobstore.open_store(Settings(), url=url)
    try:
        with httpx.Client() as client:
            dispatcher = Dispatcher.open(store, client)
            started = time.perf_counter()
            for i in range(offset, offset + n):
                b = spec_body(i)
                spec = JobSpec.create(b["job_type"], b["repository"], days=1)
                dispatcher.submit(spec, datetime.now(UTC), "local")
            return n / (time.perf_counter() - started)
    finally:
        store.close()


def sse_delays(base: str, url: str, job_id: str, events: int, gap: float) -> list[float]:
    """Milliseconds from each Progressed event's commit to its frame at the client."""
    store = jobstore.open_store(Settings(), url=url)
    got: dict[int, float] = {}
    committed: dict[int, float] = {}
    ready = threading.Event()

    def read() -> None:
        headers = {"authorization": f"Bearer {TOKEN}"}
        with (
            httpx.Client(base_url=base, headers=headers, timeout=60) as client,
            client.stream("GET", f"/v1/jobs/{job_id}/events") as response,
        ):
            ready.set()
            frame: dict[str, str] = {}
            for line in response.iter_lines():
                if line:
                    key, _, value = line.partition(": ")
                    frame[key] = value
                    continue
                if frame.get("event") == "Progressed":
                    got[int(frame["id"])] = time.monotonic()
                if frame.get("event") == "end":
                    return
                frame = {}

    reader = threading.Thread(target=read)
    reader.start()
    try:
        ready.wait(10)
        claim = store.claim(job_id, "bench")
        assert claim.won, claim.reason
        for i in range(events):
            job = store.progress(job_id, i + 1, total=events, cursor=str(i))
            committed[job.version] = time.monotonic()
            time.sleep(gap)
        store.complete(job_id, events)
        reader.join(30)
    finally:
        store.close()
    return [(got[v] - t) * 1000 for v, t in committed.items() if v in got]


IDLE_FLOOD = 1000  # connections opened and left idle (half of them half-sent)
FRAME = re.compile(rb"id: (\d+)\nevent: (\w+)")


def stream_connections(url: str) -> int:
    """The server's connections feeding event streams (application_name .../streams)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE '%%/streams'"
        ).fetchone()
    return int(row[0]) if row else 0


def many_streams(
    base: str, url: str, job_ids: list[str], streams: int, rounds: int, gap: float
) -> dict[str, Any]:
    """`streams` event streams open at once over `job_ids` (raw sockets, one reader
    thread): each job makes `rounds` Progressed events; milliseconds from each commit to
    its frame at every stream of the job, and the connections feeding the streams."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    watching: dict[socket.socket, str] = {}
    buffers: dict[socket.socket, bytes] = {}
    arrived: dict[tuple[str, int], list[float]] = {}
    begun: set[socket.socket] = set()
    ended: set[socket.socket] = set()
    selector = selectors.DefaultSelector()
    for i in range(streams):
        conn = socket.create_connection((host, int(port)), timeout=30)
        job_id = job_ids[i % len(job_ids)]
        conn.sendall(
            f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        conn.setblocking(False)
        watching[conn], buffers[conn] = job_id, b""
        selector.register(conn, selectors.EVENT_READ)
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set() and len(ended) < streams:
            for key, _ in selector.select(timeout=0.2):
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                data = conn.recv(65536)
                now = time.monotonic()
                if not data:
                    selector.unregister(conn)
                    ended.add(conn)
                    continue
                buffers[conn] += data
                *frames, buffers[conn] = buffers[conn].split(b"\n\n")
                for frame in frames:
                    found = FRAME.search(frame)
                    if found and found.group(2) == b"Queued":
                        begun.add(conn)
                    if found and found.group(2) == b"Progressed":
                        key_ = (watching[conn], int(found.group(1)))
                        arrived.setdefault(key_, []).append(now)
                    if b"event: end" in frame:
                        selector.unregister(conn)
                        ended.add(conn)

    reader = threading.Thread(target=read)
    reader.start()
    store = jobstore.open_store(Settings(), url=url)
    committed: dict[tuple[str, int], float] = {}
    try:
        deadline = time.monotonic() + 120
        while len(begun) < streams and time.monotonic() < deadline:
            time.sleep(0.1)
        if len(begun) < streams:
            raise click.ClickException(f"only {len(begun)} of {streams} event streams began")
        opened = len(begun)
        for job_id in job_ids:
            assert store.claim(UUID(job_id), "bench").won
        connections = stream_connections(url)
        for i in range(rounds):
            for job_id in job_ids:
                job = store.progress(UUID(job_id), i + 1, total=rounds, cursor=str(i))
                committed[(job_id, job.version)] = time.monotonic()
                time.sleep(gap)
            connections = max(connections, stream_connections(url))
        for job_id in job_ids:
            store.complete(UUID(job_id), rounds)
        reader.join(60)
    finally:
        stop.set()
        store.close()
        for conn in watching:
            conn.close()
    delays = [
        max(0.0, (at - committed[key]) * 1000)
        for key, times in arrived.items()
        if key in committed
        for at in times
    ]
    expected = len(committed) * streams // len(job_ids)
    return {
        "streams_open": opened,
        "frames": len(delays),
        "frames_missed": expected - len(delays),
        "ended": len(ended),
        "delays": delays,
        "db_connections_for_streams": connections,
    }


def healthz_ms(base: str, n: int) -> list[float]:
    """`n` GET /healthz one after another, each on a connection of its own: milliseconds."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        with socket.create_connection((host, int(port)), timeout=30) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := conn.recv(4096):
                answer += chunk
        if not answer.startswith(b"HTTP/1.1 200"):
            raise click.ClickException(f"GET /healthz answered {answer[:40]!r}")
        times.append((time.perf_counter() - started) * 1000)
    return times


def under_idle_flood(base: str, connections: int, n: int) -> list[float]:
    """healthz_ms while `connections` sockets sit open doing nothing, half of them with a
    request begun and never finished (what a slowloris does)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    idle: list[socket.socket] = []
    try:
        for i in range(connections):
            conn = socket.create_connection((host, int(port)), timeout=30)
            if i % 2:
                conn.sendall(b"POST /v1/captures HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n")
            idle.append(conn)
        return healthz_ms(base, n)
    finally:
        for conn in idle:
            conn.close()


@click.command()
@click.option("--requests", "n", default=1000, show_default=True, type=click.IntRange(50, 100_000))
@click.option("--clients", default=8, show_default=True, type=click.IntRange(1, 256))
@click.option("--threads", default=16, show_default=True, type=click.IntRange(1, 256))
@click.option("--cli-jobs", default=20, show_default=True, type=click.IntRange(5, 1000))
@click.option("--progress-events", default=200, show_default=True, type=click.IntRange(10, 10_000))
@click.option(
    "--streams",
    default=1000,
    show_default=True,
    type=click.IntRange(10, 20_000),
    help="Event streams open at once (over 50 jobs) while their jobs progress.",
)
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line.")
def api(
    n: int,
    clients: int,
    threads: int,
    cli_jobs: int,
    progress_events: int,
    streams: int,
    as_json: bool,
) -> None:
    """POST /v1/captures and GET /v1/jobs/ID per second against the CLI's enqueue and the
    library call, p95 latency, and the server-sent events delay."""
    server_url = db.database_url(load())
    with scratch_database(server_url, "api") as url:
        jobstore.migrate(url)
        process, base, log = serve(url, threads)
        try:
            posts = [("POST", "/v1/captures", spec_body(i)) for i in range(n)]
            post_s, post_ms, docs = hammer(base, clients, posts)
            ids = [d["job_id"] for d in docs]
            if len(set(ids)) != n or not all(d["created"] for d in docs):
                raise click.ClickException("POST /v1/captures did not make one job per request")
            gets = [("GET", f"/v1/jobs/{job_id}", None) for job_id in ids]
            get_s, get_ms, _ = hammer(base, clients, gets)
            again_s, _, again = hammer(base, clients, posts[: n // 10])  # idempotent
            if any(d["created"] for d in again):
                raise click.ClickException("a repeated POST made a second job")
            cli_rate = cli_enqueue(url, cli_jobs, n)
            lib_rate = library_submit(url, max(100, n // 5), n + cli_jobs)
            sse_job = hammer(base, 1, [("POST", "/v1/captures", spec_body(10**6))])[2][0]
            delays = sse_delays(base, url, sse_job["job_id"], progress_events, 0.02)
            watched = hammer(
                base, 1, [("POST", "/v1/captures", spec_body(2 * 10**6 + i)) for i in range(50)]
            )[2]
            scale = many_streams(base, url, [d["job_id"] for d in watched], streams, 10, 0.01)
            quiet_ms = healthz_ms(base, 50)
            flooded_ms = under_idle_flood(base, IDLE_FLOOD, 50)
        finally:
            process.terminate()
            process.communicate(timeout=30)
            log.close()
    result = {
        "requests": n,
        "clients": clients,
        "server_threads": threads,
        "post_rps": round(n / post_s, 1),
        "post_per_s": round(n / post_s, 1),  # the name for it
        "post_p50_ms": round(percentile(post_ms, 0.5), 2),
        "post_p95_ms": round(percentile(post_ms, 0.95), 2),
        "get_rps": round(n / get_s, 1),
        "get_per_s": round(n / get_s, 1),
        "get_p50_ms": round(percentile(get_ms, 0.5), 2),
        "get_p95_ms": round(percentile(get_ms, 0.95), 2),
        "repeat_post_rps": round((n // 10) / again_s, 1),
        "cli_enqueue_per_s": round(cli_rate, 2),
        "library_submit_per_s": round(lib_rate, 1),
        "post_vs_cli": round((n / post_s) / cli_rate, 1),
        "post_vs_library": round((n / post_s) / lib_rate, 2),
        # one stream open: each Progressed event's commit to its frame at the client
        "sse_events": len(delays),
        "sse_p50_ms_one_stream": round(percentile(delays, 0.5), 1),
        "sse_p95_ms_one_stream": round(percentile(delays, 0.95), 1),
        "sse_max_ms_one_stream": round(max(delays), 1),
        # `streams` open at once over 50 jobs, every frame at every stream
        "streams_open": scale["streams_open"],
        "stream_frames": scale["frames"],
        "stream_frames_missed": scale["frames_missed"],
        "streams_ended": scale["ended"],
        "sse_p50_ms": round(percentile(scale["delays"], 0.5), 1),
        "sse_p95_ms": round(percentile(scale["delays"], 0.95), 1),
        "sse_max_ms": round(max(scale["delays"]), 1),
        "db_connections_for_streams": scale["db_connections_for_streams"],
        "idle_connections": IDLE_FLOOD,
        "healthz_p95_ms": round(percentile(quiet_ms, 0.95), 1),
        # the peer: the same requests with IDLE_FLOOD idle or half-sent connections open
        "healthz_p95_ms_under_idle_flood": round(percentile(flooded_ms, 0.95), 1),
    }
    click.echo(f"{'':<28}{'per s':>9}  {'p50 ms':>7}  {'p95 ms':>7}")
    click.echo(
        f"{'POST /v1/captures':<28}{result['post_rps']:>9}  {result['post_p50_ms']:>7}  "
        f"{result['post_p95_ms']:>7}"
    )
    click.echo(
        f"{'GET /v1/jobs/ID':<28}{result['get_rps']:>9}  {result['get_p50_ms']:>7}  "
        f"{result['get_p95_ms']:>7}"
    )
    click.echo(f"{'POST again (coalesced)':<28}{result['repeat_post_rps']:>9}")
    click.echo(f"{'bin/enqueue (a process each)':<28}{result['cli_enqueue_per_s']:>9}")
    click.echo(f"{'Dispatcher.submit (library)':<28}{result['library_submit_per_s']:>9}")
    click.echo(
        f"POST is {result['post_vs_cli']}x the CLI's enqueue and {result['post_vs_library']}x "
        f"the library call; SSE delay with one stream p50 {result['sse_p50_ms_one_stream']} "
        f"ms, p95 {result['sse_p95_ms_one_stream']} ms over {len(delays)} events"
    )
    click.echo(
        f"{result['streams_open']} streams open: {result['stream_frames']} frames "
        f"({result['stream_frames_missed']} missed), delay p50 {result['sse_p50_ms']} ms, p95 "
        f"{result['sse_p95_ms']} ms, max {result['sse_max_ms']} ms; "
        f"{result['db_connections_for_streams']} database connection(s) feeding them"
    )
    click.echo(
        f"GET /healthz p95 {result['healthz_p95_ms']} ms; with {IDLE_FLOOD} idle or "
        f"half-sent connections open {result['healthz_p95_ms_under_idle_flood']} ms"
    )
    if as_json:
        click.echo(json.dumps(result))
