"""The GitHub part: clients and the rate-limit budget, query documents, one handler per job
type, storage of captured rows, and running a job attempt (what every lane runs).

The Inngest function (capture.inngest_function) and the scripts (capture.cli) are imported
from their modules, so importing the library does not load Flask or Inngest.
"""

from capture.attempt import Result, job_runner, run_by_id, run_claimed, run_job
from capture.errors import (
    AccessDenied,
    CaptureError,
    ItemsFailed,
    NetworkError,
    NotFound,
    QueryFailed,
    RateLimited,
    ServerError,
    StorageError,
)
from capture.github.client import GitHub, connect
from capture.handlers import HANDLERS, capable
from capture.querycost import query_cost
from capture.settings import CaptureSettings
from capture.settings import load as load_settings
from capture.storage import Storage
from capture.worker import Wakeup, work

__all__ = [
    "HANDLERS",
    "AccessDenied",
    "CaptureError",
    "CaptureSettings",
    "GitHub",
    "ItemsFailed",
    "NetworkError",
    "NotFound",
    "QueryFailed",
    "RateLimited",
    "Result",
    "ServerError",
    "Storage",
    "StorageError",
    "Wakeup",
    "capable",
    "connect",
    "job_runner",
    "load_settings",
    "query_cost",
    "run_by_id",
    "run_claimed",
    "run_job",
    "work",
]
