"""The rows a complete capture must produce, built straight from the sandbox's world."""

from __future__ import annotations

import psycopg

from devtools.sandbox.data import Account, World


def _author(account: Account | None) -> int | None:
    return account.database_id if account else None


def expected(world: World, repository: str) -> dict[str, set[tuple]]:
    repo = world.repository(repository)
    pulls, reviews, comments, files, commits, people = set(), set(), set(), set(), set(), set()

    def person(account: Account | None) -> None:
        if account is not None:
            people.add((account.database_id, account.login, account.kind))

    for pr in repo.pulls.values():
        person(pr.author)
        person(pr.merged_by)
        pulls.add(
            (
                pr.database_id,
                pr.number,
                pr.title,
                pr.body or None,
                pr.state,
                pr.is_draft,
                _author(pr.author),
                pr.created_at,
                pr.updated_at,
                pr.closed_at,
                pr.merged_at,
                tuple(sorted(lab[1] for lab in pr.labels)),
                _author(pr.merged_by),
                pr.merge_commit_oid,
                pr.additions,
                pr.deletions,
                len(pr.files),
                len(pr.commits),
            )
        )
        for r in pr.reviews:
            person(r.author)
            reviews.add(
                (
                    r.database_id,
                    pr.database_id,
                    _author(r.author),
                    r.state,
                    r.body or None,
                    r.submitted_at,
                )
            )
        for c in pr.comments:
            person(c.author)
            comments.add(
                (
                    c.database_id,
                    pr.database_id,
                    "issue",
                    _author(c.author),
                    c.body,
                    None,
                    None,
                    None,
                    None,
                    None,
                )
            )
        for c in pr.review_comments:
            person(c.author)
            comments.add(
                (
                    c.database_id,
                    pr.database_id,
                    "review",
                    _author(c.author),
                    c.body,
                    c.path,
                    c.line,
                    c.original_line,
                    c.reply_to,
                    c.review_id,
                )
            )
        for f in pr.files:
            files.add((pr.database_id, f.path, f.additions, f.deletions, f.change_type))
        for c in pr.commits:
            user = c.author if c.author and c.author.kind == "User" else None
            person(user)
            commits.add(
                (
                    pr.database_id,
                    c.oid,
                    c.message,
                    c.author_name,
                    c.author_email,
                    _author(user),
                    c.authored_at,
                    c.committed_at,
                )
            )
    return {
        "pull_requests": pulls,
        "reviews": reviews,
        "comments": comments,
        "pr_files": files,
        "commits": commits,
        "contributors": people,
    }


QUERIES = {
    "pull_requests": "SELECT id, number, title, body, state, is_draft, author_id, created_at, "
    "updated_at, closed_at, merged_at, labels, merged_by_id, merge_commit_sha, additions, "
    "deletions, changed_files, commits_count FROM pull_requests",
    "reviews": "SELECT id, pull_request_id, author_id, state, body, submitted_at FROM reviews "
    "WHERE deleted_at IS NULL",
    "comments": "SELECT id, pull_request_id, kind, author_id, body, path, line, original_line, "
    "in_reply_to_id, review_id FROM comments WHERE deleted_at IS NULL",
    "pr_files": "SELECT pull_request_id, path, additions, deletions, change_type FROM pr_files",
    "commits": "SELECT pull_request_id, sha, message, author_name, author_email, author_id, "
    "authored_at, committed_at FROM commits",
    "contributors": "SELECT id, login, kind FROM contributors",
}


def stored(url: str) -> dict[str, set[tuple]]:
    with psycopg.connect(url) as conn:
        result = {}
        for table, query in QUERIES.items():
            rows = conn.execute(query).fetchall()
            result[table] = {
                tuple(tuple(v) if isinstance(v, list) else v for v in row) for row in rows
            }
    return result


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in QUERIES}
