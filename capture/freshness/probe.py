"""Batched change probes: one aliased GraphQL query asks up to 100 repositories for the
newest `updatedAt` of their pull requests, for about one point.

A repository is asked for by its node id once one probe has learned it, so a rename or a
transfer is followed (and a new repository that takes an old name is not mistaken for
it); by name before that, which GitHub resolves for renamed repositories too. Either way
the answer says the repository's current name and ids."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from capture.github.client import GitHub
from capture.records import when

FIELDS = (
    "nameWithOwner databaseId id "
    "pullRequests(first: 1, orderBy: {field: UPDATED_AT, direction: DESC}) "
    "{ nodes { number updatedAt } }"
)


@dataclass(frozen=True)
class Asked:
    """One repository to probe: its tracked name, and its node id once known."""

    repository: str
    node_id: str | None = None


@dataclass(frozen=True)
class Probed:
    """What GitHub showed of one repository: the newest pull request update (None: no
    pull requests), its name and ids now, or that it does not know the repository."""

    repository: str
    newest_updated_at: datetime | None
    missing: bool = False
    name: str | None = None  # nameWithOwner, lowercase: differs after a rename or transfer
    repo_id: int | None = None
    node_id: str | None = None
    newest_number: int | None = None  # the pull request updated last

    @property
    def moved(self) -> bool:
        return self.name is not None and self.name != self.repository


def probe_query(repositories: list[Asked | str]) -> tuple[str, dict[str, str]]:
    """One query for many repositories: aliases r0, r1, ... with their node ids or names
    as variables."""
    params, fields, variables = [], [], {}
    for i, asked in enumerate(repositories):
        asked = asked if isinstance(asked, Asked) else Asked(asked)
        if asked.node_id:
            params.append(f"$i{i}: ID!")
            fields.append(f"r{i}: node(id: $i{i}) {{ ... on Repository {{ {FIELDS} }} }}")
            variables[f"i{i}"] = asked.node_id
            continue
        owner, name = asked.repository.split("/")
        params.append(f"$o{i}: String!, $n{i}: String!")
        fields.append(f"r{i}: repository(owner: $o{i}, name: $n{i}) {{ {FIELDS} }}")
        variables |= {f"o{i}": owner, f"n{i}": name}
    text = (
        f"query Probe({', '.join(params)}) {{ rateLimit {{ cost remaining resetAt }} "
        f"{' '.join(fields)} }}"
    )
    return text, variables


def probe(gh: GitHub, repositories: list[Asked | str]) -> list[Probed]:
    """Probes `repositories` (at most 100) in one query."""
    text, variables = probe_query(repositories)
    data, _ = gh.graphql.run(text, variables, missing_ok=True)
    found = []
    for i, asked in enumerate(repositories):
        full_name = asked.repository if isinstance(asked, Asked) else asked
        repo = data.get(f"r{i}")
        if not repo or "pullRequests" not in repo:  # gone, or a node that is not one
            found.append(Probed(full_name, None, missing=True))
            continue
        nodes = repo["pullRequests"]["nodes"]
        found.append(
            Probed(
                full_name,
                when(nodes[0]["updatedAt"]) if nodes else None,
                name=repo["nameWithOwner"].lower(),
                repo_id=repo["databaseId"],
                node_id=repo["id"],
                newest_number=nodes[0]["number"] if nodes else None,
            )
        )
    return found
