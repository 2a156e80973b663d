"""Captured rows into PostgreSQL: the only capture module that writes SQL.

Each `write` is one transaction; rows are upserted by GitHub's ids, so writing the same
page twice changes nothing.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from capture.records import Rows
from jobstore import Database

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
REMEMBERED = 10_000  # repository rows a process remembers having stored

PR_CORE = (
    "id",
    "node_id",
    "repository_id",
    "number",
    "title",
    "body",
    "state",
    "is_draft",
    "author_id",
    "created_at",
    "updated_at",
    "closed_at",
    "merged_at",
    "base_ref",
    "head_ref",
    "head_sha",
    "labels",
)
DETAILS = (
    "merged_by_id",
    "merge_commit_sha",
    "additions",
    "deletions",
    "changed_files",
    "commits_count",
)
TABLES = {
    # name_stale_at is never given: a repository stored is live under its name again
    "repositories": (("id", "node_id", "full_name", "created_at", "name_stale_at"), ("id",)),
    "contributors": (("id", "login", "kind", "node_id"), ("id",)),
    "pull_requests": (PR_CORE, ("id",)),
    "reviews": (("id", "pull_request_id", "author_id", "state", "body", "submitted_at"), ("id",)),
    "comments": (
        (
            "id",
            "pull_request_id",
            "kind",
            "author_id",
            "body",
            "path",
            "line",
            "original_line",
            "in_reply_to_id",
            "review_id",
            "created_at",
            "updated_at",
        ),
        ("id",),
    ),
    "pr_files": (
        ("pull_request_id", "path", "additions", "deletions", "change_type"),
        ("pull_request_id", "path"),
    ),
    "commits": (
        (
            "pull_request_id",
            "sha",
            "message",
            "author_name",
            "author_email",
            "author_id",
            "authored_at",
            "committed_at",
        ),
        ("pull_request_id", "sha"),
    ),
}


@cache
def upsert(table: str, skip: tuple[str, ...] = ()) -> str:
    """One statement upserting every row of a batch of `table` (given as one JSON array:
    the statement is the same whatever the batch's size), leaving the `skip` columns as
    stored and rows that did not change untouched. Made once per table."""
    columns, key = TABLES[table]
    columns = tuple(c for c in columns if c not in skip)
    others = [c for c in columns if c not in key]
    cols = ", ".join(columns)
    changed = " OR ".join(f"{table}.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in others)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in others)
    touch = ", updated_at = now()" if table == "contributors" else ""
    if table == "contributors":  # a commit's author comes without its node id: kept
        kept = "node_id = COALESCE(EXCLUDED.node_id, contributors.node_id)"
        sets = sets.replace("node_id = EXCLUDED.node_id", kept)
        changed = changed.replace(
            "contributors.node_id IS DISTINCT FROM EXCLUDED.node_id",
            "(EXCLUDED.node_id IS NOT NULL AND contributors.node_id IS DISTINCT FROM "
            "EXCLUDED.node_id)",
        )
    if table in MARKED:  # seen again: live again (a capture that raced the deletion's)
        touch, changed = ", deleted_at = NULL", f"{changed} OR {table}.deleted_at IS NOT NULL"
    return (
        f"INSERT INTO {table} ({cols}) SELECT {cols} FROM "
        f"jsonb_populate_recordset(NULL::{table}, %s) ON CONFLICT ({', '.join(key)}) "
        f"DO UPDATE SET {sets}{touch} WHERE {changed}"
    )


# Pull requests updated since a time, most recently updated first (by the index on
# repository_id, updated_at).
RECENTLY_ACTIVE = (
    "SELECT p.number FROM pull_requests p "
    "WHERE p.repository_id = (SELECT id FROM repositories WHERE lower(full_name) = "
    "lower(%s) AND name_stale_at IS NULL) "
    "AND p.updated_at >= %s AND p.details_at IS NOT NULL ORDER BY p.updated_at DESC LIMIT %s"
)
# github_behaviour: a comment edited (created, deleted) without its pull request moving
EDITS_MOVE_NOTHING = "edits-move-nothing"
# GitHub gives a renamed repository's old name to a new one that takes it: the row that
# held the name keeps it, marked stale, until its own new name is seen (the planner's
# probe by node id, or a capture of it).
STALE_NAMES = (
    "UPDATE repositories r SET name_stale_at = now() WHERE lower(r.full_name) = ANY(%(names)s) "
    "AND r.name_stale_at IS NULL AND r.id <> ALL(%(ids)s)"
)
UPDATE_DETAILS = (
    "UPDATE pull_requests p SET "
    + ", ".join(f"{c} = d.{c}" for c in DETAILS)
    + ", details_at = COALESCE(p.details_at, now()) "
    "FROM jsonb_populate_recordset(NULL::pull_requests, %s) d WHERE p.id = d.id AND ("
    + " OR ".join(f"p.{c} IS DISTINCT FROM d.{c}" for c in DETAILS)
    + " OR p.details_at IS NULL)"
)


def as_json(rows: list[dict]) -> Jsonb:
    return Jsonb(rows, dumps=dumps)


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_value, separators=(",", ":"))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


# A pull request's reviews, or comments of one kind, whose whole list was fetched: those
# stored and not in it were deleted on GitHub (seen gone now; kept, marked).
MARKED = ("reviews", "comments")
MARK_GONE = {
    "reviews": "UPDATE reviews SET deleted_at = now() FROM unnest(%s::bigint[]) AS whole(pr) "
    "WHERE reviews.pull_request_id = whole.pr AND reviews.deleted_at IS NULL "
    "AND NOT (reviews.id = ANY(%s::bigint[]))",
    "comments": "UPDATE comments SET deleted_at = now() "
    "FROM unnest(%s::bigint[], %s::text[]) AS whole(pr, kind) "
    "WHERE comments.pull_request_id = whole.pr AND comments.kind = whole.kind "
    "AND comments.deleted_at IS NULL AND NOT (comments.id = ANY(%s::bigint[]))",
}
DELETE_ALL = {
    table: f"DELETE FROM {table} WHERE pull_request_id = ANY(%s)"
    for table in ("pr_files", "commits")
}
PULLS_OF = (
    "SELECT p.number, p.node_id FROM pull_requests p "
    "JOIN repositories r ON r.id = p.repository_id WHERE lower(r.full_name) = lower(%s) "
    "AND r.name_stale_at IS NULL"
)


def in_key_order(table: str, items: list[dict]) -> list[dict]:
    """Rows sorted by their table's key, one per key (the last given): every writer locks
    rows in the same order, and one statement never touches a row twice."""
    key = TABLES[table][1]
    unique = {tuple(row[k] for k in key): row for row in items}
    return [unique[k] for k in sorted(unique, key=lambda k: tuple(map(str, k)))]


class Storage:
    """Writes captured rows and answers the few questions handlers ask of stored data."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Repository rows this process stored, as stored: a job that lists pull requests
        # writes its repository's row only when it changed (a refresh finding nothing new
        # then writes nothing but its watermark).
        self._repositories: dict[int, dict] = {}
        self._seen: set[str] = set()  # behaviours this process recorded

    def write(self, rows: Rows, watermark: tuple[str, datetime] | None = None) -> None:
        """Everything in `rows` (and the watermark) in one transaction.

        Rows are written in key order, so concurrent jobs writing the same contributors
        or pull requests take their row locks in the same order and do not deadlock;
        a deadlock or serialisation failure that still happens is retried.
        """

        if rows.unmoved is not None:  # GitHub's behaviour, seen in what it answered
            self.saw(EDITS_MOVE_NOTHING, rows.unmoved)
        rows = self._unknown(rows)
        if rows.is_empty() and watermark is None:
            return

        def work(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                self._write(cur, rows, watermark)

        self.db.run(work, durable=False)  # made durable by the job's next event
        self._remember(rows)

    def write_rows(self, cur: Any, rows: Rows) -> None:
        """`rows` within a transaction the caller holds (with rows of its own)."""
        rows = self._unknown(rows)
        if not rows.is_empty():
            self._write(cur, rows, None)

    def _unknown(self, rows: Rows) -> Rows:
        """`rows` without the repository rows this process stored as they are."""
        known = [r for r in rows.repositories if self._repositories.get(r["id"]) == r]
        if not known:
            return rows
        return replace(rows, repositories=[r for r in rows.repositories if r not in known])

    def _remember(self, rows: Rows) -> None:
        if len(self._repositories) > REMEMBERED:
            self._repositories.clear()
        self._repositories.update((r["id"], r) for r in rows.repositories)

    def _write(self, cur: Any, rows: Rows, watermark: tuple[str, datetime] | None) -> None:
        batches = [
            ("repositories", rows.repositories),
            ("contributors", list(rows.contributors.values())),
        ]
        if rows.repositories:  # a name another repository held: that one's is stale now
            cur.execute(
                STALE_NAMES,
                {
                    "names": sorted({r["full_name"].lower() for r in rows.repositories}),
                    "ids": sorted({r["id"] for r in rows.repositories}),
                },
            )
        for table, items in batches:
            if items:
                cur.execute(upsert(table), (as_json(in_key_order(table, items)),))
        labelled = [p for p in rows.pull_requests if "labels" in p]
        unlabelled = [p for p in rows.pull_requests if "labels" not in p]  # labels kept
        for items, skip in ((labelled, ()), (unlabelled, ("labels",))):
            if items:
                ordered = in_key_order("pull_requests", items)
                cur.execute(upsert("pull_requests", skip), (as_json(ordered),))
        if rows.details:
            details = sorted(rows.details, key=lambda d: d["id"])
            cur.execute(UPDATE_DETAILS, (as_json(details),))
        for table, ids in (("pr_files", rows.complete_files), ("commits", rows.complete_commits)):
            if ids:  # the whole list is here: what GitHub no longer lists goes
                cur.execute(DELETE_ALL[table], (sorted(ids),))
        for table, items in (
            ("reviews", rows.reviews),
            ("comments", rows.comments),
            ("pr_files", rows.files),
            ("commits", rows.commits),
        ):
            if items:
                cur.execute(upsert(table), (as_json(in_key_order(table, items)),))
        self._mark_gone(cur, rows)
        if watermark is not None:
            cur.execute(
                "INSERT INTO sync_watermarks (repository, updated_at) VALUES (%s, %s) "
                "ON CONFLICT (repository) DO UPDATE SET updated_at = GREATEST("
                "sync_watermarks.updated_at, EXCLUDED.updated_at), advanced_at = now()",
                watermark,
            )

    @staticmethod
    def _mark_gone(cur: Any, rows: Rows) -> None:
        """Marks what the whole lists in `rows` no longer show (in PR order, as written)."""
        whole = sorted(rows.complete_children)
        reviewed = [pr for pr, kind in whole if kind == "reviews"]
        if reviewed:
            kept = [r["id"] for r in rows.reviews]
            cur.execute(MARK_GONE["reviews"], (reviewed, kept))
        commented = [(pr, kind) for pr, kind in whole if kind != "reviews"]
        if commented:
            kept = [c["id"] for c in rows.comments]
            prs, kinds = [pr for pr, _ in commented], [kind for _, kind in commented]
            cur.execute(MARK_GONE["comments"], (prs, kinds, kept))

    def _rows(self, query: str, params: Any = ()) -> list[dict]:
        return self.db.rows(query, params)

    def repository_id(self, repository: str) -> int | None:
        rows = self._rows(
            "SELECT id FROM repositories WHERE lower(full_name) = lower(%s) "
            "AND name_stale_at IS NULL",
            (repository,),
        )
        return rows[0]["id"] if rows else None

    def watermark(self, repository: str) -> datetime | None:
        rows = self._rows(
            "SELECT updated_at FROM sync_watermarks WHERE repository = lower(%s)", (repository,)
        )
        return rows[0]["updated_at"] if rows else None

    def node_ids(self, repository: str, numbers: list[int]) -> dict[int, str]:
        rows = self._rows(
            f"{PULLS_OF} AND p.number = ANY(%s)",
            (repository, numbers),
        )
        return {r["number"]: r["node_id"] for r in rows}

    def pulls_in_window(
        self, repository: str, since: datetime, until: datetime, missing_details: bool = False
    ) -> dict[int, str]:
        rows = self._rows(
            f"{PULLS_OF} AND p.created_at >= %s AND p.created_at < %s "
            + ("AND p.details_at IS NULL " if missing_details else "")
            + "ORDER BY p.number",
            (repository, since, until),
        )
        return {r["number"]: r["node_id"] for r in rows}

    def refresh_watermarks(self, repository: str) -> tuple[datetime | None, datetime | None]:
        """The refresh watermark, and the comment listings' (None: not yet)."""
        rows = self._rows(
            "SELECT updated_at, comments_at FROM refresh_watermarks WHERE repository = lower(%s)",
            (repository,),
        )
        return (rows[0]["updated_at"], rows[0]["comments_at"]) if rows else (None, None)

    def saw(self, behaviour: str, detail: str) -> None:
        """GitHub behaved this way (see github_behaviour): recorded once, first seen kept."""
        if behaviour in self._seen:
            return
        self._rows(
            "INSERT INTO github_behaviour (name, seen_at, detail) VALUES (%s, now(), %s) "
            "ON CONFLICT (name) DO NOTHING RETURNING name",
            (behaviour, detail[:500]),
        )
        self._seen.add(behaviour)

    def recently_active(self, repository: str, since: datetime, limit: int) -> list[int]:
        """The numbers of the repository's pull requests updated at or after `since` (a
        comment stored then counts: a refresh stores the pull request it is on): the most
        recent `limit`."""
        rows = self._rows(RECENTLY_ACTIVE, (repository, since, limit))
        return sorted(r["number"] for r in rows)

    def refreshed(
        self,
        repository: str,
        newest: datetime | None,
        listed_at: datetime,
        rows: Rows | None = None,
        comments_at: datetime | None = None,
    ) -> None:
        """A whole refresh is stored: its watermark (the newest updatedAt it captured)
        advances, and the repository is fresh as of when its listing began. Written after
        the last pull request, so never ahead of stored data. `comments_at`: every comment
        created or edited before it is stored (the repository-level listings said)."""
        name = repository.lower()
        newest = newest or EPOCH  # no pull requests yet: any first one is a change

        params = {"name": name, "newest": newest, "listed_at": listed_at, "comments": comments_at}
        rows = self._unknown(rows) if rows is not None else None

        def work(conn: psycopg.Connection) -> None:
            if rows is not None and not rows.is_empty():  # what the listing showed
                with conn.cursor() as cur:
                    self._write(cur, rows, None)
            conn.execute(REFRESHED, params)

        self.db.run(work, durable=False)  # made durable by the job's ending event
        if rows is not None:
            self._remember(rows)

    def observed(self, repository: str, limit: int = 500) -> dict[str, Counter]:
        """How long each connection of the repository's most recently captured pull
        requests was (a histogram per kind), for the query planner's first shape."""
        rows = self._rows(OBSERVED, (repository, limit))
        found: dict[str, Counter] = {kind: Counter() for kind in OBSERVED_KINDS}
        for row in rows:
            for kind in OBSERVED_KINDS[:-1]:
                found[kind][row[kind]] += 1
            for length in row["thread_comments"] or ():
                found["thread_comments"][length] += 1
        return found

    def etag_cache(self) -> StoredEtags:
        return StoredEtags(self)


class StoredEtags:
    """REST answers' ETags and bodies in `rest_etags`, shared by every job and process."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, credential: str, key: str) -> tuple[str, Any, str | None] | None:
        rows = self.storage._rows(
            "SELECT etag, body, link FROM rest_etags WHERE credential = %s AND url = %s",
            (credential, key),
        )
        return (rows[0]["etag"], rows[0]["body"], rows[0]["link"]) if rows else None

    def put(self, credential: str, key: str, etag: str, body: Any, link: str | None) -> None:
        self.storage.db.execute(
            "INSERT INTO rest_etags (credential, url, etag, body, link) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (credential, url) DO UPDATE SET "
            "etag = EXCLUDED.etag, body = EXCLUDED.body, link = EXCLUDED.link, "
            "stored_at = now()",
            (credential, key, etag, Jsonb(body), link),
        )


# One statement (the rows commit together): the watermark, the fresh-as-of time and the
# last success, and (if it is tracked) when the planner next needs to probe it.
REFRESHED = """
WITH watermark AS (
    INSERT INTO refresh_watermarks (repository, updated_at, comments_at)
    VALUES (%(name)s, %(newest)s, %(comments)s)
    ON CONFLICT (repository) DO UPDATE SET advanced_at = now(),
        updated_at = GREATEST(refresh_watermarks.updated_at, EXCLUDED.updated_at),
        comments_at = GREATEST(refresh_watermarks.comments_at, EXCLUDED.comments_at)
), known AS (  -- GitHub's ids, from the row the refresh stored under this name
    SELECT r.id, r.node_id FROM repositories r
    WHERE lower(r.full_name) = %(name)s AND r.name_stale_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM tracked_repositories o WHERE o.repo_id = r.id)
), due AS (
    UPDATE tracked_repositories t SET next_due = %(listed_at)s
        + freshness_after(t.tier, t.promoted_until, %(listed_at)s, 'probe'),
        repo_id = COALESCE(t.repo_id, (SELECT id FROM known)),
        node_id = COALESCE(t.node_id, (SELECT node_id FROM known))
    WHERE t.repository = %(name)s
)
INSERT INTO repo_probes (repository, fresh_as_of, last_success)
VALUES (%(name)s, %(listed_at)s, now())
ON CONFLICT (repository) DO UPDATE SET last_success = now(),
    fresh_as_of = GREATEST(repo_probes.fresh_as_of, EXCLUDED.fresh_as_of)
"""
OBSERVED_KINDS = ("files", "commits", "reviews", "comments", "threads", "thread_comments")
# The connection lengths of the repository's most recently updated pull requests captured
# whole: each kind counted in one grouped pass over the index on pull_request_id.
OBSERVED = """
WITH p AS (
    SELECT p.id FROM pull_requests p
    WHERE p.repository_id = (SELECT id FROM repositories
                             WHERE lower(full_name) = lower(%s) AND name_stale_at IS NULL)
      AND p.details_at IS NOT NULL
    ORDER BY p.updated_at DESC LIMIT %s),
f AS (SELECT pull_request_id AS id, count(*) AS n FROM pr_files
      WHERE pull_request_id IN (SELECT id FROM p) GROUP BY 1),
c AS (SELECT pull_request_id AS id, count(*) AS n FROM commits
      WHERE pull_request_id IN (SELECT id FROM p) GROUP BY 1),
v AS (SELECT pull_request_id AS id, count(*) AS n FROM reviews
      WHERE pull_request_id IN (SELECT id FROM p) AND deleted_at IS NULL GROUP BY 1),
k AS (SELECT pull_request_id AS id, kind, in_reply_to_id, coalesce(in_reply_to_id, id) AS thread
      FROM comments WHERE pull_request_id IN (SELECT id FROM p) AND deleted_at IS NULL),
t AS (SELECT id, count(*) FILTER (WHERE kind = 'issue') AS comments,
             count(*) FILTER (WHERE kind = 'review' AND in_reply_to_id IS NULL) AS threads
      FROM k GROUP BY id),
tc AS (SELECT id, array_agg(n) AS thread_comments
       FROM (SELECT id, thread, count(*) AS n FROM k WHERE kind = 'review'
             GROUP BY id, thread) x GROUP BY id)
SELECT coalesce(f.n, 0) AS files, coalesce(c.n, 0) AS commits, coalesce(v.n, 0) AS reviews,
       coalesce(t.comments, 0) AS comments, coalesce(t.threads, 0) AS threads,
       tc.thread_comments
FROM p LEFT JOIN f USING (id) LEFT JOIN c USING (id) LEFT JOIN v USING (id)
LEFT JOIN t USING (id) LEFT JOIN tc USING (id)
"""
