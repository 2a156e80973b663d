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
from capture.github.graphql import fragments, used_only
from capture.records import when

FIELDS = (
    "nameWithOwner databaseId id "
    "pullRequests(first: 1, orderBy: {field: UPDATED_AT, direction: DESC}) "
    "{ totalCount nodes { number updatedAt } }"
)


# Pull requests whose files, commits and labels ride a probe query (webhooks: a new or
# pushed pull request's details, which no payload carries): within a point's rounding.
RIDING = (
    "pulls: nodes(ids: $pulls) { ... on PullRequest { ...PullRequestCore "
    "...PullRequestLabels ...PullRequestDetails } }"
)
RIDING_PAGES = {"labelPage": 10, "filePage": 100, "commitPage": 100}


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
    pull_requests: int | None = None  # how many it has (its size, for routing)

    @property
    def moved(self) -> bool:
        return self.name is not None and self.name != self.repository


def probe_query(
    repositories: list[Asked | str], pulls: list[str] | None = None
) -> tuple[str, dict]:
    """One query for many repositories: aliases r0, r1, ... with their node ids or names
    as variables; with `pulls` (node ids), their details too (field `pulls`)."""
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
    if pulls:
        params.append("$pulls: [ID!]!")
        params += [f"${name}: Int!" for name in RIDING_PAGES]
        fields.append(RIDING)
        variables |= {"pulls": list(pulls), **RIDING_PAGES}
    text = (
        f"query Probe({', '.join(params)}) {{ rateLimit {{ cost remaining resetAt }} "
        f"{' '.join(fields)} }}"
    )
    if pulls:
        text = used_only(f"{text}\n{fragments()}")
    return text, variables


def probe(gh: GitHub, repositories: list[Asked | str]) -> list[Probed]:
    """Probes `repositories` (at most 100) in one query."""
    return probe_with(gh, repositories)[0]


def probe_with(
    gh: GitHub, repositories: list[Asked | str], pulls: list[str] | None = None
) -> tuple[list[Probed], list[dict | None]]:
    """Probes `repositories` (at most 100) in one query that carries `pulls` (node ids)
    too: what it showed of each repository, and each pull request's node (None: not
    shown)."""
    text, variables = probe_query(repositories, pulls)
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
                pull_requests=repo["pullRequests"].get("totalCount"),
            )
        )
    shown = data.get("pulls") or []
    details = [shown[i] if i < len(shown) else None for i in range(len(pulls or ()))]
    return found, [d if isinstance(d, dict) and d.get("number") else None for d in details]
