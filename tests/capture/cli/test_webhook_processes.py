"""Webhooks as a user runs them: a real `bin/serve` receiving the sandbox's signed
deliveries over a socket, and a real `bin/run-job` worker applying them, SIGKILLed while
its batch of pull requests is being fetched. The attempt is found stale and retried; every
delivery ends processed, every row stored once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from devtools.bench.budget import private_key
from devtools.sandbox import Options, Sandbox, World
from devtools.sandbox.apps import Installation
from tests.capture.rig import LOCAL
from tests.conftest import ROOT
from tests.jobstore.test_views import wait_for

TOKEN = "ghp_webhook_process_token_000000"
SECRET = "process-webhook-secret-0123456789"
PATH = "/v1/github/webhooks"
REPO = "acme/widgets"


def rows(url: str, query: str, *params) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(database_url, store, tmp_path):
    now = datetime.now(UTC)
    world = World(seed=11, now=now - timedelta(minutes=5))
    world.add_repository(REPO, 10, 60)
    sandbox = Sandbox(world, Options(tokens={TOKEN: 100_000}, latency=0.3))
    github = sandbox.serve()
    _, public = private_key()
    sandbox.apps.register(9, public)
    sandbox.apps.install(Installation(77, 9, "acme"))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_API_URL": github.url,
        "GITHUB_GRAPHQL_URL": f"{github.url}/graphql",
        "CAPTURE_API_TOKENS": "p" * 24,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "CAPTURE_WEBHOOK_LANE": "local",
        "CAPTURE_WEBHOOK_COALESCE_SECONDS": "1",
        "CAPTURE_WEBHOOK_DETAILS_SECONDS": "1",
        "CAPTURE_BATCH_SIZE": "2",
    }
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        serve = subprocess.Popen(
            [sys.executable, ROOT / "bin" / "serve", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    worker = None
    try:
        assert serve.stdout is not None
        base = json.loads(serve.stdout.readline())["url"]
        answers = []

        def send(url: str, headers: dict, body: bytes) -> int:
            answers.append(httpx.post(base + url, content=body, headers=headers).status_code)
            return answers[-1]

        hooks = sandbox.enable_webhooks(SECRET, PATH, send)
        pulls = [world.add_pull_request(REPO, world.now, bare=True) for _ in range(6)]
        comments = [world.add_comment(REPO, p.number, world.now, f"on #{p.number}") for p in pulls]
        hooks.pump(now + timedelta(minutes=1))
        assert answers == [202] * 12
        worker = subprocess.Popen(
            [
                sys.executable,
                ROOT / "bin" / "run-job",
                "--lane",
                "local",
                "--watch",
                "--poll",
                "0.2",
                "--worker-id",
                "doomed",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        claimed = "SELECT count(*) FROM github_deliveries WHERE claimed_by IS NOT NULL"
        wait_for(lambda: rows(database_url, claimed)[0][0] > 0, timeout=60)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        ((job_id,),) = rows(
            database_url, "SELECT job_id FROM job_heads WHERE job_type = 'github-webhooks'"
        )
        killed = store.get(job_id)
        assert killed.status.value == "running"
        stored = rows(database_url, "SELECT count(*) FROM pr_files")[0][0]
        assert stored < sum(len(p.files) for p in pulls)  # killed before the batch ended
        later = killed.last_event_at + timedelta(seconds=store.settings.lease("local") + 1)
        assert store.sweep_stale(later) == [job_id]
        store.route(job_id, LOCAL, later)
        retry = subprocess.run(
            [sys.executable, ROOT / "bin" / "run-job", "--job-id", str(job_id)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert retry.returncode == 0, retry.stderr
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=30)
        github.stop()
    assert store.get(job_id).status.value == "completed"
    assert rows(database_url, "SELECT DISTINCT status FROM github_deliveries") == [("processed",)]
    for pr in pulls:
        files = rows(
            database_url, "SELECT count(*) FROM pr_files WHERE pull_request_id = %s", pr.database_id
        )
        assert files == [(len(pr.files),)]
    ids = [c.database_id for c in comments]
    assert rows(database_url, "SELECT count(*) FROM comments WHERE id = ANY(%s)", ids) == [(6,)]
    assert "Traceback" not in log.read_text()
