"""Capture settings from the environment (the names GitHub Actions sets)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

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

    def require_token(self) -> str:
        if not self.token:
            raise ConfigError("GITHUB_TOKEN (or GH_TOKEN) is not set")
        return self.token.reveal()


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


def load(env: Mapping[str, str] | None = None) -> CaptureSettings:
    env = os.environ if env is None else env
    api = (env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
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
    )
