"""GitHub clients: one session owns transport, rate limits and accounting. Names are
imported when first used (PEP 562): the budget ledger alone loads no GraphQL."""

from __future__ import annotations

import importlib
from typing import Any

EXPORTS = {
    "Budget": "capture.github.session",
    "GitHub": "capture.github.client",
    "GitHubFactory": "capture.github.client",
    "GraphQLClient": "capture.github.graphql",
    "Meter": "capture.github.session",
    "RestClient": "capture.github.rest",
    "Session": "capture.github.session",
    "connect": "capture.github.client",
}

__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in EXPORTS:
        raise AttributeError(f"module 'capture.github' has no attribute {name!r}")
    return getattr(importlib.import_module(EXPORTS[name]), name)
