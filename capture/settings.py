"""Capture settings from the environment (the names GitHub Actions sets)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from capture.freshness.rules import DEFAULT_TIERS, FreshnessSettings, Tier
from jobstore.errors import ConfigError
from jobstore.secret import Secret


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


def _int(env: Mapping[str, str], name: str, default: int) -> int:
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


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
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
        reserve=_int(env, "CAPTURE_RESERVE_POINTS", 500),
        batch_size=min(_int(env, "CAPTURE_BATCH_SIZE", 100), 100),
        max_items=_int(env, "CAPTURE_MAX_ITEMS", 500),
        concurrency=_int(env, "CAPTURE_CONCURRENCY", 4),
        force_rest=(env.get("CAPTURE_FORCE_REST") or "").lower() in ("1", "true", "yes"),
        node_counting=_choice(env, "CAPTURE_NODE_COUNTING", "auto", ("auto", "strict", "lenient")),
        max_nodes=min(_int(env, "CAPTURE_MAX_NODES", 100_000), 500_000),
        rest_factor=_int(env, "CAPTURE_REST_FACTOR", 10),
        rest_floor=_int(env, "CAPTURE_REST_FLOOR", 100),
        tokens=more,
        app_id=app_id,
        app_key=app_key,
        installation_ids=installation_ids,
    )


def duration(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    """`90s`, `15m`, `6h`, `2d` or plain seconds."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(raw[-1])
    number = raw[:-1] if unit else raw
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise ConfigError(f"{name} must be a duration like 15m, 6h or 900, got {raw!r}") from None
    if seconds <= 0:
        raise ConfigError(f"{name} must be more than zero, got {raw!r}")
    return timedelta(seconds=seconds)


def load_freshness(env: Mapping[str, str] | None = None) -> FreshnessSettings:
    """The freshness loop's settings: tier targets (probed at a third of the target, a
    change refreshed at two thirds), promotion, bootstrap and the lanes it uses."""
    env = os.environ if env is None else env
    tiers = {}
    for name, tier in DEFAULT_TIERS.items():
        target = duration(env, f"CAPTURE_TIER_{name.upper()}", tier.target)
        tiers[name] = Tier.of(name, target)
    lanes = ("inngest", "github_actions", "local")
    refresh_lane = _choice(env, "CAPTURE_REFRESH_LANE", "auto", ("auto", *lanes))
    return FreshnessSettings(
        tiers=tiers,
        promote_for=duration(env, "CAPTURE_PROMOTE_FOR", timedelta(hours=2)),
        bootstrap_days=min(_int(env, "CAPTURE_BOOTSTRAP_DAYS", 30), 365),
        fast_lane=_choice(env, "CAPTURE_FAST_LANE", "inngest", lanes),
        bulk_lane=_choice(env, "CAPTURE_BULK_LANE", "github_actions", lanes),
        refresh_lane=None if refresh_lane == "auto" else refresh_lane,
        reserve=_int(env, "CAPTURE_RESERVE_POINTS", 500),
    )
