"""Captured rows into PostgreSQL: the only capture module that writes SQL.

Each `write` is one transaction; rows are upserted by GitHub's ids, so writing the same
page twice changes nothing.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from capture.records import Rows
from jobstore import Database

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

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
    "repositories": (("id", "node_id", "full_name", "created_at"), ("id",)),
    "contributors": (("id", "login", "kind"), ("id",)),
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


def upsert(table: str, skip: tuple[str, ...] = ()) -> sql.Composed:
    """INSERT ... ON CONFLICT DO UPDATE for `table`, leaving the `skip` columns as stored."""
    columns, key = TABLES[table]
    columns = tuple(c for c in columns if c not in skip)
    others = [c for c in columns if c not in key]
    changed = sql.SQL(" OR ").join(
        sql.SQL("{t}.{c} IS DISTINCT FROM EXCLUDED.{c}").format(
            t=sql.Identifier(table), c=sql.Identifier(c)
        )
        for c in others
    )
    return sql.SQL(
        "INSERT INTO {t} ({cols}) VALUES ({vals}) ON CONFLICT ({key}) DO UPDATE SET {sets}"
        "{touch} WHERE {changed}"
    ).format(
        t=sql.Identifier(table),
        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        vals=sql.SQL(", ").join(sql.Placeholder(c) for c in columns),
        key=sql.SQL(", ").join(map(sql.Identifier, key)),
        sets=sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in others
        ),
        touch=sql.SQL(", updated_at = now()") if table == "contributors" else sql.SQL(""),
        changed=changed,
    )


UPDATE_DETAILS = sql.SQL(
    "UPDATE pull_requests SET {sets}, details_at = COALESCE(details_at, now()) "
    "WHERE id = %(id)s AND ({changed} OR details_at IS NULL)"
).format(
    sets=sql.SQL(", ").join(
        sql.SQL("{0} = %({1})s").format(sql.Identifier(c), sql.SQL(c)) for c in DETAILS
    ),
    changed=sql.SQL(" OR ").join(
        sql.SQL("{0} IS DISTINCT FROM %({1})s").format(sql.Identifier(c), sql.SQL(c))
        for c in DETAILS
    ),
)


PULLS_OF = (
    "SELECT p.number, p.node_id FROM pull_requests p "
    "JOIN repositories r ON r.id = p.repository_id WHERE lower(r.full_name) = lower(%s)"
)


def in_key_order(table: str, items: list[dict]) -> list[dict]:
    """Rows sorted by their table's key: every writer locks rows in the same order."""
    key = TABLES[table][1]
    return sorted(items, key=lambda row: tuple(str(row[k]) for k in key))


class Storage:
    """Writes captured rows and answers the few questions handlers ask of stored data."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def write(self, rows: Rows, watermark: tuple[str, datetime] | None = None) -> None:
        """Everything in `rows` (and the watermark) in one transaction.

        Rows are written in key order, so concurrent jobs writing the same contributors
        or pull requests take their row locks in the same order and do not deadlock;
        a deadlock or serialisation failure that still happens is retried.
        """

        def work(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                self._write(cur, rows, watermark)

        self.db.run(work)

    def _write(self, cur: Any, rows: Rows, watermark: tuple[str, datetime] | None) -> None:
        batches = [
            ("repositories", rows.repositories),
            ("contributors", list(rows.contributors.values())),
        ]
        for table, items in batches:
            if items:
                cur.executemany(upsert(table), in_key_order(table, items))
        labelled = [p for p in rows.pull_requests if "labels" in p]
        unlabelled = [p for p in rows.pull_requests if "labels" not in p]  # labels kept
        for items, skip in ((labelled, ()), (unlabelled, ("labels",))):
            if items:
                cur.executemany(upsert("pull_requests", skip), in_key_order("pull_requests", items))
        if rows.details:
            cur.executemany(UPDATE_DETAILS, sorted(rows.details, key=lambda d: d["id"]))
        for table, ids in (("pr_files", rows.complete_files), ("commits", rows.complete_commits)):
            if ids:  # the whole list is here: what GitHub no longer lists goes
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE pull_request_id = ANY(%s)").format(
                        sql.Identifier(table)
                    ),
                    (list(ids),),
                )
        for table, items in (
            ("reviews", rows.reviews),
            ("comments", rows.comments),
            ("pr_files", rows.files),
            ("commits", rows.commits),
        ):
            if items:
                cur.executemany(upsert(table), in_key_order(table, items))
        if watermark is not None:
            cur.execute(
                "INSERT INTO sync_watermarks (repository, updated_at) VALUES (%s, %s) "
                "ON CONFLICT (repository) DO UPDATE SET updated_at = GREATEST("
                "sync_watermarks.updated_at, EXCLUDED.updated_at), advanced_at = now()",
                watermark,
            )

    def _rows(self, query: str, params: Any = ()) -> list[dict]:
        return self.db.rows(query, params)

    def repository_id(self, repository: str) -> int | None:
        rows = self._rows(
            "SELECT id FROM repositories WHERE lower(full_name) = lower(%s)", (repository,)
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

    def refresh_watermark(self, repository: str) -> datetime | None:
        rows = self._rows(
            "SELECT updated_at FROM refresh_watermarks WHERE repository = lower(%s)",
            (repository,),
        )
        return rows[0]["updated_at"] if rows else None

    def refreshed(self, repository: str, newest: datetime | None, listed_at: datetime) -> None:
        """A whole refresh is stored: its watermark (the newest updatedAt it captured)
        advances, and the repository is fresh as of when its listing began. Written after
        the last pull request, so never ahead of stored data."""
        name = repository.lower()
        newest = newest or EPOCH  # no pull requests yet: any first one is a change

        def work(conn: psycopg.Connection) -> None:
            conn.execute(
                "INSERT INTO refresh_watermarks (repository, updated_at) VALUES (%s, %s) "
                "ON CONFLICT (repository) DO UPDATE SET updated_at = GREATEST("
                "refresh_watermarks.updated_at, EXCLUDED.updated_at), advanced_at = now()",
                (name, newest),
            )
            conn.execute(
                "INSERT INTO repo_probes (repository, fresh_as_of) VALUES (%s, %s) "
                "ON CONFLICT (repository) DO UPDATE SET fresh_as_of = GREATEST("
                "repo_probes.fresh_as_of, EXCLUDED.fresh_as_of)",
                (name, listed_at),
            )

        self.db.run(work)

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


OBSERVED_KINDS = ("files", "commits", "reviews", "comments", "threads", "thread_comments")
OBSERVED = """
SELECT
  (SELECT count(*) FROM pr_files f WHERE f.pull_request_id = p.id) AS files,
  (SELECT count(*) FROM commits c WHERE c.pull_request_id = p.id) AS commits,
  (SELECT count(*) FROM reviews v WHERE v.pull_request_id = p.id) AS reviews,
  (SELECT count(*) FROM comments c WHERE c.pull_request_id = p.id AND c.kind = 'issue')
    AS comments,
  (SELECT count(*) FROM comments c
    WHERE c.pull_request_id = p.id AND c.kind = 'review' AND c.in_reply_to_id IS NULL)
    AS threads,
  (SELECT array_agg(n) FROM (
     SELECT count(*) AS n FROM comments c
     WHERE c.pull_request_id = p.id AND c.kind = 'review'
     GROUP BY coalesce(c.in_reply_to_id, c.id)) t) AS thread_comments
FROM pull_requests p JOIN repositories r ON r.id = p.repository_id
WHERE lower(r.full_name) = lower(%s) AND p.details_at IS NOT NULL
ORDER BY p.updated_at DESC LIMIT %s
"""
