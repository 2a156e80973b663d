"""Generic job state: an event-sourced job store, its router, lanes and projections.

What users import is named here; modules not named (recorder, heads, embedded) are the
store's internals.
"""

from jobstore.db import database_url, migrate, open_store
from jobstore.dispatcher import Dispatcher, Sent, Submitted
from jobstore.domain import Job, RetryPolicy, Status
from jobstore.errors import (
    ConfigError,
    DatabaseUnavailable,
    InvalidSpec,
    InvalidTransition,
    JobNotFound,
    JobStoreError,
)
from jobstore.prices import LanePrice, load_prices
from jobstore.routing import LANES, HealthConfig, Route, RoutingConfig, decide
from jobstore.secret import Secret
from jobstore.settings import LaneSettings, Settings
from jobstore.settings import load as load_settings
from jobstore.spec import JobSpec
from jobstore.store import Claim, Enqueued, JobStore
from jobstore.sweeper import SweepReport, sweep
from jobstore.views import JobViews, catch_up, open_views

__all__ = [
    "LANES",
    "Claim",
    "ConfigError",
    "DatabaseUnavailable",
    "Dispatcher",
    "Enqueued",
    "HealthConfig",
    "InvalidSpec",
    "InvalidTransition",
    "Job",
    "JobNotFound",
    "JobSpec",
    "JobStore",
    "JobStoreError",
    "JobViews",
    "LanePrice",
    "LaneSettings",
    "RetryPolicy",
    "Route",
    "RoutingConfig",
    "Secret",
    "Sent",
    "Settings",
    "Status",
    "Submitted",
    "SweepReport",
    "catch_up",
    "database_url",
    "decide",
    "load_prices",
    "load_settings",
    "migrate",
    "open_store",
    "open_views",
    "sweep",
]
