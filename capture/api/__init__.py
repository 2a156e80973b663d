"""The HTTP API a web frontend and operators use: requests for captures, a job's state,
history and live progress, a repository's freshness, the dashboard and metrics."""

from capture.api.app import create_app
from capture.api.context import Context
from capture.settings import ApiSettings

__all__ = ["ApiSettings", "Context", "create_app"]
