"""What GitHub takes away or moves, over simulated time, alongside `Activity`: comments
edited and deleted, reviews deleted (on either reading of whether that moves the pull
request: the world's `edit_bumps_pr`), repositories renamed, transferred to another owner,
deleted or made private, users renamed. Each is a `Change` the caller can look for."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from devtools.sandbox.activity import Change
from devtools.sandbox.data import World

# Per hour across the fleet; deletions hit what is recent (a comment removed soon after it
# was written), edits any age.
CONTENT = (("comment_edit", 0.4), ("comment_delete", 0.35), ("review_delete", 0.25))


@dataclass
class Lifecycle:
    """Content changes at `per_hour`, and one-off repository and user events at the
    times given (repository -> (kind, at)): rename, transfer, gone."""

    world: World
    per_hour: float
    start: datetime
    seed: int = 1
    moves: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    user_renames: list[tuple[int, datetime]] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    kinds: tuple[tuple[str, float], ...] = CONTENT  # content changes and their weights

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.now = self.start
        self.recent: list[tuple[str, int, int]] = []  # comments written in the run

    def written(self, change: Change) -> None:
        """A comment `Activity` wrote: a candidate for a later deletion."""
        if change.kind == "comment":
            self.recent.append((change.repository, change.number, int(change.ref)))

    def advance(self, until: datetime) -> list[Change]:
        done: list[Change] = []
        hours = (until - self.now).total_seconds() / 3600
        t = self.rng.expovariate(self.per_hour) if self.per_hour > 0 else hours
        while t < hours:
            at = (self.now + timedelta(hours=t)).replace(microsecond=0)
            found = self._content(at)
            if found is not None:
                done.append(found)
            t += self.rng.expovariate(self.per_hour)
        for name, (kind, at) in sorted(self.moves.items(), key=lambda m: m[1][1]):
            if self.now < at <= until and self.world.repository(name) is not None:
                done.append(self._move(name, kind, at))
        for user_id, at in self.user_renames:
            if self.now < at <= until:
                login = f"renamed-{user_id}-{at:%H%M}"
                self.world.rename_user(user_id, login)
                done.append(Change("user_rename", "", 0, at, f"{user_id}:{login}"))
        self.now = max(self.now, until)
        done.sort(key=lambda c: c.at)
        self.changes += done
        return done

    def _content(self, at: datetime) -> Change | None:
        kinds = self.kinds
        kind = self.rng.choices([k for k, _ in kinds], weights=[w for _, w in kinds])[0]
        if kind == "comment_delete":
            live = [c for c in self.recent if self._live_comment(*c)]
            if not live:
                return None
            repository, number, comment_id = self.rng.choice(live)
            repo, _ = self.world.resolve(repository)
            assert repo is not None
            repository = repo.full_name
            self.world.delete_comment(repository, number, comment_id, at)
            return Change(kind, repository, number, at, comment_id)
        names = sorted(self.world.repositories)
        repo = self.world.repositories[self.rng.choice(names)]
        pulls = [
            p for p in repo.pulls.values() if (p.reviews if kind == "review_delete" else p.comments)
        ]
        if not pulls:
            return None
        if kind == "review_delete":  # only on a pull request with activity in the run
            pulls = [p for p in pulls if p.updated_at >= self.start]
            if not pulls:
                return None
            pr = self.rng.choice(pulls)
            review = self.rng.choice(pr.reviews)
            self.world.delete_review(repo.full_name, pr.number, review.database_id, at)
            return Change(kind, repo.full_name, pr.number, at, review.database_id)
        pr = self.rng.choice(pulls)
        comment = self.rng.choice(pr.comments)
        body = f"Edited at {at:%H:%M:%S}"
        self.world.edit_comment(repo.full_name, pr.number, comment.database_id, at, body)
        return Change(kind, repo.full_name, pr.number, at, f"{comment.database_id}:{body}")

    def _live_comment(self, repository: str, number: int, comment_id: int) -> bool:
        repo, _ = self.world.resolve(repository)
        if repo is None or number not in repo.pulls:
            return False
        pr = repo.pulls[number]
        return any(c.database_id == comment_id for c in [*pr.comments, *pr.review_comments])

    def _move(self, name: str, kind: str, at: datetime) -> Change:
        repo = self.world.repository(name)
        assert repo is not None
        self.world.now = max(self.world.now, at)
        if kind == "rename":
            self.world.rename_repository(name, f"{repo.owner}/{repo.name}-renamed")
        elif kind == "transfer":
            self.world.transfer_repository(name, f"{repo.owner}-new-home")
        else:
            self.world.hide_repository(name)
        return Change(kind, name, 0, at, repo.database_id)
