"""Settings read from the environment; the only module that reads os.environ."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from jobstore.errors import ConfigError
from jobstore.routing import LANES as ROUTABLE
from jobstore.routing import HealthConfig, RoutingConfig

LANES = ("inngest", "github_actions", "local")

# A running job with no event for longer than this is stale. Workers checkpoint per page,
# so these bound the silence of a live worker, not the length of a job.
DEFAULT_LEASES = {"inngest": 300.0, "github_actions": 1800.0, "local": 300.0}
# A dispatched job not started within this is a failed dispatch (the lane dropped it).
DEFAULT_START_DEADLINES = {"inngest": 120.0, "github_actions": 900.0, "local": 60.0}


class Secret:
    """A token or key that never shows itself in a repr, a log line or an exception."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


# Job types whose runs use a workflow of their own (it plans child jobs and fans out).
DEFAULT_WORKFLOWS = {"historical-sync": "historical-sync.yml"}


@dataclass(frozen=True)
class LaneSettings:
    """Where the dispatching lanes are: Inngest's Event API and the Actions workflows."""

    inngest_event_key: Secret = field(default_factory=lambda: Secret(""))
    inngest_event_api: str = "https://inn.gs"
    inngest_signing_key: Secret = field(default_factory=lambda: Secret(""))
    inngest_dev: bool = False  # INNGEST_DEV: the dev server, no signatures
    inngest_base_url: str | None = None
    inngest_concurrency: int = 1  # runs at once per repository
    github_token: Secret = field(default_factory=lambda: Secret(""))
    github_api_url: str = "https://api.github.com"
    actions_repository: str = ""  # owner/name holding .github/workflows
    actions_ref: str = "main"
    actions_workflow: str = "capture-job.yml"
    actions_workflows: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_WORKFLOWS))

    def workflow_for(self, job_type: str) -> str:
        return self.actions_workflows.get(job_type, self.actions_workflow)


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
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    lanes: LaneSettings = LaneSettings()

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
        routing=_routing(env),
        health=HealthConfig(
            window=_number(env, "JOBSTORE_HEALTH_WINDOW_SECONDS", 600.0, minimum=1),
            failures=int(_number(env, "JOBSTORE_HEALTH_FAILURES", 3, minimum=1)),
            lane_tries=int(_number(env, "JOBSTORE_DISPATCH_TRIES", 2, minimum=1)),
        ),
        lanes=_lanes(env),
        database_url=url,
        home=Path(env.get("JOBSTORE_HOME") or ".jobstore"),
        leases=leases,
        start_deadlines=deadlines,
        retry=retry,
        pool_size=int(_number(env, "JOBSTORE_POOL_SIZE", 5, minimum=1)),
        prices_path=Path(env["JOBSTORE_PRICES"]) if env.get("JOBSTORE_PRICES") else None,
    )


def _routing(env: Mapping[str, str]) -> RoutingConfig:
    default_lane = env.get("JOBSTORE_DEFAULT_LANE") or "github_actions"
    if default_lane not in ROUTABLE:
        raise ConfigError(f"JOBSTORE_DEFAULT_LANE must be one of {', '.join(ROUTABLE)}")
    percent = _number(env, "JOBSTORE_ROLLOUT_PERCENT", 100.0)
    if percent > 100:
        raise ConfigError(f"JOBSTORE_ROLLOUT_PERCENT must be 0..100, got {percent:g}")
    large = env.get("JOBSTORE_LARGE_REPOSITORIES") or ""
    return RoutingConfig(
        rollout_percent=percent,
        default_lane=default_lane,
        recent_hours=_number(env, "JOBSTORE_RECENT_HOURS", 24.0, minimum=1),
        realtime_max_prs=int(_number(env, "JOBSTORE_REALTIME_MAX_PRS", 10)),
        inngest_max_items=int(_number(env, "JOBSTORE_INNGEST_MAX_ITEMS", 50, minimum=1)),
        bulk_items=int(_number(env, "JOBSTORE_BULK_ITEMS", 100, minimum=1)),
        large_repositories=frozenset(r.strip().lower() for r in large.split(",") if r.strip()),
    )


def _lanes(env: Mapping[str, str]) -> LaneSettings:
    workflows = dict(DEFAULT_WORKFLOWS)
    for pair in (env.get("CAPTURE_ACTIONS_WORKFLOWS") or "").split(","):
        if pair.strip():
            job_type, sep, file = pair.partition("=")
            if not sep or not file.strip():
                raise ConfigError(f"CAPTURE_ACTIONS_WORKFLOWS: {pair!r} is not JOB_TYPE=FILE")
            workflows[job_type.strip()] = file.strip()
    return LaneSettings(
        inngest_event_key=Secret(env.get("INNGEST_EVENT_KEY") or ""),
        inngest_event_api=(env.get("INNGEST_EVENT_API_BASE_URL") or "https://inn.gs").rstrip("/"),
        inngest_signing_key=Secret(env.get("INNGEST_SIGNING_KEY") or ""),
        inngest_dev=(env.get("INNGEST_DEV") or "").lower() not in ("", "0", "false", "no"),
        inngest_base_url=env.get("INNGEST_BASE_URL") or None,
        inngest_concurrency=int(_number(env, "CAPTURE_INNGEST_CONCURRENCY", 1, minimum=1)),
        github_token=Secret(env.get("GITHUB_TOKEN") or env.get("GH_TOKEN") or ""),
        github_api_url=(env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
        actions_repository=env.get("CAPTURE_ACTIONS_REPOSITORY") or "",
        actions_ref=env.get("CAPTURE_ACTIONS_REF") or "main",
        actions_workflow=env.get("CAPTURE_ACTIONS_WORKFLOW") or "capture-job.yml",
        actions_workflows=workflows,
    )


@dataclass(frozen=True)
class RunnerFiles:
    """What a GitHub Actions runner provides a step (empty outside Actions)."""

    active: bool = False
    output: Path | None = None
    summary: Path | None = None
    run_url: str = ""  # this workflow run's page, when the runner says where it is

    @property
    def run_ref(self) -> str:
        """This run as a Dispatched ref ("ID URL"), e.g. for the matrix legs it will run."""
        return f"{self.run_url.rsplit('/', 1)[-1]} {self.run_url}" if self.run_url else ""


def runner_files(env: Mapping[str, str] | None = None) -> RunnerFiles:
    """GITHUB_OUTPUT and GITHUB_STEP_SUMMARY when GITHUB_ACTIONS is "true"."""
    env = os.environ if env is None else env
    if env.get("GITHUB_ACTIONS") != "true":
        return RunnerFiles()
    output, summary = env.get("GITHUB_OUTPUT"), env.get("GITHUB_STEP_SUMMARY")
    server, repo, run_id = (
        env.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    )
    run_url = f"{server}/{repo}/actions/runs/{run_id}" if server and repo and run_id else ""
    return RunnerFiles(
        True, Path(output) if output else None, Path(summary) if summary else None, run_url
    )


def machine_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a child process started for someone else (a sandbox runner's step) inherits
    from this machine: PATH and the like, never this process's secrets."""
    env = os.environ if env is None else env
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")
    return {k: env[k] for k in keep if k in env}
