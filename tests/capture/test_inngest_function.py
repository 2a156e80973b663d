"""The Inngest function: through the SDK's mocked trigger and through its HTTP serve endpoint
(production mode: signatures checked), running jobs against the sandbox GitHub."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import inngest
import pytest
from inngest._internal.net import sign_request
from inngest.experimental import mocked

from capture import inngest_function
from capture import settings as capture_settings
from capture.attempt import Runner
from capture.inngest_function import attempt_runner, create_app
from capture.serving import Server
from capture.settings import InngestSettings
from devtools.sandbox.inngest_executor import Executor
from jobstore.errors import ConfigError
from jobstore.lanes.inngest import EVENT
from jobstore.routing import Route
from jobstore.secret import Secret
from jobstore.spec import JobSpec
from tests.conftest import count_events

SIGNING_KEY = "signkey-prod-" + "ab" * 32


@pytest.fixture
def github_env(served, monkeypatch):
    """The capture settings the function's process reads: the sandbox as GitHub."""
    for name, value in served.env.items():
        monkeypatch.setenv(name, value)
    return served


@pytest.fixture
def fn(store, database_url, github_env):
    sdk = mocked.Inngest(app_id="test", is_production=False)
    runner = Runner(store, capture_settings.load())
    yield inngest_function.function(sdk, attempt_runner(runner, "inngest-test"))
    runner.close()


def inngest_job(store, prs=(1, 2)):
    spec = JobSpec.create("pr-reviews", "acme/widgets", pr_numbers=list(prs))
    return store.enqueue(spec, route=Route("inngest", "recent", "test")).job_id


def event(job_id, attempt=1, repository="acme/widgets", **extra):
    data = {"job_id": str(job_id), "attempt": attempt, "repository": repository, **extra}
    return inngest.Event(name=EVENT, id=f"{job_id}-{attempt}", data=data)


def started(store, job_id):
    return [e for e in store.history(job_id) if type(e).__name__ == "Started"]


def test_the_function_runs_the_stored_job(store, fn):
    job_id = inngest_job(store)
    result = mocked.trigger(fn, event(job_id), mocked.Inngest(app_id="test"))
    assert result.status is mocked.Status.COMPLETED, result.error
    assert result.output["outcome"] == "completed"
    job = store.get(job_id)
    assert (job.status.value, job.items) == ("completed", 2)
    (start,) = started(store, job_id)
    assert start.lane == "inngest"


def test_only_the_job_id_and_attempt_are_read_from_the_event(store, fn):
    job_id = inngest_job(store)
    # A stale or hostile payload cannot change the work: the store says what to capture.
    sent = event(job_id, repository="evil/other", owner="x", pr_number=99, prs=[7])
    result = mocked.trigger(fn, sent, mocked.Inngest(app_id="test"))
    assert result.status is mocked.Status.COMPLETED
    assert store.get(job_id).repository == "acme/widgets"
    assert store.get(job_id).items == 2


def test_a_second_delivery_of_the_same_attempt_does_no_work(store, fn):
    job_id = inngest_job(store)
    mocked.trigger(fn, event(job_id), mocked.Inngest(app_id="test"))
    again = mocked.trigger(fn, event(job_id), mocked.Inngest(app_id="test"))
    assert again.status is mocked.Status.COMPLETED
    assert again.output["outcome"] == "lost"
    assert len(started(store, job_id)) == 1


def test_a_failed_attempt_is_retried_by_the_job_store_not_by_inngest(store, fn, served):
    job_id = inngest_job(store)
    served.faults.add("graphql:502:50", "rest:502:50")
    result = mocked.trigger(fn, event(job_id), mocked.Inngest(app_id="test"))
    assert result.status is mocked.Status.FAILED
    assert isinstance(result.error, inngest.NonRetriableError)
    job = store.get(job_id)
    assert (job.status.value, job.attempt) == ("retry_scheduled", 2)
    assert len(started(store, job_id)) == 1  # Inngest did not run it again on its own
    assert fn._opts.retries == 0


@pytest.mark.parametrize(
    "data",
    [{}, {"job_id": "nope", "attempt": 1}, {"job_id": "0" * 32, "attempt": "x"}, {"attempt": 1}],
)
def test_malformed_event_data_fails_without_retries_or_writes(store, database_url, fn, data):
    before = count_events(database_url)
    result = mocked.trigger(fn, inngest.Event(name=EVENT, data=data), mocked.Inngest(app_id="test"))
    assert result.status is mocked.Status.FAILED
    assert isinstance(result.error, inngest.NonRetriableError)
    assert count_events(database_url) == before


def test_concurrency_is_keyed_by_repository(fn):
    (limit,) = fn._opts.concurrency
    assert limit.key == "event.data.repository"


def test_production_mode_needs_a_signing_key():
    with pytest.raises(ConfigError, match="INNGEST_SIGNING_KEY is not set"):
        inngest_function.client(InngestSettings())


@pytest.fixture
def endpoint(store, database_url, github_env):
    settings = InngestSettings(signing_key=Secret(SIGNING_KEY), event_key=Secret("k"))
    runner = Runner(store, capture_settings.load())
    app, fn = create_app(settings, attempt_runner(runner, "inngest-http"))
    server = Server(app, "127.0.0.1", 0).start()
    yield f"{server.url}{inngest_function.SERVE_PATH}", fn.get_id()
    server.stop()
    runner.close()


