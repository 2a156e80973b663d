"""Stored deliveries, acted on: a repository's open deliveries read oldest first, their
payloads' rows written guarded by GitHub's `updated_at` (a late delivery of an older
version never moves stored data back; a deleted comment is never brought back by one),
and each delivery moved on in the same transaction as its rows. Every query here reads
by an index of github_deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from capture.records import Rows
from capture.storage import TABLES, Storage, as_json, in_key_order
from capture.webhooks.payloads import Effect, newest
from jobstore import Database

BATCH = 500  # deliveries one transaction applies
OPEN = (
    "SELECT delivery_id, event, action, received_at, payload, refresh_numbers "
    "FROM github_deliveries WHERE repository_id = %s AND status = %s "
    "ORDER BY received_at, arrival LIMIT %s"
)
COUNT = (
    "INSERT INTO webhook_counts (name, event, n) SELECT %s, e, c FROM "
    "unnest(%s::text[], %s::bigint[]) AS x(e, c) "
    "ON CONFLICT (name, event) DO UPDATE SET n = webhook_counts.n + EXCLUDED.n"
)
MOVE = (
    "UPDATE github_deliveries d SET status = x.status, note = x.note, "
    "refresh_numbers = COALESCE(x.numbers, d.refresh_numbers), job_id = %s, "
    "processed_at = CASE WHEN x.status = 'refresh' THEN NULL ELSE %s END "
    "FROM jsonb_to_recordset(%s) AS x(id text, status text, note text, numbers integer[]) "
    "WHERE d.delivery_id = x.id"
)
# A batch of deliveries waiting for their pull requests' refresh: the repository's own,
# then other repositories' the same credential can read (the same installation, or
# public ones), oldest first, none another live job holds.
CLAIM = """
WITH me AS (SELECT installation_id FROM tracked_repositories WHERE repo_id = %(repo)s LIMIT 1),
picked AS (
    SELECT d.delivery_id FROM github_deliveries d
    WHERE d.status = 'refresh'
      AND (d.claimed_by IS NULL OR d.claimed_by = %(job)s OR d.claimed_at < %(stale)s)
      AND (d.repository_id = %(repo)s
           OR d.installation_id = (SELECT installation_id FROM me)
           OR d.payload -> 'repository' ->> 'private' = 'false')
    ORDER BY d.received_at, d.arrival
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE github_deliveries d SET claimed_by = %(job)s, claimed_at = %(now)s
FROM picked WHERE d.delivery_id = picked.delivery_id
RETURNING d.delivery_id, d.repository_id, d.event, d.action, d.received_at,
          d.refresh_numbers
"""
RELEASE = (
    "UPDATE github_deliveries SET claimed_by = NULL, claimed_at = NULL "
    "WHERE delivery_id = ANY(%s) AND claimed_by = %s AND status = 'refresh'"
)
STORED_PULLS = (
    "SELECT p.repository_id, p.number, p.node_id FROM pull_requests p "
    "JOIN unnest(%s::bigint[], %s::int[]) AS x(r, n) ON p.repository_id = x.r AND p.number = x.n "
    "WHERE p.node_id IS NOT NULL"
)
PULL_IDS = "SELECT number, id FROM pull_requests WHERE repository_id = %s AND number = ANY(%s)"
# GitHub's updated_at an issue comment's delivery told for its pull request (by the
# unique index on repository and number); never moved backwards.
SEEN = (
    "UPDATE pull_requests p SET seen_updated_at = x.u "
    "FROM unnest(%s::int[], %s::timestamptz[]) AS x(n, u) "
    "WHERE p.repository_id = %s AND p.number = x.n "
    "AND (p.seen_updated_at IS NULL OR p.seen_updated_at < x.u)"
)
DELETE_COMMENTS = (
    "INSERT INTO comments ({cols}, deleted_at) SELECT {cols}, deleted_at "
    "FROM jsonb_populate_recordset(NULL::comments, %s) "
    "ON CONFLICT (id) DO UPDATE SET deleted_at = COALESCE(comments.deleted_at, "
    "EXCLUDED.deleted_at) WHERE comments.deleted_at IS NULL"
)
DETAILS_GUARDED = (
    "UPDATE pull_requests p SET merged_by_id = d.merged_by_id, "
    "merge_commit_sha = d.merge_commit_sha, additions = d.additions, "
    "deletions = d.deletions, changed_files = d.changed_files, "
    "commits_count = d.commits_count, details_at = COALESCE(p.details_at, now()) "
    "FROM jsonb_populate_recordset(NULL::pull_requests, %s) d "
    "WHERE p.id = d.id AND p.updated_at = d.updated_at"
)
GUARDS = {
    "pull_requests": "EXCLUDED.updated_at >= pull_requests.updated_at",
    "comments": "EXCLUDED.updated_at >= comments.updated_at AND comments.deleted_at IS NULL",
    # no updated_at on a review: a dismissal is final; a deleted one stays deleted
    "reviews": "reviews.deleted_at IS NULL AND "
    "(reviews.state <> 'DISMISSED' OR EXCLUDED.state = 'DISMISSED')",
}


def guarded(table: str) -> str:
    """An upsert of `table` that changes a stored row only under its guard."""
    columns, key = TABLES[table]
    cols = ", ".join(columns)
    others = [c for c in columns if c not in key]
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in others)
    changed = " OR ".join(f"{table}.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in others)
    return (
        f"INSERT INTO {table} ({cols}) SELECT {cols} FROM "
        f"jsonb_populate_recordset(NULL::{table}, %s) ON CONFLICT ({', '.join(key)}) "
        f"DO UPDATE SET {sets} WHERE ({changed}) AND {GUARDS[table]}"
    )


@dataclass(frozen=True)
class Open:
    """One stored delivery not yet acted on in full."""

    delivery_id: str
    event: str
    action: str | None
    received_at: datetime
    payload: dict[str, Any]
    refresh_numbers: list[int] | None


@dataclass(frozen=True)
class Claimed:
    """A delivery waiting for its pull requests' refresh, claimed by one job."""

    delivery_id: str
    repository_id: int
    event: str
    action: str | None
    received_at: datetime
    refresh_numbers: list[int] | None


@dataclass(frozen=True)
class Applied:
    """What one transaction did: rows stored, deliveries processed, waiting for a
    refresh (pull request numbers) and quarantined."""

    processed: int
    waiting: set[int]
    quarantined: int


class Deliveries:
    """A repository's deliveries, read and moved on."""

    def __init__(self, db: Database, storage: Storage) -> None:
        self.db = db
        self.storage = storage

    def open(self, repository_id: int, status: str, limit: int = BATCH) -> list[Open]:
        return [Open(**row) for row in self.db.rows(OPEN, (repository_id, status, limit))]

    def claim(
        self, repository_id: int, job_id: UUID, now: datetime, stale: datetime, limit: int
    ) -> list[Claimed]:
        """Up to `limit` deliveries waiting for a refresh, claimed for `job_id`: the
        repository's own and others' the same credential can read (see CLAIM)."""
        params = {
            "repo": repository_id,
            "job": job_id,
            "now": now,
            "stale": stale,
            "limit": limit,
        }
        rows = self.db.run(lambda conn: conn.execute(CLAIM, params).fetchall())
        return [Claimed(**row) for row in rows]

    def release(self, batch: list[Claimed], job_id: UUID) -> None:
        """Claims given back (their own repository's job refreshes them)."""
        if batch:
            self.db.execute(RELEASE, ([d.delivery_id for d in batch], job_id))

    def stored_pulls(self, pulls: set[tuple[int, int]]) -> dict[tuple[int, int], str]:
        """(repository id, number) -> node id, of those stored."""
        if not pulls:
            return {}
        repos, numbers = (list(c) for c in zip(*sorted(pulls), strict=True))
        rows = self.db.rows(STORED_PULLS, (repos, numbers))
        return {(r["repository_id"], r["number"]): r["node_id"] for r in rows}

    def apply(
        self,
        repository_id: int,
        batch: list[Open],
        effects: dict[str, Effect],
        quarantined: dict[str, str],
        job_id: UUID | None,
        now: datetime,
    ) -> Applied:
        """Stores what `effects` carry and moves each delivery of `batch` on, in one
        transaction: processed, refresh (its pull request's children, or a comment on a
        pull request not stored yet) or quarantined."""

        for d in batch:  # GitHub does not say when: as of the delivery
            for row in effects[d.delivery_id].deleted.values() if d.delivery_id in effects else ():
                row["deleted_at"] = d.received_at

        def work(conn: psycopg.Connection) -> Applied:
            with conn.cursor() as cur:
                waiting = self._write(cur, repository_id, effects)
                moves = []
                for d in batch:
                    if d.delivery_id in quarantined:
                        moves.append(_move(d, "quarantined", quarantined[d.delivery_id]))
                        continue
                    effect = effects[d.delivery_id]
                    numbers = sorted(waiting.get(d.delivery_id, set()) | effect.refresh)
                    note = effect.notes.get(d.delivery_id)
                    moves.append(_move(d, "refresh" if numbers else "processed", note, numbers))
                cur.execute(MOVE, (job_id, now, as_json(moves)))
                _count(cur, "processed", [d for d in batch if d.delivery_id not in quarantined])
                _count(cur, "quarantined", [d for d in batch if d.delivery_id in quarantined])
            refresh = {n for m in moves for n in (m["numbers"] or [])}
            done = sum(m["status"] == "processed" for m in moves)
            return Applied(done, refresh, len(quarantined))

        return self.db.run(work)

    def refreshed(
        self, batch: list[Open] | list[Claimed], job_id: UUID | None, now: datetime
    ) -> None:
        """Deliveries whose pull requests a refresh captured whole: processed."""
        moves = [_move(d, "processed", "its pull request refreshed") for d in batch]

        def work(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur:
                cur.execute(MOVE, (job_id, now, as_json(moves)))
                _count(cur, "refreshed", batch)

        self.db.run(work)

    def _write(
        self, cur: Any, repository_id: int, effects: dict[str, Effect]
    ) -> dict[str, set[int]]:
        """The effects' rows, guarded; returns, per delivery, the pull requests of its
        comments that are not stored (refreshed whole, comments included)."""
        rows, deleted, owner = Rows(), [], {}
        seen: dict[int, datetime] = {}
        for delivery_id, effect in effects.items():
            rows.extend(effect.rows)
            rows.contributors.update(effect.rows.contributors)
            for row in [*effect.rows.comments, *effect.deleted.values()]:
                owner[row["id"]] = delivery_id
            deleted += effect.deleted.values()
            for number, at in effect.seen.items():
                seen[number] = max(at, seen.get(number, at))
        base = Rows(repositories=rows.repositories[-1:], contributors=rows.contributors)
        self.storage.write_rows(cur, base)
        for table, items in (("pull_requests", rows.pull_requests),):
            if items:
                cur.execute(guarded(table), (as_json(in_key_order(table, newest(items))),))
        if rows.details:
            details = sorted(newest(rows.details), key=lambda d: d["id"])
            cur.execute(DETAILS_GUARDED, (as_json(details),))
        if rows.reviews:
            reviews = in_key_order("reviews", rows.reviews)
            cur.execute(guarded("reviews"), (as_json(reviews),))
        comments = [*rows.comments, *deleted]
        numbers = sorted({c["number"] for c in comments if c["pull_request_id"] is None})
        ids: dict[int, int] = {}
        if numbers:
            found = cur.execute(PULL_IDS, (repository_id, numbers)).fetchall()
            ids = {row["number"]: row["id"] for row in found}
        missing: dict[str, set[int]] = {}
        for c in comments:
            c["pull_request_id"] = c["pull_request_id"] or ids.get(c["number"])
            if c["pull_request_id"] is None:  # its pull request is not stored yet
                missing.setdefault(owner[c["id"]], set()).add(c["number"])
        gone = {c["id"] for c in deleted}
        live = [c for c in rows.comments if c["pull_request_id"] and c["id"] not in gone]
        if live:
            cur.execute(guarded("comments"), (as_json(in_key_order("comments", newest(live))),))
        dead = [c for c in deleted if c["pull_request_id"]]
        if dead:
            cols = ", ".join(TABLES["comments"][0])
            cur.execute(
                DELETE_COMMENTS.format(cols=cols), (as_json(in_key_order("comments", dead)),)
            )
        if seen:
            numbers = sorted(seen)
            cur.execute(SEEN, (numbers, [seen[n] for n in numbers], repository_id))
        return missing


def _move(
    d: Open | Claimed, status: str, note: str | None, numbers: list[int] | None = None
) -> dict:
    return {"id": d.delivery_id, "status": status, "note": note, "numbers": numbers or None}


def _count(cur: Any, name: str, batch: list[Open] | list[Claimed]) -> None:
    counts: dict[str, int] = {}
    for d in batch:
        counts[d.event] = counts.get(d.event, 0) + 1
    if counts:
        cur.execute(COUNT, (name, list(counts), list(counts.values())))
