"""The GitHub part: clients and the rate-limit budget, query documents, one handler per job
type, storage of captured rows, and running a job attempt (what every lane runs).

The names below are imported when first used (PEP 562), so a script that needs a part
of the library (`bin/jobs freshness`) does not load all of it (GraphQL, the GitHub
clients). The Inngest function (capture.inngest_function) and the scripts (capture.cli)
are imported from their modules.
"""

from __future__ import annotations

import importlib
from typing import Any

EXPORTS = {
    "Result": "capture.attempt",
    "Runner": "capture.attempt",
    "run_claimed": "capture.attempt",
    "run_job": "capture.attempt",
    "AccessDenied": "capture.errors",
    "CaptureError": "capture.errors",
    "ItemsFailed": "capture.errors",
    "NetworkError": "capture.errors",
    "NotFound": "capture.errors",
    "QueryFailed": "capture.errors",
    "RateLimited": "capture.errors",
    "ServerError": "capture.errors",
    "GitHub": "capture.github.client",
    "GitHubFactory": "capture.github.client",
    "connect": "capture.github.client",
    "query_cost": "capture.github.cost",
    "HANDLERS": "capture.handlers",
    "capable": "capture.jobtypes",
    "Intake": "capture.intake",
    "take": "capture.intake",
    "CaptureSettings": "capture.settings",
    "load_settings": "capture.settings:load",
    "Storage": "capture.storage",
    "work": "capture.worker",
}

__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in EXPORTS:
        raise AttributeError(f"module 'capture' has no attribute {name!r}")
    module, _, attribute = EXPORTS[name].partition(":")
    return getattr(importlib.import_module(module), attribute or name)
