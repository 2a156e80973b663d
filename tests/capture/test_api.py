"""The HTTP API on its production server (hypercorn, a real local port): token auth with
nothing written for a refused request, idempotent POST /v1/captures with the router's
reason, a job's state and history, freshness, and the server-sent events stream of a
job's progress (resumable with Last-Event-ID)."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from psycopg import sql

import jobstore
from capture.api.app import ApiSettings, Context, create_app
from capture.freshness.registry import Entry, Registry
from capture.freshness.settings import load_freshness
from capture.serving import Server
from jobstore.db import Database
from jobstore.errors import ConfigError
from jobstore.settings import Settings, load
from tests.conftest import count_events
from tests.jobstore.test_views import wait_for

TOKEN = "api-token-0123456789abcdef"


@pytest.fixture
def api(database_url, served):
    settings = replace(Settings(), lanes=load(served.env).lanes, pool_wait=2.0)
    store = jobstore.open_store(settings, url=database_url)  # as bin/serve opens it: a short wait
    ctx = Context(store, load_freshness({}))
    app = create_app(ctx, ApiSettings.load({"CAPTURE_API_TOKENS": f"other-token-xxxxxxxx,{TOKEN}"}))
    server = Server(app, "127.0.0.1", 0, threads=8).start()
    client = httpx.Client(
        base_url=server.url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    yield client
    client.close()
    server.stop()
    ctx.close()
    store.close()


def recent(**extra) -> dict:
    return {"job_type": "pr-reviews", "repository": "acme/widgets", "days": 1, **extra}


def test_health_is_open_and_everything_else_wants_a_token(api, database_url):
    base = str(api.base_url).rstrip("/")
    assert httpx.get(f"{base}/healthz").json() == {"ok": True}
    before = count_events(database_url)
    for method, path in [
        ("POST", "/v1/captures"),
        ("GET", "/v1/jobs/abc"),
        ("GET", "/v1/repos/acme/widgets/freshness"),
        ("GET", "/metrics"),
        ("GET", "/"),
        ("GET", "/v1/dashboard"),
    ]:
        for headers in ({}, {"authorization": "Bearer wrong-token-0123456789"}):
            answer = httpx.request(method, base + path, headers=headers, json=recent())
            assert answer.status_code == 401, (method, path)
            assert answer.json()["error"].startswith("a valid token is needed")
    assert count_events(database_url) == before


def test_a_capture_is_enqueued_routed_and_dispatched_once(api, served, store):
    first = api.post("/v1/captures", json=recent(trigger="manual"))
    assert first.status_code == 201, first.text
    doc = first.json()
    assert (doc["lane"], doc["rule"], doc["status"]) == ("inngest", "recent", "dispatched")
    assert doc["reason"]
    assert doc["created"] is True
    again = api.post("/v1/captures", json=recent(trigger="manual"))
    assert again.status_code == 200
    assert (again.json()["job_id"], again.json()["created"]) == (doc["job_id"], False)
    assert len(served.inngest.events) == 1
    job = api.get(doc["links"]["self"]).json()
    assert job["job_id"] == doc["job_id"]
    assert [e["event"] for e in job["events"]] == ["Queued", "Routed", "Dispatched"]
    assert job["state"]["status"] == "dispatched"
    assert api.get(f"/v1/jobs/{doc['job_id'][:8]}").json()["job_id"] == doc["job_id"]


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "the body must be a JSON object"),
        ([1, 2], "the body must be a JSON object"),
        ({"job_type": "nope", "repository": "a/b"}, "job_type must be one of"),
        ({**recent(), "colour": "red"}, "unknown fields: colour"),
        ({**recent(), "parent_id": "x"}, "unknown fields: parent_id"),
        ({**recent(), "lane": "moon"}, "lane must be auto or one of"),
        ({**recent(), "repository": "no-slash"}, "repository"),
        ({**recent(), "days": -3}, "days"),
        ({**recent(), "pr_numbers": "12"}, "pr_numbers must be a list"),
        ({**recent(), "since": "yesterday"}, "since"),
        ({**recent(), "params": nested(900)}, "params: nests deeper than 8 levels"),
        ('{"params":' * 50_000 + "1" + "}" * 50_000, "the body nests too deep"),
    ],
)
def test_a_bad_spec_is_400_in_one_line_and_nothing_is_written(api, database_url, body, message):
    before = count_events(database_url)
    if isinstance(body, str):
        answer = api.post(
            "/v1/captures", content=body, headers={"content-type": "application/json"}
        )
    else:
        answer = api.post("/v1/captures", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert message in error
    assert "\n" not in error
    assert count_events(database_url) == before


def test_unknown_jobs_are_404_and_bad_ids_400(api):
    assert api.get("/v1/jobs/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api.get("/v1/jobs/not-hex").status_code == 400


def test_freshness_of_a_tracked_repository(api, database_url):
    assert api.get("/v1/repos/acme/widgets/freshness").status_code == 404
    registry = Registry(Database(database_url, "registry"))
    try:
        registry.sync_tiers(load_freshness({}).tiers)
        registry.track([Entry("acme/widgets", "hot")], datetime.now(UTC))
    finally:
        registry.db.close()
    doc = api.get("/v1/repos/Acme/Widgets/freshness").json()
    assert (doc["repository"], doc["tier"]) == ("acme/widgets", "hot")
    assert "breached" in doc
    assert "next_due" in doc


def read_frames(response: httpx.Response, into: list[dict], stop_after: str = "end") -> None:
    frame: dict = {}
    for line in response.iter_lines():
        if not line:
            if frame:
                into.append(frame)
                if frame.get("event") == stop_after:
                    return
            frame = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            frame[key] = value


def test_a_jobs_progress_streams_as_server_sent_events(api, store):
    job_id = api.post("/v1/captures", json=recent()).json()["job_id"]
    frames: list[dict] = []
    with api.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = threading.Thread(target=read_frames, args=(response, frames))
        reader.start()
        assert store.claim(job_id, "w1").won
        store.progress(job_id, 5, total=10, cursor="c1", note="halfway")
        store.complete(job_id, 10, api_points=3)
        reader.join(timeout=10)
    assert not reader.is_alive()
    names = [f["event"] for f in frames]
    assert names == ["Queued", "Routed", "Dispatched", "Started", "Progressed", "Completed", "end"]
    assert [int(f["id"]) for f in frames[:-1]] == list(range(1, 7))
    progressed = json.loads(frames[4]["data"])
    assert (progressed["done"], progressed["total"]) == (5, 10)
    assert json.loads(frames[-1]["data"]) == {"status": "completed"}
    # A client that reconnects after event 4 gets the rest, nothing twice.
    again: list[dict] = []
    with api.stream("GET", f"/v1/jobs/{job_id}/events", headers={"last-event-id": "4"}) as r:
        read_frames(r, again)
    assert [f["event"] for f in again] == ["Progressed", "Completed", "end"]


def test_the_stream_of_an_unknown_job_is_404(api):
    answer = api.get("/v1/jobs/00000000-0000-0000-0000-000000000000/events")
    assert answer.status_code == 404


@pytest.mark.parametrize(
    ("tokens", "message"),
    [("", "CAPTURE_API_TOKENS is not set"), ("short", "at least 16 characters")],
)
def test_the_api_refuses_to_start_without_good_tokens(tokens, message):
    with pytest.raises(ConfigError, match=message):
        ApiSettings.load({"CAPTURE_API_TOKENS": tokens})


def test_jobs_are_listed_current_newest_first_with_filters(api):
    ids = [
        api.post("/v1/captures", json=recent(repository=f"acme/r{i}")).json()["job_id"]
        for i in range(3)
    ]
    listed = api.get("/v1/jobs").json()["jobs"]
    assert [j["job_id"] for j in listed] == ids[::-1]  # no projector needed: job_heads
    one = api.get("/v1/jobs", params={"repository": "ACME/r1"}).json()["jobs"]
    assert [j["job_id"] for j in one] == [ids[1]]
    assert api.get("/v1/jobs", params={"status": "completed"}).json()["jobs"] == []
    assert len(api.get("/v1/jobs", params={"limit": "2"}).json()["jobs"]) == 2
    for params, message in [
        ({"status": "done"}, "status must be one of"),
        ({"lane": "moon"}, "lane must be one of"),
        ({"limit": "0"}, "limit must be a whole number"),
        ({"since": "yesterday"}, "is not an ISO 8601 time"),
        ({"colour": "red"}, "unknown parameters: colour"),
    ]:
        answer = api.get("/v1/jobs", params=params)
        assert answer.status_code == 400
        assert message in answer.json()["error"]


def test_browsers_on_a_listed_origin_may_call_the_api(store, database_url):
    settings = ApiSettings.load(
        {"CAPTURE_API_TOKENS": TOKEN, "CAPTURE_API_CORS_ORIGINS": "https://app.example.com"}
    )
    app = create_app(Context(store, load_freshness({})), settings)
    client = app.test_client()
    pre = client.options(
        "/v1/captures",
        headers={"origin": "https://app.example.com", "access-control-request-method": "POST"},
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in pre.headers["access-control-allow-headers"]
    other = client.options("/v1/captures", headers={"origin": "https://evil.example"})
    assert other.status_code == 401
    assert "access-control-allow-origin" not in other.headers
    with pytest.raises(ConfigError, match="is not an origin"):
        ApiSettings.load({"CAPTURE_API_TOKENS": TOKEN, "CAPTURE_API_CORS_ORIGINS": "app.example"})


def test_event_streams_are_capped_so_the_api_keeps_answering(store, database_url, served):
    store.settings = replace(store.settings, lanes=load(served.env).lanes)
    ctx = Context(store, load_freshness({}), max_streams=1)
    server = Server(
        create_app(ctx, ApiSettings.load({"CAPTURE_API_TOKENS": TOKEN})), "127.0.0.1", 0
    )
    server.start()
    headers = {"authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            job_id = client.post("/v1/captures", json=recent()).json()["job_id"]
            with client.stream("GET", f"/v1/jobs/{job_id}/events") as first:
                assert first.status_code == 200
                second = client.get(f"/v1/jobs/{job_id}/events")
                assert second.status_code == 503
                assert second.headers["retry-after"] == "5"
                assert "event streams are open" in second.json()["error"]
                assert client.get(f"/v1/jobs/{job_id}").status_code == 200  # still answering
            store.cancel(job_id, "done with it")  # the open stream ends, its slot comes back
            wait_for(lambda: client.get(f"/v1/jobs/{job_id}/events").status_code == 200)
            frames: list[dict] = []
            with client.stream("GET", f"/v1/jobs/{job_id}/events") as again:
                assert again.status_code == 200
                read_frames(again, frames)
            assert frames[-1]["event"] == "end"
    finally:
        server.stop()
        ctx.close()


def test_a_database_gone_is_503_in_one_line_and_the_server_stays_up(api, database_url, server_url):
    assert api.post("/v1/captures", json=recent()).status_code == 201
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as conn:  # its backends terminated too
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    base = str(api.base_url).rstrip("/")
    health = httpx.get(f"{base}/healthz")
    assert (health.status_code, health.json()) == (503, {"ok": False})  # no address, no text
    for method, path, body in [
        ("POST", "/v1/captures", recent(repository="acme/other")),
        ("GET", "/v1/jobs", None),
        ("GET", "/metrics", None),
    ]:
        answer = api.request(method, path, json=body)
        assert answer.status_code == 503, (path, answer.text)
        error = answer.json()["error"]
        assert "\n" not in error
        assert "Traceback" not in error


def test_unknown_paths_and_methods_answer_json_in_one_line(api):
    missing = api.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert "\n" not in missing.json()["error"]
    wrong = api.delete("/v1/captures")
    assert wrong.status_code == 405
    assert wrong.json()["error"]


def test_the_first_request_after_connections_were_cut_is_answered(api, database_url, server_url):
    assert api.get("/v1/jobs").status_code == 200  # the server thread has its connections
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        cut = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchone()
    assert cut[0] > 0
    for _ in range(10):  # every server thread meets a cut connection once
        assert api.get("/v1/jobs").status_code == 200
    # The store's pool replaces its cut connections (psycopg_pool checks each, backing
    # off between them: a few seconds), and the request is answered, not refused.
    assert api.post("/v1/captures", json=recent(), timeout=60).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"job_type": ["pr-reviews"], "repository": "acme/widgets", "days": 1},
        {"job_type": "pr-reviews", "repository": ["acme/widgets"], "days": 1},
        {"job_type": "pr-reviews", "repository": "acme/widgets", "days": 10**30},
        {**recent(), "since": "0001-01-01T00:00:00Z", "until": "9999-12-31T23:59:59Z"},
        {
            "job_type": "pr-reviews",
            "repository": "acme/w",
            "since": "9999-12-31",
            "until": "0001-01-01",
        },
        {"job_type": "pr-reviews", "repository": "acme/w", "since": 1e308, "until": -1},
        {**recent(), "pr_numbers": [[[[[[1]]]]]]},
        {**recent(), "pr_numbers": [1e308]},
        {**recent(), "priority": {"a": 1}},
        {**recent(), "dedupe_key": ["x"]},
        {**recent(), "trigger": None, "lane": ["inngest"]},
    ],
)
def test_odd_values_are_400_in_one_line_never_500(api, database_url, body):
    before = count_events(database_url)
    answer = api.post("/v1/captures", json=body)
    assert answer.status_code == 400, answer.text
    assert "\n" not in answer.json()["error"]
    assert count_events(database_url) == before


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs?limit=²",
        "/v1/jobs?limit=1e9",
        "/v1/jobs?since=0001-01-01",
        "/v1/jobs?since=²",
        "/v1/jobs?status=nope",
        "/v1/dashboard?hours=abc",
        "/v1/dashboard?hours=²",
        "/v1/dashboard?hours=99999999999999999999",
        "/v1/dashboard?hours=0",
    ],
)
def test_odd_query_values_are_400_in_one_line_never_500(api, path):
    answer = api.get(path)
    assert answer.status_code == 400, answer.text
    assert "\n" not in answer.json()["error"]


def test_a_bad_after_is_400_and_takes_no_stream_slot(api):
    job_id = api.post("/v1/captures", json=recent()).json()["job_id"]
    for _ in range(12):  # more than the server's stream slots
        answer = api.get(f"/v1/jobs/{job_id}/events", params={"after": "²"})
        assert answer.status_code == 400
        assert "after (or Last-Event-ID) must be a whole number" in answer.json()["error"]
    with api.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        assert stream.status_code == 200  # every slot is still free


def test_the_dashboard_and_the_api_send_security_headers(api):
    page = api.get("/")
    policy = page.headers["content-security-policy"]
    nonce = policy.split("'nonce-", 1)[1].split("'", 1)[0]
    assert f'<script nonce="{nonce}">' in page.text  # its own script, by this answer's nonce
    assert "frame-ancestors 'none'" in policy
    assert "default-src 'none'" in policy
    assert api.get("/").headers["content-security-policy"] != policy  # a nonce per answer
    for answer in (
        page,
        api.get("/v1/jobs"),
        httpx.get(f"{str(api.base_url).rstrip('/')}/healthz"),
    ):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"


READER, SUBMITTER = "reader-token-0123456789", "submit-token-0123456789"


@pytest.fixture
def scoped(database_url, served):
    """The API with named, scoped tokens and a quota of 3 captures a minute."""
    settings = replace(Settings(), lanes=load(served.env).lanes, pool_wait=2.0)
    store = jobstore.open_store(settings, url=database_url)
    ctx = Context(store, load_freshness({}))
    tokens = f"dashboard:read:{READER},ci:submit:{SUBMITTER}"
    api_settings = ApiSettings.load(
        {"CAPTURE_API_TOKENS": tokens, "CAPTURE_API_SUBMIT_PER_MINUTE": "3"}
    )
    server = Server(create_app(ctx, api_settings), "127.0.0.1", 0, threads=4).start()

    made: list[httpx.Client] = []

    def client(token: str) -> httpx.Client:
        made.append(
            httpx.Client(
                base_url=server.url, headers={"authorization": f"Bearer {token}"}, timeout=10
            )
        )
        return made[-1]

    yield client
    for one in made:
        one.close()
    server.stop()
    ctx.close()
    store.close()


def test_a_read_token_reads_and_may_not_submit(scoped, database_url):
    reader = scoped(READER)
    assert reader.get("/v1/jobs").status_code == 200
    before = count_events(database_url)
    refused = reader.post("/v1/captures", json=recent())
    assert refused.status_code == 403
    assert refused.json()["error"] == "token dashboard may read, not submit"
    assert count_events(database_url) == before


def test_a_token_over_its_quota_is_429_with_retry_after(scoped, database_url):
    ci = scoped(SUBMITTER)
    for n in range(3):
        assert ci.post("/v1/captures", json=recent(repository=f"acme/r{n}")).status_code == 201
    before = count_events(database_url)
    over = ci.post("/v1/captures", json=recent(repository="acme/r9"))
    assert over.status_code == 429
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert "has asked for 3 captures in a minute" in over.json()["error"]
    assert count_events(database_url) == before
    assert ci.get("/v1/jobs").status_code == 200  # reading is not counted


def test_the_queued_event_names_the_token_that_asked(scoped, store):
    ci = scoped(SUBMITTER)
    job_id = ci.post("/v1/captures", json=recent()).json()["job_id"]
    queued = store.history(job_id)[0]
    assert queued.params == {"requested_by": "ci"}
    forged = ci.post("/v1/captures", json={**recent(), "params": {"requested_by": "admin"}})
    assert forged.status_code == 400
    assert "params.requested_by is the server's to set" in forged.json()["error"]


def test_each_request_is_logged_without_its_token_or_query(scoped, caplog):
    reader = scoped(READER)
    with caplog.at_level(logging.INFO, logger="capture.access"):
        reader.get("/v1/jobs", params={"limit": "5", "access_token": READER})
        httpx.get(str(reader.base_url).rstrip("/") + "/v1/jobs")  # no token: 401, as "-"
    lines = [r.getMessage() for r in caplog.records if r.name == "capture.access"]
    assert any(
        line.startswith("GET /v1/jobs 200 ") and line.endswith(" dashboard") for line in lines
    )
    assert any(line.startswith("GET /v1/jobs 401 ") and line.endswith(" -") for line in lines)
    assert READER not in "\n".join(lines)
    assert "limit=" not in "\n".join(lines)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ("ci:write:" + "x" * 20, "token ci's scope must be one of read, submit, admin"),
        ("CI:read:" + "x" * 20, "is not 1-40 lowercase letters"),
        ("ci:read:short", "at least 16 characters"),
        (f"ci:read:{'x' * 20},ci:submit:{'y' * 20}", "two tokens have the same name"),
    ],
)
def test_bad_token_entries_are_refused_without_showing_the_token(tokens, message):
    with pytest.raises(ConfigError) as refused:
        ApiSettings.load({"CAPTURE_API_TOKENS": tokens})
    assert message in str(refused.value)
    assert "x" * 20 not in str(refused.value)


def test_an_archived_job_reads_and_streams_its_whole_history(api, store):
    from datetime import timedelta

    from jobstore import archive, catch_up, open_views

    job_id = api.post("/v1/captures", json=recent()).json()["job_id"]
    assert store.claim(job_id, "w1").won
    store.complete(job_id, 10, api_points=3)
    before = api.get(f"/v1/jobs/{job_id}").json()
    views = open_views(store)
    catch_up(store, views)
    views.close()
    later = datetime.now(UTC) + timedelta(days=31)
    assert archive.archive(store.database("t"), timedelta(days=30), later).jobs == 1
    assert api.get(f"/v1/jobs/{job_id}").json() == before
    frames: list[dict] = []
    with api.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        read_frames(response, frames)
    names = [f["event"] for f in frames]
    assert names == ["Queued", "Routed", "Dispatched", "Started", "Completed", "end"]
    again: list[dict] = []
    with api.stream("GET", f"/v1/jobs/{job_id}/events", headers={"last-event-id": "3"}) as r:
        read_frames(r, again)
    assert [f["event"] for f in again] == ["Started", "Completed", "end"]
