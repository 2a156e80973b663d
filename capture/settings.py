"""The capture package's settings from the environment: GitHub (the names Actions
sets), the served Inngest function, the HTTP API and the alert webhook. The freshness
loop's are in capture.freshness.settings."""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jobstore import LANES, ConfigError, Secret


@dataclass(frozen=True)
class CaptureSettings:
    token: Secret = field(default_factory=lambda: Secret(""))
    api_url: str = "https://api.github.com"
    graphql_url: str = "https://api.github.com/graphql"
    reserve: int = 500  # points of the hourly budget kept for the real-time lane
    batch_size: int = 100  # pull requests per nested query by node id (GitHub's maximum)
    max_items: int = 500  # more explicit PRs are split into child jobs
    concurrency: int = 4  # requests in flight per token
    force_rest: bool = False
    node_counting: str = "auto"  # how the server counts nodes(ids:): auto, strict, lenient
    max_nodes: int = 100_000  # possible nodes per query the planner aims under
    rest_factor: int = 10  # a fallback may spend this many times the GraphQL estimate
    rest_floor: int = 100  # ... and at least this many REST requests
    tokens: tuple[Secret, ...] = ()  # more personal tokens (GITHUB_TOKENS)
    app_id: int | None = None  # a GitHub App (GITHUB_APP_ID) and its private key
    app_key: Secret = field(default_factory=lambda: Secret(""))
    installation_ids: tuple[int, ...] = ()  # its installations (else found per owner)

    @property
    def has_credentials(self) -> bool:
        return bool(self.token) or bool(self.tokens) or self.app_id is not None

    def personal_tokens(self) -> list[Secret]:
        return ([self.token] if self.token else []) + list(self.tokens)

    def require_token(self) -> str:
        """Any credential will do for the client's default header (the pool picks the
        credential of each request); ConfigError when there is none at all."""
        if not self.has_credentials:
            raise ConfigError(
                "GITHUB_TOKEN (or GH_TOKEN), GITHUB_TOKENS or GITHUB_APP_ID is not set"
            )
        return self.token.reveal() if self.token else ""


def whole_number(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {raw!r}")
    return value


def choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or default).strip().lower()
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _app(env: Mapping[str, str]) -> tuple[int | None, Secret, tuple[int, ...]]:
    """GITHUB_APP_ID, its key (GITHUB_APP_PRIVATE_KEY, or GITHUB_APP_PRIVATE_KEY_FILE) and
    GITHUB_APP_INSTALLATION_IDS; every problem named, the key never shown."""
    raw_id = (env.get("GITHUB_APP_ID") or "").strip()
    if not raw_id:
        return None, Secret(""), ()
    if not raw_id.isdigit():
        raise ConfigError(f"GITHUB_APP_ID must be the app's number, got {raw_id!r}")
    key = (env.get("GITHUB_APP_PRIVATE_KEY") or "").replace("\\n", "\n")  # one-line env
    path = env.get("GITHUB_APP_PRIVATE_KEY_FILE")
    if not key and path:
        try:
            key = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(
                f"GITHUB_APP_PRIVATE_KEY_FILE: cannot read {path}: {exc.strerror}"
            ) from None
    if "PRIVATE KEY-----" not in key:
        raise ConfigError(
            "GITHUB_APP_PRIVATE_KEY (or GITHUB_APP_PRIVATE_KEY_FILE) must hold the app's "
            "PEM private key"
        )
    ids = []
    for part in (env.get("GITHUB_APP_INSTALLATION_IDS") or "").split(","):
        if part.strip():
            if not part.strip().isdigit():
                raise ConfigError(
                    f"GITHUB_APP_INSTALLATION_IDS must be numbers, got {part.strip()!r}"
                )
            ids.append(int(part))
    return int(raw_id), Secret(key), tuple(ids)


