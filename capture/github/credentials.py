"""The credentials a capture may use, and the pool that picks one for each request: App
installations (each its own budget) and personal tokens (grouped by their user, since all
tokens of one user share a budget). Each request draws a credential with headroom for its
planned cost from the shared ledger; non-real-time work leaves each credential's reserve.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx

from capture.errors import RateLimited
from capture.github.app import GitHubApp
from capture.github.budgets import DEFAULT_LIMIT, Budgets, MemoryBudgets, Observed
from capture.settings import CaptureSettings
from jobstore import ConfigError, Secret, fingerprint

log = logging.getLogger(__name__)
JITTER = 60.0  # seconds: jobs woken by one reset spread over this, not all at once
PACE = {"graphql": 1800, "core": 800}  # per credential per minute, under GitHub's 2,000 / 900


@dataclass
class Credential:
    """One budget's way in. `key` names the budget (installation:ID, user:LOGIN, or a
    token's fingerprint), `label` is for people; neither is ever the token."""

    key: str
    label: str
    kind: str  # installation, user, token
    authorization: Callable[[], str]
    owner: str | None = None  # an installation's account
    forget: Callable[[], None] = lambda: None  # drops a cached token (it was refused)

    def __repr__(self) -> str:
        return f"Credential({self.label!r})"


def personal(token: Secret, client: httpx.Client, api_url: str) -> Credential:
    """A personal token, named after its user (GET /user) so that every token of one user
    draws from the one budget they share; by its fingerprint if GitHub will not say."""
    value = token.reveal()
    login = None
    try:
        answer = client.get(
            f"{api_url.rstrip('/')}/user", headers={"authorization": f"Bearer {value}"}
        )
        if answer.status_code == 200:
            login = answer.json().get("login")
    except httpx.HTTPError:
        pass  # the first real request will say what is wrong; the fingerprint will do
    if login:
        return Credential(f"user:{login}", f"user {login}", "user", lambda: f"Bearer {value}")
    key = fingerprint(value)
    return Credential(key, f"token {key}", "token", lambda: f"Bearer {value}")


def installation(app: GitHubApp, installation_id: int, owner: str | None = None) -> Credential:
    return Credential(
        f"installation:{installation_id}",
        f"installation {installation_id}" + (f" ({owner})" if owner else ""),
        "installation",
        lambda: f"Bearer {app.token(installation_id).token.reveal()}",
        owner,
        lambda: app.forget(installation_id),
    )


_LOGINS: dict[str, Credential] = {}  # personal tokens already named, per process


def pool_for(
    settings: CaptureSettings,
    client: httpx.Client,
    budgets: Budgets,
    now: Callable[[], datetime],
) -> Pool:
    """Every credential the settings name: personal tokens (named by their user, once per
    process) and the GitHub App's installations (more are found per repository)."""
    credentials = []
    for token in settings.personal_tokens():
        key = fingerprint(token.reveal())
        if key not in _LOGINS:
            _LOGINS[key] = personal(token, client, settings.api_url)
        credentials.append(_LOGINS[key])
    app = None
    if settings.app_id is not None:
        app = _app_for(settings, client, now)
        credentials += [installation(app, i) for i in settings.installation_ids]
    if not credentials and app is None:
        raise ConfigError("GITHUB_TOKEN (or GH_TOKEN), GITHUB_TOKENS or GITHUB_APP_ID is not set")
    return Pool(credentials, budgets, reserve=settings.reserve, app=app)


def _app_for(
    settings: CaptureSettings, client: httpx.Client, now: Callable[[], datetime]
) -> GitHubApp:
    assert settings.app_id is not None
    return GitHubApp(settings.app_id, settings.app_key, client, settings.api_url, now)


def single(client: httpx.Client, reserve: int = 0) -> Pool:
    """A pool of the one token the client already carries (tests, one-off tools)."""
    header = client.headers.get("authorization", "")
    key = fingerprint(header.partition(" ")[2])
    return Pool([Credential(key, f"token {key}", "token", lambda: header)], reserve=reserve)


