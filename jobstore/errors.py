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


class JobUnreadable(JobStoreError):
    """A job whose events cannot be made into a job (a record a hostile input or a bug
    left): quarantined, so that no worker, sweeper or view stops on it."""

    def __init__(self, job_id: object, error: BaseException | str) -> None:
        self.job_id = job_id
        self.error = error if isinstance(error, str) else describe(error)
        super().__init__(f"job {job_id} cannot be read ({self.error}); see bin/jobs quarantined")


def describe(exc: BaseException) -> str:
    """An exception as its type and the first words of its first line."""
    cause = exc.__cause__ or exc.__context__
    because = f" ({type(cause).__name__})" if cause is not None else ""
    return f"{type(exc).__name__}{because}: {first_line(exc)[:160]}"


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
