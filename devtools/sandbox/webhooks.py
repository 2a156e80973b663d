"""The App's webhooks as the sandbox plays them: every change the world makes in a
repository an installation covers becomes a signed delivery (GitHub's headers, payload
shapes), sent when the caller pumps the simulated clock, with faults: dropped,
duplicated, delayed, reordered, or a receiver that was down. Like GitHub, it keeps a log
of every attempt (`GET /app/hook/deliveries`) and sends one again on request
(`POST /app/hook/deliveries/{id}/attempts`); it never does so by itself."""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from devtools.sandbox import data
from devtools.sandbox.apps import Apps
from devtools.sandbox.rest_shapes import Shapes, iso

# (url, headers, body) -> the receiver's HTTP status, or None if it could not be reached
Send = Callable[[str, dict[str, str], bytes], int | None]
KEEP = timedelta(days=3)  # GitHub lists a hook's deliveries of the last 3 days


@dataclass
class Faults:
    """Shares of deliveries dropped (attempted, failed), duplicated (sent twice), delayed
    (by up to `max_delay`) and reordered (sent after the next one), and stretches of
    simulated time when the receiver is down (attempts fail to connect)."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    reorder: float = 0.0
    max_delay: timedelta = timedelta(seconds=30)
    down: list[tuple[datetime, datetime]] = field(default_factory=list)

    def is_down(self, at: datetime) -> bool:
        return any(start <= at < end for start, end in self.down)


@dataclass
class Attempt:
    """One entry of the hook's delivery log (GitHub's `hook-delivery-item`)."""

    id: int
    guid: str
    delivered_at: datetime
    redelivery: bool
    duration: float
    status: str
    status_code: int
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None

    def item(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "guid": self.guid,
            "delivered_at": iso(self.delivered_at),
            "redelivery": self.redelivery,
            "duration": self.duration,
            "status": self.status,
            "status_code": self.status_code,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
            "throttled_at": None,
        }


@dataclass(order=True)
class Queued:
    send_at: datetime
    seq: int
    guid: str = field(compare=False)
    event: str = field(compare=False)
    action: str | None = field(compare=False)
    body: bytes = field(compare=False)
    installation_id: int | None = field(compare=False)
    repository_id: int | None = field(compare=False)
    redelivery: bool = field(compare=False, default=False)
    fail: bool = field(compare=False, default=False)  # a dropped delivery: the attempt fails


class Hooks:
    """The App's webhook: where it posts, its secret, its faults and its delivery log."""

    def __init__(
        self,
        world: data.World,
        apps: Apps,
        clock: Callable[[], datetime],
        base_url: str,
        secret: str,
        url: str = "",
        send: Send | None = None,
        faults: Faults | None = None,
        seed: int = 1,
        latency: timedelta = timedelta(seconds=1),
    ) -> None:
        self.world, self.apps, self.clock = world, apps, clock
        self.shapes = Shapes(base_url)
        self.secret, self.url, self.send = secret, url, send
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self.latency = latency
        self.queue: list[Queued] = []
        self.log: list[Attempt] = []
        self.bodies: dict[str, Queued] = {}  # guid -> what was sent (for a redelivery)
        self.sent: dict[str, int] = {}  # guid -> attempts made
        self._seq = 0
        self._ids = 90_000_000
        self._lock = threading.RLock()
        self.log_payloads = True  # GET /app/hook/deliveries/{id} gives the payload
        world.on_change = self.changed

    # What happens on GitHub.

    def installation_of(self, owner: str) -> int | None:
        for installation in self.apps.installations.values():
            if installation.account.lower() == owner.lower():
                return installation.id
        return None

    def changed(
        self,
        event: str,
        action: str,
        repo: data.Repository,
        pr: Any,
        obj: Any,
        at: datetime,
        changes: dict | None = None,
    ) -> None:
        """A change in the world, told as GitHub tells it (if an installation covers it)."""
        installation = self.installation_of(repo.owner)
        if installation is None:
            return
        payload: dict[str, Any] = {"action": action}
        if changes is not None:
            payload["changes"] = changes
        if event == "pull_request":
            payload |= {"number": pr.number, "pull_request": self.shapes.pull(repo, pr, True)}
        elif event == "pull_request_review":
            payload |= {
                "review": self._review(repo, pr, obj),
                "pull_request": self.shapes.pull(repo, pr),
            }
        elif event == "pull_request_review_comment":
            payload |= {
                "comment": self._review_comment(repo, pr, obj),
                "pull_request": self.shapes.pull(repo, pr),
            }
        elif event == "issue_comment":
            payload |= {"issue": self._issue(repo, pr), "comment": self._comment(repo, pr, obj)}
        elif event == "repository":
            payload |= self._moved(repo, action, obj)
        payload |= {
            "repository": self.shapes.repository(repo),
            "sender": self.shapes.user(self.world.users[0]),
            "installation": {"id": installation, "node_id": f"MDIz_{installation}"},
        }
        self.emit(event, action, payload, at, installation, repo.database_id)

    def installation_event(
        self, event: str, action: str, installation: int, repos: list[data.Repository]
    ) -> None:
        """installation (created, deleted, suspend, unsuspend) or installation_repositories
        (added, removed) for `repos`."""
        account = self.apps.installations[installation].account
        listed = [
            {
                "id": r.database_id,
                "node_id": r.node_id,
                "name": r.name,
                "full_name": r.full_name,
                "private": False,
            }
            for r in repos
        ]
        payload: dict[str, Any] = {
            "action": action,
            "installation": self._installation(installation, account),
            "sender": self.shapes.user(self.world.users[0]),
        }
        if event == "installation":
            payload["repositories"] = listed
        else:
            key = "repositories_added" if action == "added" else "repositories_removed"
            other = "repositories_removed" if action == "added" else "repositories_added"
            payload |= {
                key: listed,
                other: [],
                "repository_selection": "selected",
                "requester": None,
            }
        self.emit(event, action, payload, self.clock(), installation, None)

    def emit(
        self,
        event: str,
        action: str | None,
        payload: dict,
        at: datetime,
        installation: int | None,
        repository_id: int | None,
    ) -> None:
        """Queues one delivery, its faults decided now."""
        body = json.dumps(payload).encode()
        guid = str(uuid.uuid4())
        send_at = at + self.latency
        faults, rng = self.faults, self.rng
        if rng.random() < faults.delay:
            send_at += timedelta(seconds=rng.uniform(1, faults.max_delay.total_seconds()))
        if rng.random() < faults.reorder:  # after whatever comes in the next few seconds
            send_at += timedelta(seconds=rng.uniform(2, 10))
        item = Queued(
            send_at, self._next_seq(), guid, event, action, body, installation, repository_id
        )
        item.fail = rng.random() < faults.drop
        with self._lock:
            self.bodies[guid] = item
            heapq.heappush(self.queue, item)
            if rng.random() < faults.duplicate:
                again = Queued(
                    send_at + timedelta(seconds=rng.uniform(0, 5)),
                    self._next_seq(),
                    guid,
                    event,
                    action,
                    body,
                    installation,
                    repository_id,
                )
                heapq.heappush(self.queue, again)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # Sending.

    def pump(self, until: datetime) -> int:
        """Sends every delivery due by `until`, in order; returns how many were attempted."""
        done = 0
        while True:
            with self._lock:
                if not self.queue or self.queue[0].send_at > until:
                    return done
                item = heapq.heappop(self.queue)
            self._attempt(item)
            done += 1

    def _attempt(self, item: Queued) -> None:
        headers = {
            "content-type": "application/json",
            "user-agent": "GitHub-Hookshot/sandbox",
            "x-github-delivery": item.guid,
            "x-github-event": item.event,
            "x-github-hook-id": "4242",
            "x-github-hook-installation-target-type": "integration",
            "x-hub-signature-256": sign(self.secret, item.body),
        }
        if item.installation_id is not None:
            headers["x-github-hook-installation-target-id"] = str(item.installation_id)
        if item.fail or self.faults.is_down(item.send_at) or self.send is None:
            code = None
        else:
            code = self.send(self.url, headers, item.body)
        if code is None:
            status, code = "failed to connect to host", 0
        else:
            status = "OK" if 200 <= code < 300 else f"Invalid HTTP Response: {code}"
        with self._lock:
            self._ids += 1
            self.log.append(
                Attempt(
                    self._ids,
                    item.guid,
                    item.send_at,
                    item.redelivery,
                    0.05,
                    status,
                    code,
                    item.event,
                    item.action,
                    item.installation_id,
                    item.repository_id,
                )
            )
            self.sent[item.guid] = self.sent.get(item.guid, 0) + 1

    # GitHub's endpoints.

    def listing(self, per_page: int, cursor: str | None) -> tuple[list[dict], str | None]:
        """A page of the log, newest first; the cursor of the next page (or None)."""
        with self._lock:
            now = self.clock()
            items = [a for a in reversed(self.log) if now - a.delivered_at <= KEEP]
        start = 0
        if cursor:
            start = next((i for i, a in enumerate(items) if str(a.id) == cursor), len(items))
        page = items[start : start + per_page]
        after = items[start + per_page] if start + per_page < len(items) else None
        return [a.item() for a in page], (str(after.id) if after else None)

    def attempt(self, hook_id: int) -> Attempt | None:
        with self._lock:
            return next((a for a in self.log if a.id == hook_id), None)

    def detail(self, hook_id: int) -> dict[str, Any] | None:
        """GitHub's `hook-delivery`: the log entry with the request as sent (headers and
        the parsed payload; no payload when `log_payloads` is off, as for a delivery
        GitHub no longer holds whole) and the answer it met."""
        found = self.attempt(hook_id)
        if found is None:
            return None
        sent = self.bodies.get(found.guid)
        payload = json.loads(sent.body) if sent is not None and self.log_payloads else None
        headers = {"X-GitHub-Event": found.event, "X-GitHub-Delivery": found.guid}
        return found.item() | {
            "url": self.url,
            "request": {"headers": headers, "payload": payload},
            "response": {"headers": {}, "payload": None},
        }

    def redeliver(self, hook_id: int) -> bool:
        """Queues the delivery of attempt `hook_id` again (same guid, `redelivery`)."""
        found = self.attempt(hook_id)
        if found is None:
            return False
        original = self.bodies[found.guid]
        item = Queued(
            self.clock(),
            self._next_seq(),
            original.guid,
            original.event,
            original.action,
            original.body,
            original.installation_id,
            original.repository_id,
            redelivery=True,
        )
        with self._lock:
            heapq.heappush(self.queue, item)
        return True

    # Payload parts.

    def _review(self, repo: data.Repository, pr: Any, review: data.Review) -> dict:
        body = self.shapes.review(repo, pr, review)
        body["state"] = review.state.lower()
        body.setdefault("submitted_at", iso(review.submitted_at))
        return body

    def _installation(self, installation: int, account: str) -> dict:
        base, now = self.shapes.base, iso(self.clock())
        owner = self.shapes.user(None, owner=account)
        return {
            "id": installation,
            "account": owner,
            "repository_selection": "selected",
            "access_tokens_url": f"{base}/app/installations/{installation}/access_tokens",
            "repositories_url": f"{base}/installation/repositories",
            "html_url": f"{base}/organizations/{account}/settings/installations/{installation}",
            "app_id": self.apps.installations[installation].app_id,
            "app_slug": "prcapture",
            "target_id": owner["id"],
            "target_type": "Organization",
            "permissions": {"contents": "read", "metadata": "read", "pull_requests": "read"},
            "events": [
                "pull_request",
                "pull_request_review",
                "pull_request_review_comment",
                "pull_request_review_thread",
                "issue_comment",
                "repository",
            ],
            "created_at": now,
            "updated_at": now,
            "single_file_name": None,
            "suspended_by": None,
            "suspended_at": None,
        }

    def _review_comment(self, repo: data.Repository, pr: Any, c: data.Comment) -> dict:
        body = self.shapes.review_comment(repo, pr, c)
        return body | {
            "start_line": None,
            "original_start_line": None,
            "start_side": None,
            "reactions": _reactions(body["url"] + "/reactions"),
        }

    def _issue(self, repo: data.Repository, pr: Any) -> dict:
        api = f"{self.shapes.base}/repos/{repo.full_name}"
        pull = self.shapes.pull(repo, pr)
        return {
            "url": f"{api}/issues/{pr.number}",
            "repository_url": api,
            "labels_url": f"{api}/issues/{pr.number}/labels{{/name}}",
            "comments_url": f"{api}/issues/{pr.number}/comments",
            "events_url": f"{api}/issues/{pr.number}/events",
            "html_url": pull["html_url"],
            "id": pr.database_id + 10**9,  # an issue's id is not its pull request's
            "node_id": f"I_{pr.database_id}",
            "number": pr.number,
            "title": pr.title,
            "user": pull["user"],
            "labels": pull["labels"],
            "state": pull["state"],
            "locked": False,
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "comments": len(pr.comments),
            "created_at": pull["created_at"],
            "updated_at": pull["updated_at"],
            "closed_at": pull["closed_at"],
            "author_association": pull["author_association"],
            "active_lock_reason": None,
            "body": pull["body"],
            "reactions": _reactions(f"{api}/issues/{pr.number}/reactions"),
            "timeline_url": f"{api}/issues/{pr.number}/timeline",
            "performed_via_github_app": None,
            "state_reason": None,
            "pull_request": {
                "url": pull["url"],
                "html_url": pull["html_url"],
                "diff_url": pull["diff_url"],
                "patch_url": pull["patch_url"],
                "merged_at": pull["merged_at"],
            },
        }

    def _comment(self, repo: data.Repository, pr: Any, c: data.Comment) -> dict:
        body = self.shapes.issue_comment(repo, pr, c)
        body |= {
            "reactions": _reactions(body["url"] + "/reactions"),
            "performed_via_github_app": None,
        }
        return body

    def _moved(self, repo: data.Repository, action: str, old: str) -> dict:
        owner, name = old.split("/")
        if action == "renamed":
            return {"changes": {"repository": {"name": {"from": name}}}}
        if action == "transferred":
            return {"changes": {"owner": {"from": {"user": self.shapes.user(None, owner=owner)}}}}
        return {}


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _reactions(url: str) -> dict:
    kinds = ("+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes")
    return {"url": url, "total_count": 0, **dict.fromkeys(kinds, 0)}
