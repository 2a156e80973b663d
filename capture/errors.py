"""The capture exception tree. httpx and psycopg errors never leave capture/.

Missing or invalid configuration is jobstore.errors.ConfigError, one class for both packages.
"""

from __future__ import annotations

from datetime import datetime


class CaptureError(Exception):
    """Capturing from GitHub failed."""

    retryable = True

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class RateLimited(CaptureError):
    """The API budget is spent until `reset_at`: reschedule, do not sleep."""

    def __init__(self, reset_at: datetime, message: str = "rate limit reached") -> None:
        self.reset_at = reset_at
        super().__init__(f"{message}; resets at {reset_at.isoformat()}")


class FallbackCapped(RateLimited):
    """REST would spend more than the job may on a fallback: the job pauses until
    `reset_at` (GraphQL may serve it by then) instead of burning the token."""


class NotFound(CaptureError):
    """GitHub answered 404, 410 or 451: the thing is gone or unavailable; do not retry."""

    retryable = False


class AccessDenied(CaptureError):
    """GitHub refused the token (401 or a 403 that is not a rate limit)."""

    retryable = False


class CredentialsRejected(AccessDenied):
    """GitHub answered 401: the token is missing, revoked or expired. Not the job's fault:
    the attempt is released to be retried, and workers stop claiming until it works."""

    retryable = True


class RequestRefused(CaptureError):
    """GitHub refused the request itself (400, 409, 422, ...): retrying it cannot help."""

    retryable = False


class ServerError(CaptureError):
    """GitHub answered 5xx or timed out."""

    def __init__(self, status: int, message: str | None = None) -> None:
        self.status = status
        super().__init__(message or f"GitHub answered HTTP {status}")


class NetworkError(CaptureError):
    """GitHub could not be reached."""


class QueryFailed(CaptureError):
    """GitHub refused or could not answer a GraphQL query (schema, permission, partial)."""


class TooHeavy(QueryFailed):
    """GitHub refused a GraphQL query for its size (node limit, complexity, timeout): a
    smaller shape of the same query is the answer, never leaving GraphQL."""

    def __init__(self, message: str, node_limit: bool = False) -> None:
        self.node_limit = node_limit
        super().__init__(message)


class Incomplete(CaptureError):
    """Some pull requests of a refresh could not be captured: its watermark stays where
    it was, and the next attempt lists them again."""


class ItemsFailed(CaptureError):
    """Every item of the job failed."""

    retryable = False
