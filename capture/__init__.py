"""The GitHub part: clients and the rate-limit budget, query documents, one handler per job
type, storage of captured rows, and running a job attempt (what every lane runs).

The Inngest function (capture.inngest_function) and the scripts (capture.cli) are imported
from their modules, so importing the library does not load Flask or Inngest.
"""

from capture.attempt import Result, Runner, run_claimed, run_job
from capture.errors import (
    AccessDenied,
    CaptureError,
    ItemsFailed,
    NetworkError,
    NotFound,
    QueryFailed,
    RateLimited,
    ServerError,
)
from capture.github.client import GitHub, GitHubFactory, connect
from capture.github.cost import query_cost
from capture.handlers import HANDLERS, capable
from capture.intake import Intake, take
from capture.settings import CaptureSettings
from capture.settings import load as load_settings
from capture.storage import Storage
from capture.worker import work

__all__ = [
    "HANDLERS",
    "AccessDenied",
    "CaptureError",
    "CaptureSettings",
    "GitHub",
    "GitHubFactory",
    "Intake",
    "ItemsFailed",
    "NetworkError",
    "NotFound",
    "QueryFailed",
    "RateLimited",
    "Result",
    "Runner",
    "ServerError",
    "Storage",
    "capable",
    "connect",
    "load_settings",
    "query_cost",
    "run_claimed",
    "run_job",
    "take",
    "work",
]
