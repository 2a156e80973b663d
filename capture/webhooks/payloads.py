"""What a delivery's payload means for the stored data, pure: the rows it carries whole
(stored without an API call), the comments it says were deleted, and the pull requests
whose children it does not carry (files and commits after opened, reopened or
synchronize: a targeted refresh fetches them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from capture import records
from capture.records import Rows, when

# Pull request actions after which its files or commits may have changed.
CHILDREN_CHANGED = frozenset({"opened", "reopened", "synchronize"})
# Handled by the planner (tracking and the repositories' lifecycle), not by a repository.
PLANNER_EVENTS = frozenset({"installation", "installation_repositories", "repository"})
# The events that change pull request data (the rest are stored and marked processed).
PULL_EVENTS = frozenset(
    {
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_thread",
        "issue_comment",
    }
)


class Unusable(ValueError):
    """A payload without what its event must carry (quarantined, never retried)."""


@dataclass
class Effect:
    """What a batch of deliveries does: rows to store (guarded by `updated_at`), comments
    deleted (id -> the delivery's time), pull requests to refresh, and deliveries that
    changed nothing we keep (with why)."""

    rows: Rows = field(default_factory=Rows)
    deleted: dict[int, dict] = field(default_factory=dict)
    refresh: set[int] = field(default_factory=set)
    notes: dict[str, str] = field(default_factory=dict)
    # pull request number -> GitHub's updated_at for it, told by a delivery that does not
    # carry it whole (an issue comment's issue)
    seen: dict[int, datetime] = field(default_factory=dict)


def _need(payload: dict, *path: str) -> Any:
    value: Any = payload
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise Unusable(f"the payload has no {'.'.join(path)}")
        value = value[key]
    return value


def repository_row(payload: dict) -> dict:
    repo = _need(payload, "repository")
    for key in ("id", "node_id", "full_name", "created_at"):
        _need(repo, key)
    created = repo["created_at"]
    if isinstance(created, int):  # push-style payloads give a Unix time
        created = datetime.fromtimestamp(created).astimezone().isoformat()
    return records.repository({**repo, "created_at": created})


def apply(effect: Effect, delivery_id: str, event: str, action: str | None, payload: dict) -> None:
    """Adds one delivery's meaning to `effect`; raises Unusable for a payload that lacks
    what its event carries."""
    if event not in PULL_EVENTS:
        effect.notes[delivery_id] = f"{event}: nothing stored from it"
        return
    repo = repository_row(payload)
    effect.rows.repositories.append(repo)
    if event == "issue_comment":
        if "pull_request" not in _need(payload, "issue"):
            effect.notes[delivery_id] = "a comment on an issue, not a pull request"
            return
        number = _need(payload, "issue", "number")
        _comment(effect, payload, None, "issue", action, number)
        seen = _time(payload["issue"].get("updated_at"))
        if seen is not None and (number not in effect.seen or seen > effect.seen[number]):
            effect.seen[number] = seen
        return
    pr = _need(payload, "pull_request")
    for key in ("id", "number", "updated_at"):
        _need(pr, key)
    # every pull request event carries the pull request (stored if newer than what is)
    _pull(effect.rows, pr, repo["id"])
    if event == "pull_request":
        if action in CHILDREN_CHANGED:
            effect.refresh.add(pr["number"])
    elif event == "pull_request_review":
        review = _need(payload, "review")
        _need(review, "id")
        _need(review, "state")
        records.rest_review(effect.rows, {**review, "state": review["state"].upper()}, pr["id"])
    elif event == "pull_request_review_comment":
        _comment(effect, payload, pr["id"], "review", action, pr["number"])
    else:  # pull_request_review_thread: resolution is not stored; the comments are
        effect.notes[delivery_id] = "a thread resolved or unresolved: nothing stored from it"


def _time(value: Any) -> datetime | None:
    """GitHub's ISO 8601 time, or None for anything else."""
    try:
        return when(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _pull(rows: Rows, pr: dict, repository_id: int) -> None:
    try:
        records.rest_pull(rows, pr, repository_id)
    except (KeyError, TypeError) as exc:
        raise Unusable(f"the pull request has no {exc}") from None
    if all(key in pr for key in ("additions", "deletions", "changed_files", "commits")):
        records.rest_details(rows, pr)
        rows.details[-1]["updated_at"] = when(pr["updated_at"])


def _comment(
    effect: Effect,
    payload: dict,
    pr_id: int | None,
    kind: str,
    action: str | None,
    number: int | None = None,
) -> None:
    """A comment, stored or deleted; an issue comment's pull request is known by its
    number only (the issue's id is not the pull request's): looked up when stored."""
    comment = _need(payload, "comment")
    for key in ("id", "created_at", "updated_at"):
        _need(comment, key)
    rows = Rows()
    try:
        records.rest_comment(rows, comment, pr_id or 0, kind)
    except (KeyError, TypeError) as exc:
        raise Unusable(f"the comment has no {exc}") from None
    row = rows.comments[0]
    row["number"] = number
    if pr_id is None:
        row["pull_request_id"] = None
    effect.rows.contributors.update(rows.contributors)
    if action == "deleted":
        effect.deleted[row["id"]] = row
        return
    effect.rows.comments.append(row)


def newest(rows: list[dict], key: str = "updated_at") -> list[dict]:
    """One row per id: the one with the newest `key` (a later delivery of an older
    version loses; equal times, or no time: the later delivery)."""
    best: dict[Any, dict] = {}
    for row in rows:
        held = best.get(row["id"])
        if held is None or held[key] is None or row[key] is None or row[key] >= held[key]:
            best[row["id"]] = row
    return list(best.values())
