"""Generic job state: an event-sourced job store, its router, lanes and projections.

The front door: what other packages use is named here (the layout test holds capture to
it); modules not named (recorder, heads, boundary, ...) are the store's internals.
"""

from jobstore import archive, reads, watch
from jobstore.boundary import Patient
from jobstore.db import Database, database_url
from jobstore.dispatcher import STOPPED, Ask, Dispatcher, Sent, Submitted, batchable
from jobstore.domain import FINAL, Job, RetryPolicy, Status
from jobstore.embedded import Server as EmbeddedServer
from jobstore.errors import (
    AmbiguousJobId,
    ConfigError,
    DatabaseReadOnly,
    DatabaseRefused,
    DatabaseUnavailable,
    InvalidSpec,
    InvalidTransition,
    JobNotFound,
    JobStoreError,
    JobUnreadable,
)
from jobstore.lanes.github_actions import plan_matrix
from jobstore.lanes.inngest import EVENT as INNGEST_EVENT
from jobstore.migrations import migrate
from jobstore.prices import LanePrice, load_prices
from jobstore.projection import audit_fields
from jobstore.rollout import Rollout, rollbacks
from jobstore.rollups import BOUNDS as SECONDS_BOUNDS
from jobstore.routing import LANES, HealthSettings, Route, RoutingSettings, decide
from jobstore.secret import Secret, fingerprint
from jobstore.settings import LaneSettings, Settings, application_name, number
from jobstore.settings import load as load_settings
from jobstore.spec import (
    GITHUB_EPOCH,
    MAX_DAYS,
    PRIORITIES,
    TRIGGERS,
    JobSpec,
    parse_repository,
)
from jobstore.store import Claim, Enqueued, JobStore, open_store
from jobstore.sweeper import SweepReport, sweep
from jobstore.views import JobViews, catch_up, open_views, project_forever
from jobstore.wakeup import Hint, Wakeup

__all__ = [
    "FINAL",
    "GITHUB_EPOCH",
    "INNGEST_EVENT",
    "LANES",
    "MAX_DAYS",
    "PRIORITIES",
    "SECONDS_BOUNDS",
    "STOPPED",
    "TRIGGERS",
    "AmbiguousJobId",
    "Ask",
    "Claim",
    "ConfigError",
    "Database",
    "DatabaseReadOnly",
    "DatabaseRefused",
    "DatabaseUnavailable",
    "Dispatcher",
    "EmbeddedServer",
    "Enqueued",
    "HealthSettings",
    "Hint",
    "InvalidSpec",
    "InvalidTransition",
    "Job",
    "JobNotFound",
    "JobSpec",
    "JobStore",
    "JobStoreError",
    "JobUnreadable",
    "JobViews",
    "LanePrice",
    "LaneSettings",
    "Patient",
    "RetryPolicy",
    "Rollout",
    "Route",
    "RoutingSettings",
    "Secret",
    "Sent",
    "Settings",
    "Status",
    "Submitted",
    "SweepReport",
    "Wakeup",
    "application_name",
    "archive",
    "audit_fields",
    "batchable",
    "catch_up",
    "database_url",
    "decide",
    "fingerprint",
    "load_prices",
    "load_settings",
    "migrate",
    "number",
    "open_store",
    "open_views",
    "parse_repository",
    "plan_matrix",
    "project_forever",
    "reads",
    "rollbacks",
    "sweep",
    "watch",
]
