"""Renamed users: a login renamed on GitHub moves no pull request, so known contributors
are re-read by node id (`nodes(ids:)`, 100 a query, about a point) on a slow cadence,
oldest check first. A deleted account answers null: its row is left as stored (GitHub
shows its content as the ghost user, which later captures store as no author)."""

from __future__ import annotations

from datetime import datetime, timedelta

from capture.freshness.registry import Registry
from capture.github.client import GitHub

PER_QUERY = 100


def recheck(
    registry: Registry, gh: GitHub, now: datetime, every: timedelta, queries: int
) -> tuple[int, int]:
    """Up to `queries` queries of contributors last checked before `now` minus `every`;
    returns (checked, renamed)."""
    due = registry.contributors_due(now - every, queries * PER_QUERY)
    checked = renamed = 0
    for start in range(0, len(due), PER_QUERY):
        chunk = due[start : start + PER_QUERY]
        data, _ = gh.graphql.query("ContributorLogins", {"ids": [c["node_id"] for c in chunk]})
        logins = {
            node["databaseId"]: node["login"]
            for node in data.get("nodes") or []
            if node and node.get("databaseId") is not None and node.get("login")
        }
        renamed += registry.contributors_checked([c["id"] for c in chunk], logins, now)
        checked += len(chunk)
    return checked, renamed
