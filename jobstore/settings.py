"""The job store's settings read from the environment: database, leases, retries, routing,
lane health and where the lanes are. The only jobstore module that reads os.environ."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from jobstore.domain import RetryPolicy
from jobstore.errors import ConfigError
from jobstore.routing import LANES, HealthSettings, RoutingSettings
from jobstore.secret import Secret

# A running job with no event for longer than this is stale. Workers checkpoint per page,
# so these bound the silence of a live worker, not the length of a job.
DEFAULT_LEASES = {"inngest": 300.0, "github_actions": 1800.0, "local": 300.0}
# A dispatched job not started within this is a failed dispatch (the lane dropped it).
DEFAULT_START_DEADLINES = {"inngest": 120.0, "github_actions": 900.0, "local": 60.0}
# Jobs a dispatching lane runs at once: the Free plans' limits (GitHub Actions: 20
# concurrent jobs per account, up to 500 on Enterprise; Inngest: 5 concurrent steps, 100
# on Pro). Beyond it a lane queues the work itself and the start deadline would read the
# queueing as a lost dispatch, so the dispatcher keeps the rest routed in the job store.
DEFAULT_CAPACITIES = {"inngest": 5, "github_actions": 20}


# Job types whose runs use a workflow of their own (it plans child jobs and fans out).
DEFAULT_WORKFLOWS = {"historical-sync": "historical-sync.yml"}


@dataclass(frozen=True)
class LaneSettings:
    """Where the dispatching lanes are: Inngest's Event API and the Actions workflows (the
    served Inngest function's own settings are capture.inngest_function.InngestSettings)."""

    inngest_event_key: Secret = field(default_factory=lambda: Secret(""))
    inngest_event_api: str = "https://inn.gs"
    github_token: Secret = field(default_factory=lambda: Secret(""))
    github_api_url: str = "https://api.github.com"
    actions_repository: str = ""  # owner/name holding .github/workflows
    actions_ref: str = "main"
    actions_workflow: str = "capture-job.yml"
    actions_workflows: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_WORKFLOWS))

    def workflow_for(self, job_type: str) -> str:
        return self.actions_workflows.get(job_type, self.actions_workflow)

    def fans_out(self, job_type: str) -> bool:
        """Whether a run of `job_type` has a workflow of its own, whose matrix runs the
        job's children (the capture workflow has none: the sweeper sends them)."""
        return job_type in self.actions_workflows


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    home: Path = Path(".jobstore")
    on_github_actions: bool = False  # GITHUB_ACTIONS=true: a runner, no embedded server
    leases: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_LEASES))
    start_deadlines: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_START_DEADLINES)
    )
    capacities: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_CAPACITIES))
    # Small scheduled refreshes sent to Actions together, this many to a run (1: alone).
    actions_batch: int = 50
    actions_batch_wait: float = 1800.0  # seconds a partial batch waits for more riders
    retry: RetryPolicy = RetryPolicy()  # noqa: RUF009 - frozen, so sharing it is safe
    pool_size: int = 5
    pool_wait: float = 10.0  # seconds to wait for a pooled connection before giving up
    prices_path: Path | None = None
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    lanes: LaneSettings = LaneSettings()
    # Seconds after a job completes during which the same request (dedupe key) is
    # answered by that job instead of a new one: repeated clicks coalesce.
    cooldown: float = 60.0
    # A remote lane whose attempts fail more often than this (a fraction, over the last
    # hour, with at least auto_rollback_min ended) is stopped by the sweeper; None: never.
    auto_rollback: float | None = None
    auto_rollback_min: int = 10
    # Seconds a process reuses the rollout controls it read (an emergency stop reaches
    # every worker within this).
    rollout_ttl: float = 2.0
    # Finished jobs older than this many days have their events moved to the archive by
    # the sweeper (at most archive_per_sweep jobs a pass); 0: never.
    archive_after_days: float = 30.0
    archive_per_sweep: int = 2000

    def lease(self, lane: str | None) -> float:
        return self.leases.get(lane or "local", DEFAULT_LEASES["local"])

    def start_deadline(self, lane: str | None) -> float:
        return self.start_deadlines.get(lane or "local", DEFAULT_START_DEADLINES["local"])

    def capacity(self, lane: str | None) -> int | None:
        """Jobs `lane` may hold at once (dispatched or running); None: no limit (local)."""
        return self.capacities.get(lane or "local")