@dataclass
class Draw:
    credential: Credential
    reservation: str | None
    resource: str


@dataclass
class Pool:
    """Picks the credential for each request, through the shared budget ledger."""

    credentials: list[Credential]
    budgets: Budgets = field(default_factory=MemoryBudgets)
    reserve: int = 0  # points each credential keeps for real-time work
    pace: dict[str, int] = field(default_factory=lambda: dict(PACE))
    jitter: Callable[[], float] = field(default=lambda: random.uniform(0, JITTER))
    app: GitHubApp | None = None  # to find installations of repositories not listed
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def prefer(self, repository: str | None) -> None:
        """Makes sure an installation covering `repository` is in the pool (it is needed
        for private data; public data may be read through any credential). Raises
        ConfigError when the pool would be empty."""
        if self.app is None or repository is None:
            return
        found = self.app.installation_for(repository)
        with self._lock:
            if found is not None and not any(
                c.key == f"installation:{found}" for c in self.credentials
            ):
                owner = repository.split("/")[0]
                self.credentials.append(installation(self.app, found, owner))

    def draw(
        self,
        resource: str,
        cost: int,
        now: datetime,
        *,
        realtime: bool = False,
        repository: str | None = None,
    ) -> Draw | datetime:
        """A credential admitted for `cost` points, or the time to try again when every
        credential is at its pace for the minute. Raises RateLimited (with a jittered
        reset) when every credential's hour is spent."""
        keep = 0 if realtime else self.reserve
        ranked = self._ranked(resource, now, repository)
        waits, resets = [], []
        for credential in ranked:
            admission = self.budgets.admit(
                credential.key,
                resource,
                cost,
                now,
                keep=keep,
                per_minute=self.pace.get(resource),
                label=credential.label,
            )
            if admission.admitted:
                return Draw(credential, admission.reservation, resource)
            if admission.until is not None:
                waits.append(admission.until)
            elif admission.reset_at is not None:
                resets.append(admission.reset_at)
        if waits:
            return min(waits)
        reset = min(resets) if resets else now + timedelta(hours=1)
        why = "kept for real-time work" if keep else "spent"
        raise RateLimited(
            reset + timedelta(seconds=self.jitter()),
            f"every credential's {resource} budget is {why} ({len(ranked)} credentials)",
        )

    def _ranked(self, resource: str, now: datetime, repository: str | None) -> list[Credential]:
        """The repository's own installation first, then by headroom, most first."""
        owner = repository.split("/")[0].lower() if repository else None

        def rank(credential: Credential) -> tuple[int, int]:
            headroom = self.budgets.headroom(credential.key, resource, now)
            mine = owner is not None and (credential.owner or "").lower() == owner
            return (0 if mine else 1, -(headroom if headroom is not None else 10**9))

        with self._lock:
            chosen = list({c.key: c for c in self.credentials}.values())
        return sorted(chosen, key=rank)

    def headroom(self, resource: str, now: datetime, keep: int | None = None) -> float:
        """Points the pool could spend now, `keep` points of each credential left out (by
        default its reserve for real-time work); a credential the ledger has not heard of
        counts as a fresh hour."""
        keep = self.reserve if keep is None else keep
        with self._lock:
            chosen = list({c.key: c for c in self.credentials}.values())
        total = 0.0
        for credential in chosen:
            left = self.budgets.headroom(credential.key, resource, now)
            total += max(0, (DEFAULT_LIMIT if left is None else left) - keep)
        return total

    def minute_pace(self, resource: str) -> int | None:
        """Points a minute the pool may spend on `resource` at its pace, all credentials
        together (None: not paced)."""
        pace = self.pace.get(resource)
        if pace is None:
            return None
        with self._lock:
            return pace * len({c.key for c in self.credentials})

    def renew(self, credential: Credential) -> None:
        credential.forget()

    def observe(self, draw: Draw, headers: httpx.Headers, now: datetime) -> None:
        self.budgets.observe(
            draw.credential.key, draw.resource, Observed.of(headers), draw.reservation, now
        )
