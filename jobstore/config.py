"""Settings read from the environment; the only module that reads os.environ."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from jobstore.errors import ConfigError

LANES = ("inngest", "github_actions", "local")

# A running job with no event for longer than this is stale. Workers checkpoint per page,
# so these bound the silence of a live worker, not the length of a job.
DEFAULT_LEASES = {"inngest": 300.0, "github_actions": 1800.0, "local": 300.0}
# A dispatched job not started within this is a failed dispatch (the lane dropped it).
DEFAULT_START_DEADLINES = {"inngest": 120.0, "github_actions": 900.0, "local": 60.0}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon a failed job is tried again."""

    max_attempts: int = 5
    base_delay: float = 30.0
    max_delay: float = 3600.0


@dataclass(frozen=True)
class LanePrice:
    per_run: float = 0.0
    per_step: float = 0.0
    per_minute: float = 0.0
    free_minutes: float = 0.0


def load_prices(path: Path | None = None) -> dict[str, LanePrice]:
    """The price table: the packaged defaults, or the TOML file at `path`."""
    text = (
        path.read_text()
        if path
        else resources.files("jobstore").joinpath("prices.toml").read_text()
    )
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"price table {path}: {exc}") from None
    prices = {}
    for lane in LANES:
        entry = table.get(lane, {})
        unknown = set(entry) - set(LanePrice.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"price table: unknown key {sorted(unknown)[0]!r} for {lane}")
        try:
            prices[lane] = LanePrice(**{k: float(v) for k, v in entry.items()})
        except (TypeError, ValueError):
            raise ConfigError(f"price table: prices for {lane} must be numbers") from None
    return prices


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    home: Path = Path(".jobstore")
    leases: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_LEASES))
    start_deadlines: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_START_DEADLINES)
    )
    retry: RetryPolicy = RetryPolicy()
    pool_size: int = 5
    prices_path: Path | None = None

    def lease(self, lane: str | None) -> float:
        return self.leases.get(lane or "local", DEFAULT_LEASES["local"])

    def start_deadline(self, lane: str | None) -> float:
        return self.start_deadlines.get(lane or "local", DEFAULT_START_DEADLINES["local"])


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Reads settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    url = env.get("DATABASE_URL") or None
    if url is not None and not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("DATABASE_URL must start with postgresql://")
    leases = {
        lane: _number(env, f"JOBSTORE_LEASE_{lane.upper()}", DEFAULT_LEASES[lane], minimum=1)
        for lane in LANES
    }
    deadlines = {
        lane: _number(
            env, f"JOBSTORE_START_DEADLINE_{lane.upper()}", DEFAULT_START_DEADLINES[lane], minimum=1
        )
        for lane in LANES
    }
    retry = RetryPolicy(
        max_attempts=int(_number(env, "JOBSTORE_MAX_ATTEMPTS", 5, minimum=1)),
        base_delay=_number(env, "JOBSTORE_RETRY_BASE_SECONDS", 30.0),
        max_delay=_number(env, "JOBSTORE_RETRY_MAX_SECONDS", 3600.0),
    )
    return Settings(
        database_url=url,
        home=Path(env.get("JOBSTORE_HOME") or ".jobstore"),
        leases=leases,
        start_deadlines=deadlines,
        retry=retry,
        pool_size=int(_number(env, "JOBSTORE_POOL_SIZE", 5, minimum=1)),
        prices_path=Path(env["JOBSTORE_PRICES"]) if env.get("JOBSTORE_PRICES") else None,
    )
