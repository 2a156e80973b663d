"""`bin/jobs`: the read side from jobstore plus `sweep`, which needs the job types' lanes."""

from __future__ import annotations

from capture import sweep_cli  # noqa: F401 - registers `sweep` on the group
from jobstore.jobs_cli import jobs

__all__ = ["jobs"]