def number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0) -> float:
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
        lane: number(env, f"JOBSTORE_LEASE_{lane.upper()}", DEFAULT_LEASES[lane], minimum=1)
        for lane in LANES
    }
    deadlines = {
        lane: number(
            env, f"JOBSTORE_START_DEADLINE_{lane.upper()}", DEFAULT_START_DEADLINES[lane], minimum=1
        )
        for lane in LANES
    }
    capacities = {
        lane: int(number(env, f"JOBSTORE_CAPACITY_{lane.upper()}", default, minimum=1))
        for lane, default in DEFAULT_CAPACITIES.items()
    }
    retry = RetryPolicy(
        max_attempts=int(number(env, "JOBSTORE_MAX_ATTEMPTS", 5, minimum=1)),
        base_delay=number(env, "JOBSTORE_RETRY_BASE_SECONDS", 30.0),
        max_delay=number(env, "JOBSTORE_RETRY_MAX_SECONDS", 3600.0),
    )
    return Settings(
        routing=_routing(env),
        health=HealthSettings(
            window=number(env, "JOBSTORE_HEALTH_WINDOW_SECONDS", 600.0, minimum=1),
            failures=int(number(env, "JOBSTORE_HEALTH_FAILURES", 3, minimum=1)),
            lane_tries=int(number(env, "JOBSTORE_DISPATCH_TRIES", 2, minimum=1)),
        ),
        lanes=_lanes(env),
        database_url=url,
        on_github_actions=env.get("GITHUB_ACTIONS") == "true",
        home=Path(env["JOBSTORE_HOME"]) if env.get("JOBSTORE_HOME") else find_home(Path.cwd()),
        leases=leases,
        start_deadlines=deadlines,
        capacities=capacities,
        actions_batch=int(number(env, "JOBSTORE_ACTIONS_BATCH", 50, minimum=1)),
        actions_batch_wait=number(env, "JOBSTORE_ACTIONS_BATCH_WAIT", 1800.0),
        retry=retry,
        pool_size=int(number(env, "JOBSTORE_POOL_SIZE", 5, minimum=1)),
        prices_path=Path(env["JOBSTORE_PRICES"]) if env.get("JOBSTORE_PRICES") else None,
        cooldown=number(env, "JOBSTORE_COOLDOWN_SECONDS", 60.0),
        auto_rollback=_fraction(env, "JOBSTORE_AUTO_ROLLBACK"),
        auto_rollback_min=int(number(env, "JOBSTORE_AUTO_ROLLBACK_MIN", 10, minimum=1)),
        rollout_ttl=number(env, "JOBSTORE_ROLLOUT_TTL_SECONDS", 2.0),
        archive_after_days=number(env, "JOBSTORE_ARCHIVE_AFTER_DAYS", 30.0),
        archive_per_sweep=int(number(env, "JOBSTORE_ARCHIVE_PER_SWEEP", 2000)),
    )


def _fraction(env: Mapping[str, str], name: str) -> float | None:
    if not env.get(name):
        return None
    value = number(env, name, 0.0)
    if not 0 < value < 1:
        raise ConfigError(f"{name} must be a fraction between 0 and 1, got {env[name]!r}")
    return value


def _routing(env: Mapping[str, str]) -> RoutingSettings:
    default_lane = env.get("JOBSTORE_DEFAULT_LANE") or "github_actions"
    if default_lane not in LANES:
        raise ConfigError(f"JOBSTORE_DEFAULT_LANE must be one of {', '.join(LANES)}")
    percent = number(env, "JOBSTORE_ROLLOUT_PERCENT", 100.0)
    if percent > 100:
        raise ConfigError(f"JOBSTORE_ROLLOUT_PERCENT must be 0..100, got {percent:g}")
    large = env.get("JOBSTORE_LARGE_REPOSITORIES") or ""
    return RoutingSettings(
        rollout_percent=percent,
        default_lane=default_lane,
        recent_hours=number(env, "JOBSTORE_RECENT_HOURS", 24.0, minimum=1),
        realtime_max_prs=int(number(env, "JOBSTORE_REALTIME_MAX_PRS", 10)),
        inngest_max_items=int(number(env, "JOBSTORE_INNGEST_MAX_ITEMS", 50, minimum=1)),
        bulk_items=int(number(env, "JOBSTORE_BULK_ITEMS", 100, minimum=1)),
        large_repositories=frozenset(r.strip().lower() for r in large.split(",") if r.strip()),
        large_pull_requests=int(number(env, "JOBSTORE_LARGE_PULL_REQUESTS", 5000, minimum=1)),
        due_within=number(env, "JOBSTORE_DUE_WITHIN", 3600.0),
        crowded_after=number(env, "JOBSTORE_CROWDED_AFTER", 10.0),
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
        # the token that dispatches workflows; capture may use another (GITHUB_TOKEN)
        github_token=Secret(
            env.get("CAPTURE_DISPATCH_TOKEN")
            or env.get("GITHUB_TOKEN")
            or env.get("GH_TOKEN")
            or ""
        ),
        github_api_url=(env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
        actions_repository=env.get("CAPTURE_ACTIONS_REPOSITORY") or "",
        actions_ref=env.get("CAPTURE_ACTIONS_REF") or "main",
        actions_workflow=env.get("CAPTURE_ACTIONS_WORKFLOW") or "capture-job.yml",
        actions_workflows=workflows,
    )


def find_home(start: Path) -> Path:
    """JOBSTORE_HOME's default: the nearest `.jobstore` in `start` or a folder above it
    (so scripts run from a subfolder use the project's server), else the checkout this
    code runs from, else `start/.jobstore`."""
    for folder in (start, *start.parents):
        if (folder / ".jobstore").is_dir():
            return folder / ".jobstore"
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "setup.cfg").is_file() and (checkout / "schema").is_dir():
        return checkout / ".jobstore"
    return start / ".jobstore"


def application_name(component: str) -> str:
    """The name a component's own connection shows in pg_stat_activity: the script's
    (PGAPPNAME, which every script sets) and the component, e.g. prcapture-serve/budgets."""
    return f"{os.environ.get('PGAPPNAME') or 'prcapture'}/{component}"[:63]
