"""GitHub's webhook deliveries on bin/serve's server: the signature is checked before the
body is parsed, a delivery is stored once per X-GitHub-Delivery, and nothing unsigned,
malformed or too large is written."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import uuid

import httpx
import psycopg
import pytest

from capture.api.app import ApiSettings, Context, create_app
from capture.freshness.settings import load_freshness
from capture.serving import LIMITS, Server
from capture.webhooks import WebhookSettings
from capture.webhooks.receiver import MAX_BODY
from jobstore import ConfigError

SECRET = "it-is-a-webhook-secret"
OLD = "the-secret-before-rotation"
TOKEN = "api-token-for-webhook-tests"


def signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(body: bytes, event: str = "pull_request", delivery: str | None = None, **extra):
    return {
        "x-github-event": event,
        "x-github-delivery": delivery or str(uuid.uuid4()),
        "x-hub-signature-256": signed(body),
        "content-type": "application/json",
        **extra,
    }


PAYLOAD = json.dumps(
    {
        "action": "opened",
        "number": 7,
        "pull_request": {"number": 7, "updated_at": "2026-12-01T10:00:00Z"},
        "repository": {"id": 42, "full_name": "acme/widgets"},
        "installation": {"id": 9},
    }
).encode()


@pytest.fixture
def hooks(store, database_url):
    webhooks = WebhookSettings.load({"GITHUB_WEBHOOK_SECRET": f"{SECRET},{OLD}"})
    ctx = Context(store, load_freshness({}))
    app = create_app(ctx, ApiSettings.load({"CAPTURE_API_TOKENS": TOKEN}), webhooks)
    limits = {**LIMITS, webhooks.path: MAX_BODY}
    server = Server(app, "127.0.0.1", 0, threads=4, limits=limits).start()
    client = httpx.Client(base_url=server.url, timeout=30)
    yield client
    client.close()
    server.stop()
    ctx.close()


def stored(url: str) -> list[dict]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute("SELECT * FROM github_deliveries ORDER BY received_at").fetchall()


def test_a_signed_delivery_is_stored_once_and_answered(hooks, database_url):
    delivery = str(uuid.uuid4())
    first = hooks.post(
        "/v1/github/webhooks", content=PAYLOAD, headers=headers(PAYLOAD, delivery=delivery)
    )
    assert first.status_code == 202, first.text
    again = hooks.post(
        "/v1/github/webhooks", content=PAYLOAD, headers=headers(PAYLOAD, delivery=delivery)
    )
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    (row,) = stored(database_url)
    assert (row["delivery_id"], row["event"], row["action"]) == (delivery, "pull_request", "opened")
    assert (row["installation_id"], row["repository_id"], row["repository"]) == (
        9,
        42,
        "acme/widgets",
    )
    assert row["payload"]["number"] == 7
    assert row["duplicates"] == 1


def test_the_old_secret_works_during_a_rotation(hooks, database_url):
    answer = hooks.post(
        "/v1/github/webhooks",
        content=PAYLOAD,
        headers=headers(PAYLOAD, **{"x-hub-signature-256": signed(PAYLOAD, OLD)}),
    )
    assert answer.status_code == 202
    assert len(stored(database_url)) == 1


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha1=abc",
        signed(PAYLOAD, "an-attackers-own-secret"),
        signed(b"{}"),
        "sha256=" + "0" * 64,
    ],
)
def test_a_bad_or_missing_signature_is_401_and_writes_nothing(hooks, database_url, signature):
    sent = headers(PAYLOAD)
    if signature is None:
        del sent["x-hub-signature-256"]
    else:
        sent["x-hub-signature-256"] = signature
    answer = hooks.post("/v1/github/webhooks", content=PAYLOAD, headers=sent)
    assert answer.status_code == 401
    assert "signature" in answer.json()["error"]
    assert stored(database_url) == []


def test_the_signature_is_checked_before_the_body_is_parsed(hooks, database_url):
    junk = b"{" * 100_000  # deep enough to hurt a parser
    unsigned = hooks.post("/v1/github/webhooks", content=junk, headers={**headers(b"x")})
    assert unsigned.status_code == 401
    signed_junk = hooks.post("/v1/github/webhooks", content=junk, headers=headers(junk))
    assert signed_junk.status_code == 400
    assert signed_junk.json()["error"] == "the body is not JSON"
    assert stored(database_url) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x-github-delivery": ""}, "X-GitHub-Delivery"),
        ({"x-github-delivery": "a b"}, "X-GitHub-Delivery"),
        ({"x-github-event": "Pull Request"}, "X-GitHub-Event"),
    ],
)
def test_headers_github_would_not_send_are_400(hooks, database_url, change, message):
    answer = hooks.post(
        "/v1/github/webhooks", content=PAYLOAD, headers={**headers(PAYLOAD), **change}
    )
    assert answer.status_code == 400
    assert message in answer.json()["error"]
    assert stored(database_url) == []


def test_ping_is_answered(hooks, database_url):
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    answer = hooks.post("/v1/github/webhooks", content=body, headers=headers(body, event="ping"))
    assert answer.status_code == 200
    assert answer.json()["pong"] is True
    assert [r["status"] for r in stored(database_url)] == ["ignored"]


def test_a_body_over_githubs_cap_is_413_unread_and_a_big_one_under_it_is_taken(hooks, database_url):
    host, port = str(hooks.base_url).removeprefix("http://").rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            f"POST /v1/github/webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY + 1}"
            "\r\n\r\n{".encode()
        )
        status = conn.recv(4096).decode(errors="replace").split("\r\n", 1)[0]
    assert status.startswith("HTTP/1.1 413"), status
    assert stored(database_url) == []
    big = json.dumps({**json.loads(PAYLOAD), "padding": "x" * 3_000_000}).encode()
    answer = hooks.post("/v1/github/webhooks", content=big, headers=headers(big))
    assert answer.status_code == 202  # over the API's 1 MB, within GitHub's 25 MB
    assert len(stored(database_url)) == 1


def test_other_paths_still_want_a_token_and_webhooks_no_get(hooks):
    assert hooks.get("/v1/jobs").status_code == 401
    assert hooks.get("/v1/github/webhooks").status_code == 405


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="at least 16"):
        WebhookSettings.load({"GITHUB_WEBHOOK_SECRET": "short"})
    with pytest.raises(ConfigError, match="CAPTURE_WEBHOOK_PATH"):
        WebhookSettings.load({"GITHUB_WEBHOOK_SECRET": SECRET, "CAPTURE_WEBHOOK_PATH": "hooks"})
    assert not WebhookSettings.load({}).enabled
