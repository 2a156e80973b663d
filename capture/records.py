"""GitHub objects (GraphQL nodes or REST JSON) turned into storage rows; pure, over dicts.

Both paths produce identical rows for the same data, so a capture through REST equals one
through GraphQL. Deleted accounts (GraphQL: null; REST: the `ghost` user) become a null
author and no contributor row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

GHOST_ID = 10137
REST_FILE_STATUS = {
    "added": "ADDED",
    "removed": "DELETED",
    "modified": "MODIFIED",
    "renamed": "RENAMED",
    "copied": "COPIED",
    "changed": "CHANGED",
    "unchanged": "CHANGED",
}


@dataclass
class Rows:
    """Rows for one page of work, written together in one transaction."""

    repositories: list[dict] = field(default_factory=list)
    contributors: dict[int, dict] = field(default_factory=dict)
    pull_requests: list[dict] = field(default_factory=list)
    details: list[dict] = field(default_factory=list)
    reviews: list[dict] = field(default_factory=list)
    comments: list[dict] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    commits: list[dict] = field(default_factory=list)
    complete_files: set[int] = field(default_factory=set)  # PRs whose whole file list is here
    complete_commits: set[int] = field(default_factory=set)
    # (PR, kind) whose whole list of that kind is here: what is stored and not in it was
    # deleted on GitHub (kinds: "reviews", and the comments' kinds "issue" and "review")
    complete_children: set[tuple[int, str]] = field(default_factory=set)
    # seen in what GitHub answered: a comment edited without its pull request moving
    unmoved: str | None = None

    def actor(self, row: dict | None) -> int | None:
        if row is None:
            return None
        self.contributors[row["id"]] = row
        return row["id"]

    def extend(self, other: Rows) -> None:
        for name in (
            "repositories",
            "pull_requests",
            "details",
            "reviews",
            "comments",
            "files",
            "commits",
        ):
            getattr(self, name).extend(getattr(other, name))
        self.contributors.update(other.contributors)
        self.complete_files |= other.complete_files
        self.complete_commits |= other.complete_commits
        self.complete_children |= other.complete_children
        self.unmoved = self.unmoved or other.unmoved

    def __len__(self) -> int:
        return len(self.pull_requests) + len(self.details)

    def is_empty(self) -> bool:
        """Nothing to write at all."""
        lists = (self.repositories, self.pull_requests, self.details, self.reviews)
        more = (self.comments, self.files, self.commits, self.complete_files)
        complete = (self.complete_commits, self.complete_children)
        return not any((*lists, *more, self.contributors, *complete))


def when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def gql_actor(actor: dict | None) -> dict | None:
    if not actor or actor.get("databaseId") is None:
        return None
    return {
        "id": actor["databaseId"],
        "login": actor["login"],
        "kind": actor["__typename"],
        "node_id": actor.get("id"),
    }


def rest_actor(user: dict | None) -> dict | None:
    if not user or user.get("id") == GHOST_ID:
        return None
    return {
        "id": user["id"],
        "login": user["login"],
        "kind": user.get("type", "User"),
        "node_id": user.get("node_id"),
    }


def repository(node: dict) -> dict:
    full = node.get("nameWithOwner") or node["full_name"]
    created = node.get("createdAt") or node.get("created_at")
    return {
        "id": node.get("databaseId") or node["id"],
        "node_id": node.get("node_id", node.get("id")),
        "full_name": full,
        "created_at": when(created),
    }


# GraphQL nodes.


def gql_pull(rows: Rows, node: dict, repository_id: int) -> int:
    """A pull request's core row; without `labels` in the node, the stored labels stay."""
    pr_id = node["databaseId"]
    row = {
        "id": pr_id,
        "node_id": node["id"],
        "repository_id": repository_id,
        "number": node["number"],
        "title": node["title"],
        "body": node["body"] or None,
        "state": node["state"],
        "is_draft": node["isDraft"],
        "author_id": rows.actor(gql_actor(node.get("author"))),
        "created_at": when(node["createdAt"]),
        "updated_at": when(node["updatedAt"]),
        "closed_at": when(node["closedAt"]),
        "merged_at": when(node["mergedAt"]),
        "base_ref": node["baseRefName"],
        "head_ref": node["headRefName"],
        "head_sha": node["headRefOid"],
    }
    if "labels" in node:
        row["labels"] = sorted(label["name"] for label in node["labels"]["nodes"])
    rows.pull_requests.append(row)
    return pr_id


def gql_details(rows: Rows, node: dict) -> None:
    rows.details.append(
        {
            "id": node["databaseId"],
            "merged_by_id": rows.actor(gql_actor(node.get("mergedBy"))),
            "merge_commit_sha": (node.get("mergeCommit") or {}).get("oid"),
            "additions": node["additions"],
            "deletions": node["deletions"],
            "changed_files": node["changedFiles"],
            "commits_count": node["commits"]["totalCount"],
        }
    )


def gql_review(rows: Rows, node: dict, pr_id: int) -> None:
    rows.reviews.append(
        {
            "id": node["databaseId"],
            "pull_request_id": pr_id,
            "author_id": rows.actor(gql_actor(node.get("author"))),
            "state": node["state"],
            "body": node["body"] or None,
            "submitted_at": when(node.get("submittedAt")),
        }
    )


UNMOVED_SLACK = timedelta(minutes=1)


