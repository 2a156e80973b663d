"""The job store's exception tree; driver exceptions never leave the package."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """An exception's message in one line (a driver's may run to several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class JobStoreError(Exception):
    """The job store failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidSpec(JobStoreError, ValueError):
    """The job specification is invalid."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class JobNotFound(JobStoreError, LookupError):
    """No job has this id."""

    def __init__(self, job_id: object) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id}")


class AmbiguousJobId(JobStoreError, LookupError):
    """A job id prefix matches more than one job."""

    def __init__(self, prefix: str, matches: list[str], more: bool) -> None:
        self.prefix = prefix
        self.matches = matches
        listed = "; ".join(matches) + ("; ..." if more else "")
        super().__init__(f"job id {prefix!r} matches several jobs: {listed}")


class InvalidTransition(JobStoreError):
    """The job cannot take this action in its current state."""

    def __init__(self, job_id: object, status: str, action: str) -> None:
        self.job_id = job_id
        self.status = status
        self.action = action
        super().__init__(f"job {job_id} is {status}: cannot {action}")


class ConfigError(JobStoreError):
    """The configuration is invalid or incomplete."""


class DatabaseUnavailable(JobStoreError):
    """The database cannot be reached or started (wait and try again)."""


class DatabaseReadOnly(DatabaseUnavailable):
    """The database refuses writes (a replica, or a primary being demoted)."""


class DatabaseRefused(JobStoreError):
    """The database refused the work (a constraint, a statement it cannot run): waiting
    will not help."""