def load(env: Mapping[str, str] | None = None) -> CaptureSettings:
    env = os.environ if env is None else env
    api = (env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
    app_id, app_key, installation_ids = _app(env)
    more = tuple(
        Secret(t.strip()) for t in (env.get("GITHUB_TOKENS") or "").split(",") if t.strip()
    )
    return CaptureSettings(
        token=Secret(env.get("GITHUB_TOKEN") or env.get("GH_TOKEN") or ""),
        api_url=api,
        graphql_url=env.get("GITHUB_GRAPHQL_URL") or f"{api}/graphql",
        reserve=whole_number(env, "CAPTURE_RESERVE_POINTS", 500),
        batch_size=min(whole_number(env, "CAPTURE_BATCH_SIZE", 100), 100),
        max_items=whole_number(env, "CAPTURE_MAX_ITEMS", 500),
        concurrency=whole_number(env, "CAPTURE_CONCURRENCY", 4),
        force_rest=(env.get("CAPTURE_FORCE_REST") or "").lower() in ("1", "true", "yes"),
        node_counting=choice(env, "CAPTURE_NODE_COUNTING", "auto", ("auto", "strict", "lenient")),
        max_nodes=min(whole_number(env, "CAPTURE_MAX_NODES", 100_000), 500_000),
        rest_factor=whole_number(env, "CAPTURE_REST_FACTOR", 10),
        rest_floor=whole_number(env, "CAPTURE_REST_FLOOR", 100),
        tokens=more,
        app_id=app_id,
        app_key=app_key,
        installation_ids=installation_ids,
    )


@dataclass(frozen=True)
class InngestSettings:
    """How the function is served: INNGEST_SIGNING_KEY (production: requests are signed),
    INNGEST_DEV (the dev server, no signatures), INNGEST_BASE_URL, the Event API and key,
    and CAPTURE_INNGEST_CONCURRENCY runs at once per repository."""

    signing_key: Secret = field(default_factory=lambda: Secret(""))
    event_key: Secret = field(default_factory=lambda: Secret(""))
    dev: bool = False
    base_url: str | None = None
    event_api: str = "https://inn.gs"
    concurrency: int = 1
    # The public origin Inngest calls (https://host[:port]), registered on a sync: taken
    # from here, never from the Host of the request that asked for the sync.
    serve_origin: str | None = None

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> InngestSettings:
        env = os.environ if env is None else env
        return cls(
            signing_key=Secret(env.get("INNGEST_SIGNING_KEY") or ""),
            event_key=Secret(env.get("INNGEST_EVENT_KEY") or ""),
            dev=(env.get("INNGEST_DEV") or "").lower() not in ("", "0", "false", "no"),
            base_url=env.get("INNGEST_BASE_URL") or None,
            event_api=(env.get("INNGEST_EVENT_API_BASE_URL") or "https://inn.gs").rstrip("/"),
            concurrency=whole_number(env, "CAPTURE_INNGEST_CONCURRENCY", 1),
            serve_origin=origin(env, "INNGEST_SERVE_ORIGIN"),
        )

    def check(self, host: str | None = None) -> None:
        """Production mode needs the signing key; the dev server's mode (nothing signed)
        is for a loopback `host` only. Raises ConfigError naming the setting."""
        if not self.dev and not self.signing_key:
            raise ConfigError(
                "INNGEST_SIGNING_KEY is not set (production mode); set it, or INNGEST_DEV=1"
            )
        if self.dev and host is not None and not loopback(host):
            raise ConfigError(
                f"INNGEST_DEV=1 runs unsigned calls from anyone: serve it on 127.0.0.1, not "
                f"{host} (or set INNGEST_SIGNING_KEY for production)"
            )


def loopback(host: str) -> bool:
    """True for an address only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def origin(env: Mapping[str, str], name: str) -> str | None:
    """An http(s) origin (scheme, host, optional port; no path), or None when unset."""
    value = (env.get(name) or "").strip().rstrip("/")
    if not value:
        return None
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
        raise ConfigError(
            f"{name} must be an origin like https://capture.example.com, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class ApiSettings:
    """CAPTURE_API_TOKENS: comma-separated `NAME:SCOPE:TOKEN` entries (scope read, submit
    or admin; each wider than the one before), or bare tokens (admin, named by their
    fingerprint, as before names existed); CAPTURE_API_SUBMIT_PER_MINUTE captures a token
    may ask for a minute; CAPTURE_API_CORS_ORIGINS."""

    tokens: tuple[Secret | ApiToken, ...] = ()  # what the API accepts
    # Web origins whose pages may call the API from a browser (CAPTURE_API_CORS_ORIGINS).
    origins: frozenset[str] = frozenset()
    submit_per_minute: int = 120

    def named(self) -> list[ApiToken]:
        """Every token with its name and scope (a bare one: admin, named by fingerprint)."""
        return [
            t if isinstance(t, ApiToken) else ApiToken(t.fingerprint(), "admin", t)
            for t in self.tokens
        ]

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> ApiSettings:
        env = os.environ if env is None else env
        tokens = tuple(
            api_token(entry.strip())
            for entry in (env.get("CAPTURE_API_TOKENS") or "").split(",")
            if entry.strip()
        )
        if not tokens:
            raise ConfigError(
                "CAPTURE_API_TOKENS is not set: the API needs at least one token to accept"
            )
        names = [t.name for t in tokens if isinstance(t, ApiToken)]
        if len(names) != len(set(names)):
            raise ConfigError("CAPTURE_API_TOKENS: two tokens have the same name")
        origins = frozenset(
            o.strip().rstrip("/")
            for o in (env.get("CAPTURE_API_CORS_ORIGINS") or "").split(",")
            if o.strip()
        )
        for origin in origins:
            if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
                raise ConfigError(
                    f"CAPTURE_API_CORS_ORIGINS: {origin!r} is not an origin like "
                    "https://app.example.com"
                )
        per_minute = whole_number(env, "CAPTURE_API_SUBMIT_PER_MINUTE", 120)
        return cls(tokens, origins, per_minute)


SCOPES = ("read", "submit", "admin")  # each allows what the ones before it do
TOKEN_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


@dataclass(frozen=True)
class ApiToken:
    name: str
    scope: str
    secret: Secret

    def allows(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


def api_token(entry: str) -> Secret | ApiToken:
    """One CAPTURE_API_TOKENS entry: NAME:SCOPE:TOKEN, or a bare token. The error never
    shows the token."""
    name, scope, token = entry.split(":", 2) if entry.count(":") >= 2 else ("", "", entry)
    if len(token) < 16:
        raise ConfigError("CAPTURE_API_TOKENS: each token must be at least 16 characters")
    if not name and not scope:
        return Secret(token)
    if not TOKEN_NAME.fullmatch(name):
        raise ConfigError(
            f"CAPTURE_API_TOKENS: the name {name[:40]!r} is not 1-40 lowercase letters, "
            "digits, - or _"
        )
    if scope not in SCOPES:
        raise ConfigError(
            f"CAPTURE_API_TOKENS: token {name}'s scope must be one of {', '.join(SCOPES)}"
        )
    return ApiToken(name, scope, Secret(token))


def alert_webhook(env: Mapping[str, str] | None = None) -> Secret | None:
    """CAPTURE_ALERT_WEBHOOK (an http(s) URL; it may hold a secret, so it is never shown)."""
    env = os.environ if env is None else env
    url = (env.get("CAPTURE_ALERT_WEBHOOK") or "").strip()
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise ConfigError("CAPTURE_ALERT_WEBHOOK must be an http:// or https:// URL")
    return Secret(url)


WEBHOOK_PATH = "/v1/github/webhooks"


@dataclass(frozen=True)
class WebhookSettings:
    """GITHUB_WEBHOOK_SECRET: the App's webhook secret (during a rotation, the new and the
    old one, comma-separated); CAPTURE_WEBHOOK_PATH: where GitHub posts;
    CAPTURE_WEBHOOK_COALESCE_SECONDS: how long changes on a repository's pull requests
    gather before their one targeted refresh (a pull request not stored yet);
    CAPTURE_WEBHOOK_DETAILS_SECONDS: how long a stored pull request's files and commits
    (which no payload carries) may wait, for one query to take many repositories' at once;
    CAPTURE_WEBHOOK_LANE: where deliveries are
    applied (default: the router decides, real-time); CAPTURE_WEBHOOK_TIER: the tier of a
    repository an installation adds; CAPTURE_WEBHOOK_RECONCILE_MINUTES: how often the
    planner lists the App's deliveries and asks for failed ones again, confirming each
    installation; CAPTURE_WEBHOOK_RECHECK_SECONDS: how often `bin/plan --forever` looks at
    the last minutes of that list (a dropped delivery asked for again within seconds);
    CAPTURE_WEBHOOK_SILENCE_MINUTES: an installation whose repositories changed on GitHub
    with no delivery from it for this long is alerted on."""

    secrets: tuple[Secret, ...] = ()
    path: str = WEBHOOK_PATH
    coalesce_seconds: int = 30
    details_seconds: int = 300
    lane: str | None = None
    tier: str = "warm"
    reconcile_minutes: int = 5
    recheck_seconds: int = 5
    silence_minutes: int = 60

    @property
    def enabled(self) -> bool:
        return bool(self.secrets)

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> WebhookSettings:
        env = os.environ if env is None else env
        secrets = [s.strip() for s in (env.get("GITHUB_WEBHOOK_SECRET") or "").split(",")]
        secrets = [s for s in secrets if s]
        if len(secrets) > 2:
            raise ConfigError("GITHUB_WEBHOOK_SECRET: at most two secrets (the new, the old)")
        if any(len(s) < 16 for s in secrets):
            raise ConfigError("GITHUB_WEBHOOK_SECRET: a secret must be at least 16 characters")
        path = env.get("CAPTURE_WEBHOOK_PATH") or WEBHOOK_PATH
        if not re.fullmatch(r"(/[A-Za-z0-9._-]+)+", path):
            raise ConfigError(
                f"CAPTURE_WEBHOOK_PATH must be a path like {WEBHOOK_PATH}, got {path!r}"
            )
        lane = (env.get("CAPTURE_WEBHOOK_LANE") or "").strip() or None
        if lane is not None and lane not in LANES:
            raise ConfigError(
                f"CAPTURE_WEBHOOK_LANE must be one of {', '.join(LANES)}, got {lane!r}"
            )
        return cls(
            tuple(Secret(s) for s in secrets),
            path,
            coalesce_seconds=whole_number(env, "CAPTURE_WEBHOOK_COALESCE_SECONDS", 30),
            details_seconds=whole_number(env, "CAPTURE_WEBHOOK_DETAILS_SECONDS", 300),
            lane=lane,
            tier=choice(env, "CAPTURE_WEBHOOK_TIER", "warm", ("hot", "warm", "cold")),
            reconcile_minutes=whole_number(env, "CAPTURE_WEBHOOK_RECONCILE_MINUTES", 5),
            recheck_seconds=whole_number(env, "CAPTURE_WEBHOOK_RECHECK_SECONDS", 5),
            silence_minutes=whole_number(env, "CAPTURE_WEBHOOK_SILENCE_MINUTES", 60),
        )