def test_the_serve_endpoint_runs_a_signed_request_step_by_step(store, endpoint):
    url, function_id = endpoint
    job_id = inngest_job(store)
    executor = Executor(url, function_id, SIGNING_KEY)
    run = executor({"name": EVENT, "id": f"{job_id}-1", "data": event(job_id).data})
    assert run.status == "completed", run.output
    assert run.output["outcome"] == "completed"
    assert run.calls == 2  # the step ran, then the function finished from the memoised step
    assert store.get(job_id).status.value == "completed"


def test_the_serve_endpoint_refuses_unsigned_and_wrongly_signed_requests(
    store, database_url, endpoint
):
    url, function_id = endpoint
    job_id = inngest_job(store)
    before = count_events(database_url)
    for key in (None, "signkey-prod-" + "cd" * 32):
        run = Executor(url, function_id, key)(
            {"name": EVENT, "id": "x", "data": event(job_id).data}
        )
        assert run.status == "failed"
        assert run.calls == 1
    assert count_events(database_url) == before
    assert store.get(job_id).status.value == "routed"


def test_the_serve_endpoint_does_not_describe_itself_to_strangers(endpoint):
    url, _ = endpoint
    answer = httpx.get(url)
    assert answer.status_code == 401
    assert "Unauthorized" in answer.text


@pytest.fixture
def inngest_api():
    """A stand-in for Inngest's API: records what a sync registers, and where."""
    seen: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            seen.append((self.path, json.loads(self.rfile.read(length) or b"{}")))
            body = b'{"ok": true, "modified": true}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def synced(store, github_env, inngest_api):
    api_url, seen = inngest_api
    settings = InngestSettings(
        signing_key=Secret(SIGNING_KEY),
        event_key=Secret("k"),
        base_url=api_url,
        serve_origin="https://capture.example.com",
    )
    runner = Runner(store, capture_settings.load())
    app, _ = create_app(settings, attempt_runner(runner, "inngest-http"))
    server = Server(app, "127.0.0.1", 0).start()
    yield f"{server.url}{inngest_function.SERVE_PATH}", seen
    server.stop()
    runner.close()


def test_an_unsigned_sync_is_refused_and_registers_nothing(synced):
    url, seen = synced
    answer = httpx.put(url, headers={"host": "evil.example"})
    assert answer.status_code == 401
    assert "not signed by Inngest" in answer.json()["error"]
    assert seen == []


def test_a_signed_sync_registers_the_configured_url_never_the_requests_host(synced):
    url, seen = synced
    signature = sign_request(b"", SIGNING_KEY)
    answer = httpx.put(url, headers={"host": "evil.example", "x-inngest-signature": signature})
    assert answer.status_code < 300, answer.text
    ((path, registered),) = seen
    assert path.endswith("/fn/register")
    assert registered["url"].startswith("https://capture.example.com/api/inngest")
    assert "evil.example" not in json.dumps(registered)


def test_a_signed_call_replayed_later_is_refused_unread(store, database_url, endpoint):
    url, function_id = endpoint
    job_id = inngest_job(store)
    before = count_events(database_url)
    body = json.dumps({"event": {"name": EVENT, "data": event(job_id).data}}).encode()
    for t in (time.time() - 3600, time.time() + 3600):  # an hour old, an hour ahead
        answer = httpx.post(
            url,
            params={"fnId": function_id, "stepId": "step"},
            content=body,
            headers={"x-inngest-signature": sign_request(body, SIGNING_KEY, round(t))},
        )
        assert answer.status_code == 401
        # the second may turn between signing and checking
        assert re.search(r"the signature is 3(599|600|601)s from now", answer.json()["error"])
    assert count_events(database_url) == before


@pytest.mark.parametrize(
    ("env", "host", "message"),
    [
        ({"INNGEST_DEV": "1"}, "0.0.0.0", "INNGEST_DEV=1 runs unsigned calls from anyone"),
        ({"INNGEST_DEV": "1"}, "192.0.2.7", "serve it on 127.0.0.1, not 192.0.2.7"),
        (
            {"INNGEST_SIGNING_KEY": SIGNING_KEY, "INNGEST_SERVE_ORIGIN": "capture.example.com"},
            "127.0.0.1",
            "INNGEST_SERVE_ORIGIN must be an origin like https://",
        ),
    ],
)
def test_bin_serve_refuses_an_inngest_set_up_open_to_anyone(
    database_url, store, env, host, message
):
    from click.testing import CliRunner

    from capture.cli.serve import serve as serve_command
    from tests.conftest import assert_refused

    result = CliRunner().invoke(
        serve_command,
        ["--host", host, "--port", "0"],
        env={"DATABASE_URL": database_url, "CAPTURE_API_TOKENS": "t" * 24, **env},
    )
    assert_refused(result, message)


def test_dev_mode_on_loopback_is_fine():
    InngestSettings(dev=True).check("127.0.0.1")
    InngestSettings(dev=True).check("::1")
    InngestSettings(dev=True).check("localhost")
