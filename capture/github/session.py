"""The one place that knows GitHub's rate limits: every request goes through a Session.

Primary exhaustion raises RateLimited(reset_at) at once (the job is rescheduled, never
slept); secondary limits honour `retry-after`, else back off from 60 s exponentially, a
bounded number of times; 5xx and network errors are retried a bounded number of times.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from capture.errors import (
    AccessDenied,
    CredentialsRejected,
    NetworkError,
    NotFound,
    RateLimited,
    RequestRefused,
    ServerError,
)
from capture.github.credentials import Draw, Pool, single

log = logging.getLogger(__name__)
SECONDARY_BASE = 60.0
HEARTBEAT = 60.0  # seconds between heartbeats while waiting (well under every lease)
SECONDARY_TRIES = 3
SERVER_TRIES = 3


@dataclass
class Meter:
    """What a job spent: calls, points (the charged `rateLimit.cost` of every query, per
    operation) and fallbacks. They go into Progressed and Completed events."""

    graphql_calls: int = 0
    graphql_points: int = 0
    rest_calls: int = 0
    rest_points: int = 0
    fallbacks: list[str] = field(default_factory=list)
    queries: dict[str, list[int]] = field(default_factory=dict)  # operation -> [calls, points]
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def points(self) -> int:
        return self.graphql_points + self.rest_points

    def query(self, operation: str, charged: int) -> None:
        with self._lock:  # a planner sends several probe queries at once
            self.graphql_calls += 1
            self.graphql_points += charged
            tally = self.queries.setdefault(operation, [0, 0])
            tally[0] += 1
            tally[1] += charged

    def by_operation(self) -> dict[str, dict[str, int]]:
        return {op: {"calls": c, "points": p} for op, (c, p) in sorted(self.queries.items())}


@dataclass
class Budget:
    """The last rate-limit state GitHub reported, per resource."""

    remaining: dict[str, int] = field(default_factory=dict)
    reset_at: dict[str, datetime] = field(default_factory=dict)

    def observe(self, resource: str, headers: httpx.Headers) -> None:
        if "x-ratelimit-remaining" in headers:
            self.remaining[resource] = int(headers["x-ratelimit-remaining"])
        if "x-ratelimit-reset" in headers:
            self.reset_at[resource] = datetime.fromtimestamp(int(headers["x-ratelimit-reset"]), UTC)


class Session:
    """Sends requests, each with a credential drawn from the pool for its planned cost
    (`realtime` jobs may use each credential's reserve, others may not)."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        pool: Pool | None = None,
        realtime: bool = False,
        concurrency: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        repository: str | None = None,
    ) -> None:
        self.client = client
        self.pool = pool or single(client)
        self.realtime = realtime
        self.repository = repository
        self.sleep = sleep
        self.now = now
        self.budget = Budget()
        self.meter = Meter()
        # Told (seconds left, why) before each slice of a long wait, so the job can write a
        # heartbeat: a live worker waiting out a limit is never swept as stale.
        self.on_wait: Callable[[float, str], None] | None = None
        self._slots = threading.BoundedSemaphore(concurrency)

    def draw(self, resource: str, cost: int) -> Draw:
        """A credential for the next request: waits out the per-minute pace (writing
        heartbeats), raises RateLimited when every credential's hour is spent."""
        while True:
            drawn = self.pool.draw(
                resource, cost, self.now(), realtime=self.realtime, repository=self.repository
            )
            if isinstance(drawn, Draw):
                return drawn
            self.wait(max(1.0, (drawn - self.now()).total_seconds()), f"{resource} pace")

    def request(
        self, method: str, url: str, resource: str, *, cost: int = 1, **kwargs: Any
    ) -> httpx.Response:
        """One API call with GitHub's limits applied, `cost` points reserved on the
        credential drawn for it; raises the capture error a refusal maps to."""
        headers = dict(kwargs.pop("headers", None) or {})
        secondary = server = renewed = 0
        while True:
            drawn = self.draw(resource, cost)
            try:
                with self._slots:
                    # GitHub answers a renamed or transferred repository's old name with
                    # 301 to its new place: followed for reads, never for writes.
                    response = self.client.request(
                        method,
                        url,
                        headers={**headers, "authorization": drawn.credential.authorization()},
                        follow_redirects=method == "GET",
                        **kwargs,
                    )
            except httpx.TooManyRedirects:
                self.pool.observe(drawn, httpx.Headers(), self.now())
                raise RequestRefused(
                    f"GitHub redirected {method} {httpx.URL(url).path} too many times"
                ) from None
            except httpx.TransportError as exc:
                self.pool.observe(drawn, httpx.Headers(), self.now())  # the points come back
                server += 1
                if server >= SERVER_TRIES:
                    if isinstance(exc, httpx.TimeoutException):
                        raise ServerError(504, "GitHub timed out") from None
                    raise NetworkError(f"GitHub unreachable: {type(exc).__name__}") from None
                self.sleep(2**server)
                continue
            self.pool.observe(drawn, response.headers, self.now())
            expired = response.status_code == 401 and drawn.credential.kind == "installation"
            if expired and not renewed:  # revoked or expired early: a fresh token, once
                renewed = 1
                self.pool.renew(drawn.credential)
                continue
            outcome = self._outcome(method, url, resource, response, secondary, server)
            if isinstance(outcome, httpx.Response):
                return outcome
            secondary, server = outcome

    def _outcome(
        self,
        method: str,
        url: str,
        resource: str,
        response: httpx.Response,
        secondary: int,
        server: int,
    ) -> httpx.Response | tuple[int, int]:
        """The response if it is an answer; else (secondary, server) tries after waiting
        as GitHub asks; raises the capture error a refusal maps to."""
        self.budget.observe(resource, response.headers)
        status = response.status_code
        if status in (403, 429) and self._is_rate_limit(response):
            wait = self._secondary_wait(response, secondary)
            if wait is None:  # primary: the hour's budget is spent
                raise RateLimited(self._reset(resource, response), "primary rate limit")
            secondary += 1
            if secondary > SECONDARY_TRIES:
                raise RateLimited(self.now() + timedelta(seconds=wait), "secondary rate limit")
            log.warning("secondary rate limit on %s; waiting %.0fs", resource, wait)
            self.wait(wait, f"secondary rate limit on {resource}")
            return secondary, server
        path = httpx.URL(url).path
        if status == 401:
            raise CredentialsRejected(f"GitHub refused the token (HTTP 401) for {path}")
        if status == 403:
            raise AccessDenied(f"GitHub refused access to {path} (HTTP 403)")
        if status in (404, 410, 451):
            raise NotFound(f"GitHub answered HTTP {status} for {path}")
        if 400 <= status < 500:  # never parse an error body as data
            raise RequestRefused(
                f"GitHub refused {method} {path}: HTTP {status} ({error_message(response)})"
            )
        if 300 <= status < 400 and status != 304:  # a write redirected: never data
            raise RequestRefused(f"GitHub redirected {method} {path}: HTTP {status}")
        if status >= 500:
            if resource == "graphql" and status in (502, 504):
                raise ServerError(status)  # the GraphQL client shrinks the page instead
            server += 1
            if server >= SERVER_TRIES:
                raise ServerError(status)
            self.sleep(2**server)
            return secondary, server
        return response

    def wait(self, seconds: float, why: str) -> None:
        """Sleeps `seconds` in slices of at most HEARTBEAT seconds, telling `on_wait`."""
        left = seconds
        while left > 0:
            if self.on_wait is not None:
                self.on_wait(left, why)
            step = min(left, HEARTBEAT)
            self.sleep(step)
            left -= step

    def _is_rate_limit(self, response: httpx.Response) -> bool:
        if response.status_code == 429:  # too many requests, with or without its headers
            return True
        if (
            "retry-after" in response.headers
            or response.headers.get("x-ratelimit-remaining") == "0"
        ):
            return True
        return "rate limit" in response.text.lower()

    def _secondary_wait(self, response: httpx.Response, tries: int) -> float | None:
        if "retry-after" in response.headers:
            return max(float(response.headers["retry-after"]), 1.0)
        if response.headers.get("x-ratelimit-remaining") == "0":
            return None
        return SECONDARY_BASE * 2**tries

    def _reset(self, resource: str, response: httpx.Response) -> datetime:
        reset = self.budget.reset_at.get(resource)
        return reset or self.now() + timedelta(seconds=SECONDARY_BASE)


def error_message(response: httpx.Response) -> str:
    """GitHub's `message` from an error body (or the start of a non-JSON one), one line."""
    try:
        body = response.json()
        text = str(body.get("message", "")) if isinstance(body, dict) else ""
    except ValueError:
        text = response.text
    return " ".join(text.split())[:200] or "no message"
