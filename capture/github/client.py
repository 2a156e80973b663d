"""`GitHub`: the clients a job uses, sharing one session (one budget, one meter)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from capture.errors import CaptureError
from capture.github.app import GitHubApp
from capture.github.budgets import Budgets
from capture.github.credentials import Pool, pool_for, single
from capture.github.graphql import Counting, GraphQLClient
from capture.github.rest import EtagCache, RestClient
from capture.github.session import Meter, Session
from capture.settings import CaptureSettings
from jobstore import ConfigError

USER_AGENT = "prcapture/0.1 (+https://github.com/)"


def connect(
    settings: CaptureSettings, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An httpx client with GitHub's headers; raises ConfigError without any credential.
    The pool sets each request's authorization; the first personal token is the default."""
    token = settings.require_token()
    headers = {"user-agent": USER_AGENT, "x-github-api-version": "2022-11-28"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.Client(
        headers=headers,
        timeout=httpx.Timeout(30.0, connect=10.0),
        transport=transport,
        max_redirects=3,  # a renamed repository's 301 is one hop
    )


class GitHub:
    """The clients one job uses, sharing one session (one meter); `owns_client` when
    closing it closes the HTTP client too (a factory's client outlives its jobs)."""

    def __init__(
        self,
        client: httpx.Client,
        settings: CaptureSettings,
        *,
        realtime: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        etags: EtagCache | None = None,
        pool: Pool | None = None,
        repository: str | None = None,
        on_wait: Callable[[float, str], None] | None = None,
        owns_client: bool = True,
    ) -> None:
        self.settings = settings
        self.owns_client = owns_client
        pool = pool or single(client, reserve=settings.reserve)
        self.session = Session(
            client,
            pool=pool,
            realtime=realtime,
            concurrency=settings.concurrency,
            sleep=sleep,
            now=now,
            repository=repository,
        )
        self.session.on_wait = on_wait
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
        if self.owns_client:
            self.session.client.close()


class GitHubFactory:
    """A process's way to GitHub, made once and reused by every job: one HTTP client
    (its connections and TLS set-up kept), one credential pool over the shared budget
    ledger, and a `GitHub` for each job."""

    def __init__(
        self,
        settings: CaptureSettings,
        budgets: Budgets,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.sleep = sleep
        self.now = now
        self._transport = transport
        self._client: httpx.Client | None = None
        self._pool: Pool | None = None
        self._budgets = budgets
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        """The HTTP client, made on first use: ConfigError without any credential (the
        job that needed it fails at its start, saying so)."""
        with self._lock:
            if self._client is None:
                self._client = connect(self.settings, self._transport)
            return self._client

    @property
    def pool(self) -> Pool:
        """The credentials (personal tokens are named by asking GitHub, once)."""
        client = self.client
        with self._lock:
            if self._pool is None:
                self._pool = pool_for(self.settings, client, self._budgets, self.now)
            return self._pool

    def github(
        self,
        *,
        realtime: bool = False,
        repository: str | None = None,
        etags: EtagCache | None = None,
        on_wait: Callable[[float, str], None] | None = None,
    ) -> GitHub:
        """The clients for one job: its repository's own installation preferred (raises
        ConfigError or CaptureError if the App cannot be asked), real-time jobs allowed
        each credential's reserve, REST answers' ETags in `etags`."""
        pool = self.pool
        pool.prefer(repository)
        return GitHub(
            self.client,
            self.settings,
            realtime=realtime,
            sleep=self.sleep,
            now=self.now,
            etags=etags,
            pool=pool,
            repository=repository,
            on_wait=on_wait,
            owns_client=False,
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def credential_problem(
    settings: CaptureSettings,
    transport: httpx.BaseTransport | None = None,
    now: Callable[[], datetime] | None = None,
    client: httpx.Client | None = None,
) -> str | None:
    """Why every job would fail on GitHub's side now (no credential, or GitHub refusing
    every one), or None. Asks GET /rate_limit (free) with each personal token, and has the
    App mint an installation token (its JWT checked). Never names a token. With `client`
    (a process's own), no client is made for the question."""
    try:
        mine = client is None
        client = client or connect(settings, transport)
    except ConfigError as exc:
        return str(exc)
    problems = []
    with client if mine else contextlib.nullcontext(client):
        for token in settings.personal_tokens():
            try:
                status = client.get(
                    f"{settings.api_url}/rate_limit",
                    headers={"authorization": f"Bearer {token.reveal()}"},
                ).status_code
            except httpx.HTTPError as exc:
                return f"GitHub unreachable at {settings.api_url} ({type(exc).__name__})"
            if status != 401:
                return None
            problems.append(
                f"GitHub refused the token (HTTP 401 from {settings.api_url}/rate_limit)"
            )
        if settings.app_id is not None:
            app = GitHubApp(
                settings.app_id, settings.app_key, client, settings.api_url, now or utcnow
            )
            try:
                for installation_id in settings.installation_ids[:1]:
                    app.token(installation_id)
                if not settings.installation_ids:
                    app.jwt()  # the key at least signs
                return None
            except CaptureError as exc:
                problems.append(str(exc))
    return problems[0] if problems else None


class CredentialCheck:
    """`credential_problem`, asked at most every `every` seconds while all is well and
    before each claim while it is not; `forget()` after a job met a 401."""

    def __init__(
        self, settings: CaptureSettings, client: httpx.Client | None = None, every: float = 60.0
    ) -> None:
        self.settings = settings
        self.client = client
        self.every = every
        self.checked_at: float | None = None

    def __call__(self) -> str | None:
        fresh = self.checked_at is not None and time.monotonic() - self.checked_at < self.every
        if fresh:
            return None
        problem = credential_problem(self.settings, client=self.client)
        self.checked_at = None if problem else time.monotonic()
        return problem

    def forget(self) -> None:
        self.checked_at = None


def utcnow() -> datetime:
    return datetime.now(UTC)
