"""How scripts log: -v/--verbose, --log-json (one JSON object per line), and every
database connection named after its script in pg_stat_activity."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys

import psycopg

from capture.cli import logs
from tests.conftest import ROOT
from tests.jobstore.test_views import wait_for


def test_text_logs_by_default_at_warning(capsys):
    logs.configure(0, False)
    logging.getLogger("capture.test").info("hidden")
    logging.getLogger("capture.test").warning("shown %s", 1)
    assert capsys.readouterr().err == "WARNING capture.test: shown 1\n"


def test_json_logs_one_object_per_line(capsys):
    logs.configure(1, True)
    try:
        logging.getLogger("capture.test").info("claimed %s", "job-1", extra={"job_id": "job-1"})
        logging.getLogger("httpx").info("HTTP Request: POST https://hooks.invalid/s3cr3t")
        (line,) = capsys.readouterr().err.splitlines()
        doc = json.loads(line)
        assert (doc["level"], doc["logger"], doc["message"]) == (
            "INFO",
            "capture.test",
            "claimed job-1",
        )
        assert doc["job_id"] == "job-1"
        assert "time" in doc
    finally:
        logs.configure(0, False)


def test_verbose_and_json_options_on_a_real_script(database_url, store):
    env = {**os.environ, "DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, ROOT / "bin" / "jobs", "-vv", "--log-json", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert lines, "-vv logs something"
    assert {line["level"] for line in lines} <= {"DEBUG", "INFO", "WARNING"}


def _backends(url: str) -> dict[int, str]:
    with psycopg.connect(url, application_name="prcapture-test") as conn:
        rows = conn.execute(
            "SELECT pid, application_name FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return dict(rows)


def _names(url: str) -> set[str]:
    return set(_backends(url).values())


def _connected(url: str) -> bool:
    return any(name.startswith("prcapture-run-job") for name in _names(url))


def _listening(url: str) -> bool:
    with psycopg.connect(url, application_name="prcapture-test") as conn:
        return bool(
            conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'LISTEN%%'"
            ).fetchone()
        )


def test_every_connection_names_its_script(database_url, served):
    """A watching worker (credentials accepted by the sandbox, so it settles on LISTEN):
    every connection it holds names it. This test opens no store of its own."""
    worker = subprocess.Popen(
        [sys.executable, ROOT / "bin" / "run-job", "--lane", "local", "--watch", "--poll", "0.2"],
        env={**os.environ, **served.env, "DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: _listening(database_url) or worker.poll() is not None, timeout=30)
        assert worker.poll() is None, worker.communicate()
        theirs = _backends(database_url)
        assert theirs, "the worker is connected"
        assert all(name.split("/")[0] == "prcapture-run-job" for name in theirs.values()), theirs
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)


def test_a_signal_while_an_idle_worker_closes_ends_it_without_a_traceback(database_url, store):
    """`timeout` sends SIGTERM to the worker and again to its process group: the second
    arrives while the worker is closing."""
    worker = subprocess.Popen(
        [sys.executable, ROOT / "bin" / "run-job", "--lane", "local", "--watch", "--poll", "0.2"],
        env={**os.environ, "DATABASE_URL": database_url, "GITHUB_TOKEN": "ghp_" + "x" * 36},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: _connected(database_url), timeout=30)
    worker.send_signal(signal.SIGTERM)
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert worker.returncode in (0, 143), err
