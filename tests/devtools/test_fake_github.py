"""`bin/fake-github` serves the sandbox over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from click.testing import CliRunner

from devtools.sandbox.cli import fake_github
from tests.conftest import ROOT, assert_refused
from tests.jobstore.test_views import wait_for


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


@pytest.mark.slow
@pytest.mark.parametrize("counting", ["strict", "lenient"])
def test_it_plays_either_reading_of_how_nodes_ids_counts(counting):
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bin" / "fake-github"), "--node-count", counting],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        urls = json.loads(process.stdout.readline())
        with httpx.Client(headers={"Authorization": f"Bearer {urls['token']}"}) as client:
            listed = client.post(
                urls["graphql"],
                json={
                    "query": '{ repository(owner: "acme", name: "widgets") { '
                    "pullRequests(first: 100) { nodes { id } } } }"
                },
            ).json()
            ids = [n["id"] for n in listed["data"]["repository"]["pullRequests"]["nodes"]]
            query = """query($ids: [ID!]!) { rateLimit { cost nodeCount } nodes(ids: $ids) {
              ... on PullRequest { files(first: 100) { nodes { path } }
                reviews(first: 100) { nodes { state } } } } }"""
            body = client.post(urls["graphql"], json={"query": query, "variables": {"ids": ids}})
        charged = body.json()["data"]["rateLimit"]
        # strict: the list of 100 ids is a connection, so 1 + 100 x 2 requests (2 points) and
        # 100 + 100 x 200 nodes; lenient: 2 top-level connections, 1 point, 200 nodes
        if counting == "strict":
            assert (charged["cost"], charged["nodeCount"]) == (2, 100 + 100 * 200)
        else:
            assert (charged["cost"], charged["nodeCount"]) == (1, 200)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        process.stdout.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repo", "acme"], "is not owner/name:PULLS"),
        (["--repo", "acme/w:-1"], "is not owner/name:PULLS"),
        (["--days", "0"], "Invalid value for '--days'"),
        (["--port", "70000"], "Invalid value for '--port'"),
        (["--fault", "graphql"], "is not TARGET:KIND"),
        (["--fault", "ftp:502"], "TARGET one of graphql, rest, dispatch, inngest"),
        (["--workflow", "capture-job.yml"], "is not REPO:FILE:INPUTS"),
        (["--workflow", "acme/ops:notes.txt:x"], "is not REPO:FILE:INPUTS"),
        (["--host", "256.1.1.1"], "cannot serve on 256.1.1.1:0"),
        (["--node-count", "generous"], "Invalid value for '--node-count'"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args, message):
    result = CliRunner().invoke(fake_github, args)
    assert_refused(result, message)


@pytest.mark.slow
def test_execute_runs_both_lanes_for_scripts_pointed_at_it_by_its_exports(database_url, store):
    """What a user does by hand: start it, paste its exports, enqueue work for both lanes."""
    process = subprocess.Popen(
        [*(sys.executable, ROOT / "bin" / "fake-github", "--execute"), "--days", "60"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "DATABASE_URL": database_url},
    )
    try:
        assert json.loads(process.stdout.readline())["rest"].startswith("http://127.0.0.1:")
        assert process.stdout.readline().startswith("# point the scripts at this sandbox")
        exports = dict(shlex.split(process.stdout.readline())[1].split("=", 1) for _ in range(7))
        assert exports["DATABASE_URL"] == database_url
        assert exports["CAPTURE_ACTIONS_REPOSITORY"] == "acme/ops"
        env = {**os.environ, **exports}
        month_ago = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT00:00:00Z")
        ids = {}
        for lane, args in (
            ("inngest", ["pr-reviews", "--repo", "acme/widgets", "--days", "1"]),
            (
                "github_actions",
                [
                    *("historical-sync", "--repo", "acme/widgets", "--trigger", "backfill"),
                    *("--since", "2020-01-01T00:00:00Z", "--until", month_ago),
                ],
            ),
        ):
            done = subprocess.run(
                [sys.executable, str(ROOT / "bin" / "enqueue"), *args, "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            answer = json.loads(done.stdout)
            assert (answer["lane"], answer["dispatched"]) == (lane, True)
            ids[lane] = answer["job_id"]
        wait_for(lambda: all(store.get(i).is_final for i in ids.values()), timeout=90)
        assert {lane: store.get(i).status.value for lane, i in ids.items()} == {
            "inngest": "completed",
            "github_actions": "completed",
        }
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        process.stdout.close()
