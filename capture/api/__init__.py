"""The HTTP API a web frontend and operators use: requests for captures, a job's state,
history and live progress, a repository's freshness, the dashboard and metrics."""

from capture.api.app import ApiSettings, Context, create_app

__all__ = ["ApiSettings", "Context", "create_app"]
