"""Batched change probes: one aliased GraphQL query asks up to 100 repositories for the
newest `updatedAt` of their pull requests, for about one point."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from capture.github.client import GitHub
from capture.records import when


@dataclass(frozen=True)
class Probed:
    """What GitHub showed of one repository: the newest pull request update (None: no
    pull requests), or that it does not know the repository."""

    repository: str
    newest_updated_at: datetime | None
    missing: bool = False


def probe_query(repositories: list[str]) -> tuple[str, dict[str, str]]:
    """One query for many repositories: aliases r0, r1, ... with their names as variables."""
    params, fields, variables = [], [], {}
    for i, full_name in enumerate(repositories):
        owner, name = full_name.split("/")
        params.append(f"$o{i}: String!, $n{i}: String!")
        fields.append(
            f"r{i}: repository(owner: $o{i}, name: $n{i}) {{ nameWithOwner "
            "pullRequests(first: 1, orderBy: {field: UPDATED_AT, direction: DESC}) "
            "{ nodes { updatedAt } } }"
        )
        variables |= {f"o{i}": owner, f"n{i}": name}
    text = (
        f"query Probe({', '.join(params)}) {{ rateLimit {{ cost remaining resetAt }} "
        f"{' '.join(fields)} }}"
    )
    return text, variables


def probe(gh: GitHub, repositories: list[str]) -> list[Probed]:
    """Probes `repositories` (at most 100) in one query."""
    text, variables = probe_query(repositories)
    data, _ = gh.graphql.run(text, variables, missing_ok=True)
    found = []
    for i, full_name in enumerate(repositories):
        repo = data.get(f"r{i}")
        if repo is None:
            found.append(Probed(full_name, None, missing=True))
            continue
        nodes = repo["pullRequests"]["nodes"]
        found.append(Probed(full_name, when(nodes[0]["updatedAt"]) if nodes else None))
    return found