def edited_after(node: dict) -> bool:
    """Whether one answer shows a comment of the pull request updated well after the
    pull request's own updatedAt: GitHub did not move it for that edit."""
    pr_updated = when(node.get("updatedAt"))
    if pr_updated is None:
        return False
    comments = list((node.get("comments") or {}).get("nodes") or [])
    for thread in (node.get("reviewThreads") or {}).get("nodes") or []:
        comments += (thread or {}).get("comments", {}).get("nodes") or []
    return any(
        c and c.get("updatedAt") and when(c["updatedAt"]) > pr_updated + UNMOVED_SLACK
        for c in comments
    )


def gql_comment(rows: Rows, node: dict, pr_id: int, kind: str) -> None:
    reply = (node.get("replyTo") or {}).get("databaseId")
    review = (node.get("pullRequestReview") or {}).get("databaseId")
    rows.comments.append(
        {
            "id": node["databaseId"],
            "pull_request_id": pr_id,
            "kind": kind,
            "author_id": rows.actor(gql_actor(node.get("author"))),
            "body": node["body"] or None,
            "path": node.get("path"),
            "line": node.get("line"),
            "original_line": node.get("originalLine"),
            "in_reply_to_id": reply,
            "review_id": review,
            "created_at": when(node["createdAt"]),
            "updated_at": when(node["updatedAt"]),
        }
    )


def gql_file(rows: Rows, node: dict, pr_id: int) -> None:
    rows.files.append(
        {
            "pull_request_id": pr_id,
            "path": node["path"],
            "additions": node["additions"],
            "deletions": node["deletions"],
            "change_type": node["changeType"],
        }
    )


def gql_commit(rows: Rows, node: dict, pr_id: int) -> None:
    commit = node["commit"]
    author = commit.get("author") or {}
    user = author.get("user")
    rows.commits.append(
        {
            "pull_request_id": pr_id,
            "sha": commit["oid"],
            "message": commit["message"],
            "author_name": author.get("name"),
            "author_email": author.get("email"),
            "author_id": rows.actor(gql_actor({**user, "__typename": "User"}) if user else None),
            "authored_at": when(commit.get("authoredDate")),
            "committed_at": when(commit.get("committedDate")),
        }
    )


# REST objects.


def rest_pull(rows: Rows, pr: dict, repository_id: int) -> int:
    state = "OPEN" if pr["state"] == "open" else "MERGED" if pr.get("merged_at") else "CLOSED"
    rows.pull_requests.append(
        {
            "id": pr["id"],
            "node_id": pr["node_id"],
            "repository_id": repository_id,
            "number": pr["number"],
            "title": pr["title"],
            "body": pr.get("body") or None,
            "state": state,
            "is_draft": bool(pr.get("draft")),
            "author_id": rows.actor(rest_actor(pr.get("user"))),
            "created_at": when(pr["created_at"]),
            "updated_at": when(pr["updated_at"]),
            "closed_at": when(pr.get("closed_at")),
            "merged_at": when(pr.get("merged_at")),
            "base_ref": pr["base"]["ref"],
            "head_ref": pr["head"]["ref"],
            "head_sha": pr["head"]["sha"],
            "labels": sorted(label["name"] for label in pr.get("labels", [])),
        }
    )
    return pr["id"]


def rest_details(rows: Rows, pr: dict) -> None:
    rows.details.append(
        {
            "id": pr["id"],
            "merged_by_id": rows.actor(rest_actor(pr.get("merged_by"))),
            "merge_commit_sha": pr.get("merge_commit_sha") if pr.get("merged_at") else None,
            "additions": pr["additions"],
            "deletions": pr["deletions"],
            "changed_files": pr["changed_files"],
            "commits_count": pr["commits"],
        }
    )


def rest_review(rows: Rows, review: dict, pr_id: int) -> None:
    rows.reviews.append(
        {
            "id": review["id"],
            "pull_request_id": pr_id,
            "author_id": rows.actor(rest_actor(review.get("user"))),
            "state": review["state"],
            "body": review.get("body") or None,
            "submitted_at": when(review.get("submitted_at")),
        }
    )


def rest_comment(rows: Rows, comment: dict, pr_id: int, kind: str) -> None:
    rows.comments.append(
        {
            "id": comment["id"],
            "pull_request_id": pr_id,
            "kind": kind,
            "author_id": rows.actor(rest_actor(comment.get("user"))),
            "body": comment.get("body") or None,
            "path": comment.get("path"),
            "line": comment.get("line"),
            "original_line": comment.get("original_line"),
            "in_reply_to_id": comment.get("in_reply_to_id"),
            "review_id": comment.get("pull_request_review_id"),
            "created_at": when(comment["created_at"]),
            "updated_at": when(comment["updated_at"]),
        }
    )


def rest_file(rows: Rows, item: dict, pr_id: int) -> None:
    rows.files.append(
        {
            "pull_request_id": pr_id,
            "path": item["filename"],
            "additions": item["additions"],
            "deletions": item["deletions"],
            "change_type": REST_FILE_STATUS.get(item["status"], "CHANGED"),
        }
    )


def rest_commit(rows: Rows, item: dict, pr_id: int) -> None:
    commit = item["commit"]
    rows.commits.append(
        {
            "pull_request_id": pr_id,
            "sha": item["sha"],
            "message": commit["message"],
            "author_name": commit["author"]["name"],
            "author_email": commit["author"]["email"],
            "author_id": rows.actor(rest_actor(item.get("author"))),
            "authored_at": when(commit["author"]["date"]),
            "committed_at": when(commit["committer"]["date"]),
        }
    )
