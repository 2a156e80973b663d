"""The receiving side of GitHub's webhooks: a delivery's signature (HMAC-SHA256 of the raw
body, `X-Hub-Signature-256`) is checked against the configured secrets before a byte of
it is parsed; a delivery that checks out is stored once per `X-GitHub-Delivery` and
answered (GitHub waits at most 10 s); acting on it is for the job store's workers."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from capture.settings import WebhookSettings
from capture.webhooks.payloads import PLANNER_EVENTS, PULL_EVENTS
from jobstore import Database, Secret

MAX_BODY = 25 * 1024 * 1024  # GitHub caps a payload at 25 MB
DELIVERY_ID = re.compile(r"[0-9A-Za-z-]{1,100}")
EVENT = re.compile(r"[a-z_]{1,64}")
SIGNATURE = re.compile(r"sha256=([0-9a-f]{64})")
STORE = """
INSERT INTO github_deliveries (delivery_id, event, action, installation_id, repository_id,
                               repository, received_at, payload, status, pulled)
VALUES (%(id)s, %(event)s, %(action)s, %(installation)s, %(repository_id)s, %(repository)s,
        %(at)s, %(payload)s, %(status)s, %(pulled)s)
ON CONFLICT (delivery_id) DO UPDATE SET duplicates = github_deliveries.duplicates + 1
RETURNING duplicates
"""
COUNT = """
INSERT INTO webhook_counts (name, event, n) VALUES (%s, %s, 1)
ON CONFLICT (name, event) DO UPDATE SET n = webhook_counts.n + 1
"""


class Rejections:
    """Deliveries refused, by reason, in this process (nothing of them is written: the
    server's /metrics shows these counts)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, reason: str) -> None:
        with self._lock:
            self.counts[reason] = self.counts.get(reason, 0) + 1


REJECTED = Rejections()


def verify(secrets: tuple[Secret, ...], body: bytes, header: str | None) -> bool:
    """Whether `header` is the HMAC-SHA256 of `body` under one of `secrets` (each compared
    in constant time)."""
    found = SIGNATURE.fullmatch((header or "").strip())
    if found is None:
        return False
    given = found.group(1)
    ok = False
    for secret in secrets:
        digest = hmac.new(secret.reveal().encode(), body, hashlib.sha256).hexdigest()
        ok |= hmac.compare_digest(digest, given)
    return ok


@dataclass(frozen=True)
class Delivery:
    """What the receiver answers: the HTTP status and a small JSON document."""

    status: int
    doc: dict[str, Any]
    # stored now, for a repository's apply job: (repository id, owner/name)
    apply: tuple[int, str] | None = None


def status_of(event: str, repository_id: object) -> str:
    """What a new delivery waits for: a repository's apply job, the planner, or nothing."""
    if event in PULL_EVENTS and isinstance(repository_id, int):
        return "received"
    return "planner" if event in PLANNER_EVENTS else "ignored"


def _field(payload: dict[str, Any], *path: str) -> Any:
    value: Any = payload
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def receive(
    db: Database,
    settings: WebhookSettings,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> Delivery:
    """One delivery: 401 unless signed by a configured secret (nothing parsed, nothing
    written), 400 for headers or a body GitHub would not send, else stored (once per
    delivery id) and 202 (200 for a delivery seen before, or a ping)."""
    if not verify(settings.secrets, body, headers.get("x-hub-signature-256")):
        REJECTED.add("signature")
        return Delivery(401, {"error": "the X-Hub-Signature-256 signature does not match"})
    delivery_id = headers.get("x-github-delivery") or ""
    event = headers.get("x-github-event") or ""
    if not DELIVERY_ID.fullmatch(delivery_id) or not EVENT.fullmatch(event):
        REJECTED.add("headers")
    if not DELIVERY_ID.fullmatch(delivery_id):
        return Delivery(400, {"error": "X-GitHub-Delivery is missing or not a delivery id"})
    if not EVENT.fullmatch(event):
        return Delivery(400, {"error": "X-GitHub-Event is missing or not an event name"})
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        REJECTED.add("body")
        return Delivery(400, {"error": "the body is not JSON"})
    if not isinstance(payload, dict):
        REJECTED.add("body")
        return Delivery(400, {"error": "the body is not a JSON object"})
    return record(db, delivery_id, event, payload, now)


def record(
    db: Database,
    delivery_id: str,
    event: str,
    payload: dict[str, Any],
    now: datetime,
    counted: str = "received",
) -> Delivery:
    """A delivery known to be GitHub's (signed, or read from GitHub's own log as the app)
    stored once per delivery id, counted as `counted` (a repeat: as a duplicate)."""
    action = _field(payload, "action")
    installation = _field(payload, "installation", "id")
    repository_id = _field(payload, "repository", "id")
    repository = _field(payload, "repository", "full_name")
    status = status_of(event, repository_id)
    fields = {
        "id": delivery_id,
        "event": event,
        "action": action if isinstance(action, str) else None,
        "installation": installation if isinstance(installation, int) else None,
        "repository_id": repository_id if isinstance(repository_id, int) else None,
        "repository": repository if isinstance(repository, str) else None,
        "at": now,
        "payload": Jsonb(payload),
        "status": status,
        "pulled": counted == "pulled",
    }

    def store(conn: Any) -> bool:
        row = conn.execute(STORE, fields).fetchone()
        duplicate = bool(row and row["duplicates"])
        conn.execute(COUNT, ("duplicate" if duplicate else counted, event))
        return duplicate

    duplicate = db.run(store)
    doc = {"delivery": delivery_id, "event": event, "duplicate": duplicate}
    if event == "ping":
        return Delivery(200, doc | {"pong": True})
    if duplicate:
        return Delivery(200, doc)
    apply = (repository_id, repository) if status == "received" else None
    return Delivery(202, doc, apply if isinstance(repository, str) else None)
