"""`GitHub`: the clients a job uses, sharing one session (one budget, one meter)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from capture.github.graphql import Counting, GraphQLClient
from capture.github.rest import EtagCache, RestClient
from capture.github.session import Meter, Session
from capture.settings import CaptureSettings
from jobstore.errors import ConfigError

USER_AGENT = "prcapture/0.1 (+https://github.com/)"


def connect(
    settings: CaptureSettings, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An httpx client with GitHub's headers; raises ConfigError without a token."""
    token = settings.require_token()
    return httpx.Client(
        headers={
            "authorization": f"Bearer {token}",
            "user-agent": USER_AGENT,
            "x-github-api-version": "2022-11-28",
        },
        timeout=httpx.Timeout(30.0, connect=10.0),
        transport=transport,
    )


class GitHub:
    def __init__(
        self,
        client: httpx.Client,
        settings: CaptureSettings,
        *,
        realtime: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        etags: EtagCache | None = None,
    ) -> None:
        self.settings = settings
        self.session = Session(
            client,
            reserve=settings.reserve,
            realtime=realtime,
            concurrency=settings.concurrency,
            sleep=sleep,
            now=now,
        )
        counting = settings.node_counting
        self.graphql = GraphQLClient(
            self.session,
            settings.graphql_url,
            Counting("strict", False) if counting == "auto" else Counting(counting, fixed=True),
        )
        self.rest = RestClient(self.session, settings.api_url, etags)

    @property
    def meter(self) -> Meter:
        return self.session.meter

    def close(self) -> None:
        self.session.client.close()


def credential_problem(
    settings: CaptureSettings, transport: httpx.BaseTransport | None = None
) -> str | None:
    """Why every job would fail on GitHub's side now (no token, or GitHub refusing it),
    or None. Asks GET /rate_limit, which costs no points. Never names the token."""
    try:
        client = connect(settings, transport)
    except ConfigError as exc:
        return str(exc)
    try:
        with client:
            status = client.get(f"{settings.api_url}/rate_limit").status_code
    except httpx.HTTPError as exc:
        return f"GitHub unreachable at {settings.api_url} ({type(exc).__name__})"
    if status == 401:
        return f"GitHub refused the token (HTTP 401 from {settings.api_url}/rate_limit)"
    return None


class CredentialCheck:
    """`credential_problem`, asked at most every `every` seconds while all is well and
    before each claim while it is not; `forget()` after a job met a 401."""

    def __init__(self, settings: CaptureSettings, every: float = 60.0) -> None:
        self.settings = settings
        self.every = every
        self.checked_at: float | None = None

    def __call__(self) -> str | None:
        fresh = self.checked_at is not None and time.monotonic() - self.checked_at < self.every
        if fresh:
            return None
        problem = credential_problem(self.settings)
        self.checked_at = None if problem else time.monotonic()
        return problem

    def forget(self) -> None:
        self.checked_at = None
