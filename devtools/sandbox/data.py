"""The sandbox's repositories, generated deterministically from a seed, and changeable."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

REVIEW_STATES = ("APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING")
CHANGE_TYPES = ("ADDED", "DELETED", "MODIFIED", "RENAMED", "COPIED", "CHANGED")
LABELS = (
    ("bug", "d73a4a"),
    ("enhancement", "a2eeef"),
    ("docs", "0075ca"),
    ("dependencies", "0366d6"),
    ("good first issue", "7057ff"),
    ("breaking", "b60205"),
)
BOTS = ("dependabot[bot]", "renovate[bot]", "github-actions[bot]", "codecov[bot]")


@dataclass(slots=True)
class Account:
    """A user or a bot. Deleted accounts are not objects: their author is None."""

    database_id: int
    login: str
    kind: str  # "User" or "Bot"
    name: str | None = None

    @property
    def node_id(self) -> str:
        return f"{'U' if self.kind == 'User' else 'BOT'}_{self.database_id}"


@dataclass(slots=True)
class Review:
    database_id: int
    author: Account | None
    state: str
    body: str
    submitted_at: datetime | None
    created_at: datetime


@dataclass(slots=True)
class Comment:
    """An issue comment (path None) or a review comment (path, line, reply_to)."""

    database_id: int
    author: Account | None
    body: str
    created_at: datetime
    updated_at: datetime
    path: str | None = None
    line: int | None = None
    original_line: int | None = None
    reply_to: int | None = None
    review_id: int | None = None


@dataclass(slots=True)
class Thread:
    database_id: int
    path: str
    line: int | None
    is_resolved: bool
    comments: list[Comment]


@dataclass(slots=True)
class File:
    path: str
    additions: int
    deletions: int
    change_type: str
    previous_path: str | None = None


@dataclass(slots=True)
class Commit:
    oid: str
    message: str
    author_name: str
    author_email: str
    author: Account | None
    authored_at: datetime
    committed_at: datetime
    additions: int
    deletions: int


@dataclass(slots=True)
class PullRequest:
    database_id: int
    number: int
    title: str
    body: str
    author: Account | None
    state: str  # OPEN, CLOSED, MERGED
    is_draft: bool
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    merged_at: datetime | None
    merged_by: Account | None
    base_ref: str
    head_ref: str
    head_oid: str
    labels: list[tuple[int, str, str]]
    reviews: list[Review] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    threads: list[Thread] = field(default_factory=list)
    files: list[File] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)

    @property
    def node_id(self) -> str:
        return f"PR_{self.database_id}"

    @property
    def additions(self) -> int:
        return sum(f.additions for f in self.files)

    @property
    def deletions(self) -> int:
        return sum(f.deletions for f in self.files)

    @property
    def merge_commit_oid(self) -> str | None:
        return sha(f"merge-{self.database_id}") if self.merged_at else None

    @property
    def review_comments(self) -> list[Comment]:
        return [c for t in self.threads for c in t.comments]


@dataclass(slots=True)
class Repository:
    database_id: int
    owner: str
    name: str
    created_at: datetime
    pulls: dict[int, PullRequest] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def node_id(self) -> str:
        return f"R_{self.database_id}"


ASSOCIATIONS = ("MEMBER", "CONTRIBUTOR", "COLLABORATOR", "FIRST_TIME_CONTRIBUTOR", "NONE")


def association(account: Account | None) -> str:
    """An account's relation to the repositories (one per account, the same everywhere)."""
    return "NONE" if account is None else ASSOCIATIONS[account.database_id % len(ASSOCIATIONS)]


def sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _count(rng: random.Random, median: float, tail: tuple[int, int], none: float = 0.25) -> int:
    """Zero for a `none` share, a small number near `median`, or rarely a long tail."""
    roll = rng.random()
    if roll < none:
        return 0
    if roll > 0.99:
        return rng.randint(*tail)
    return max(1, round(rng.expovariate(math.log(2) / median)))  # median of the non-zero part


class World:
    """All sandbox repositories and accounts. Ids are unique across everything."""

    def __init__(self, seed: int = 7, now: datetime | None = None, lean: bool = False) -> None:
        self.seed = seed
        # Lean pull requests: one file and one commit, at most one review and one comment,
        # no review threads: a fleet's scheduling measured without each PR's long tails.
        self.lean = lean
        self.now = (now or datetime.now(UTC)).replace(microsecond=0)
        # Whether editing or deleting a comment or review moves its PR's updatedAt: GitHub's
        # docs do not say, so the sandbox plays either reading (--edit-bumps-pr).
        self.edit_bumps_pr = True
        self.repositories: dict[str, Repository] = {}
        # Old names of renamed or transferred repositories, to their ids: GitHub redirects
        # them (REST 301, GraphQL resolves them) until a repository takes the name.
        self.moved: dict[str, int] = {}
        # Repositories deleted or made private: unknown to every query, until restored.
        self.hidden: dict[str, Repository] = {}
        self._index: dict[str, Any] | None = None
        # Told of every change as GitHub tells an App's webhook: (event, action, repository,
        # pull request, the object; for a move, the old name) (devtools.sandbox.webhooks).
        self.on_change: Callable[..., None] | None = None
        self._ids = count(1000)
        rng = random.Random(seed)
        self.users = [
            Account(next(self._ids), f"dev-{i}-{rng.randrange(10**4)}", "User", f"Developer {i}")
            for i in range(150)
        ]
        self.bots = [Account(next(self._ids), login, "Bot") for login in BOTS]

    def repository(self, full_name: str) -> Repository | None:
        return self.repositories.get(full_name.lower())

    def resolve(self, full_name: str) -> tuple[Repository | None, bool]:
        """The repository a name leads to, and whether it was moved there (an old name)."""
        found = self.repositories.get(full_name.lower())
        if found is not None:
            return found, False
        moved = self.moved.get(full_name.lower())
        return (self.by_id(moved), True) if moved is not None else (None, False)

    def by_id(self, database_id: int) -> Repository | None:
        return next((r for r in self.repositories.values() if r.database_id == database_id), None)

    def account(self, database_id: int) -> Account | None:
        return next((a for a in self.users + self.bots if a.database_id == database_id), None)

    def find(
        self, node_id: str
    ) -> tuple[Repository, PullRequest] | Thread | Repository | Account | None:
        """A pull request (with its repository), a review thread, a repository or an
        account, by node id."""
        if self._index is None:
            index: dict[str, Any] = {a.node_id: a for a in self.users + self.bots}
            for repo in self.repositories.values():
                index[repo.node_id] = repo
                for pr in repo.pulls.values():
                    index[pr.node_id] = (repo, pr)
                    index.update((f"PRRT_{t.database_id}", t) for t in pr.threads)
            self._index = index
        return self._index.get(node_id)

    def add_repository(
        self, full_name: str, pulls: int, days: int, issues: float = 0.0
    ) -> Repository:
        """A repository with `pulls` pull requests created over the last `days` days.
        `issues`: the share of numbers its issues took (GitHub numbers issues and pull
        requests in one sequence), so the pull requests' numbers have gaps."""
        owner, name = full_name.split("/")
        self.moved.pop(full_name.lower(), None)  # a new repository takes an old name
        rng = random.Random(f"{self.seed}:{full_name}")
        start = self.now - timedelta(days=days)
        repo = Repository(next(self._ids), owner, name, start - timedelta(days=30))
        if full_name.lower() in self.repositories:  # one replaced: its nodes are gone
            self._index = None
        self.repositories[full_name.lower()] = repo
        self._indexed(repo)
        offsets = sorted(rng.uniform(0, days * 86400) for _ in range(pulls))
        number = 0
        for offset in offsets:
            number += 1
            while issues and rng.random() < issues:
                number += 1  # an issue's number
            self._generate(repo, number, start + timedelta(seconds=int(offset)), rng)
        return repo

    def _account(self, rng: random.Random) -> Account | None:
        roll = rng.random()
        if roll < 0.05:
            return None  # a deleted account: GitHub returns a null author
        if roll < 0.15:
            return rng.choice(self.bots)
        return rng.choice(self.users)

    def _time(self, rng: random.Random, after: datetime, hours: float) -> datetime:
        return min(self.now, after + timedelta(seconds=int(rng.uniform(60, hours * 3600))))

    def _generate(
        self, repo: Repository, number: int, created: datetime, rng: random.Random
    ) -> None:
        roll = rng.random()
        state = "MERGED" if roll < 0.6 else "CLOSED" if roll < 0.75 else "OPEN"
        author = self._account(rng)
        pr = PullRequest(
            database_id=next(self._ids),
            number=number,
            title=f"Change {number}: {rng.randrange(10**6)}",
            body=rng.choice(["", "Fixes a bug.", "Adds a feature.\n\nDetails inside."]),
            author=author,
            state=state,
            is_draft=state == "OPEN" and rng.random() < 0.25,
            created_at=created,
            updated_at=created,
            closed_at=None,
            merged_at=None,
            merged_by=None,
            base_ref="main",
            head_ref=f"feature/{number}",
            head_oid=sha(f"{repo.full_name}#{number}"),
            labels=[(i, *LABELS[i]) for i in sorted(rng.sample(range(6), rng.randint(0, 3)))],
        )
        files = 1 if self.lean else _count(rng, 5, (101, 260), none=0.0)
        for i in range(files):
            change = rng.choice(CHANGE_TYPES)
            pr.files.append(
                File(
                    f"src/module{i % 17}/file{number}_{i}.py",
                    rng.randint(0, 120),
                    rng.randint(0, 60),
                    change,
                    f"src/old/file{number}_{i}.py" if change in ("RENAMED", "COPIED") else None,
                )
            )
        for i in range(1 if self.lean else _count(rng, 3, (101, 230), none=0.0)):
            when = self._time(rng, created, 48)
            who = self._account(rng)
            pr.commits.append(
                Commit(
                    sha(f"{repo.full_name}#{number}/{i}"),
                    f"Commit {i} of #{number}",
                    who.name or who.login if who else "Ghost",
                    f"dev{i}@example.invalid",
                    who,
                    when,
                    when,
                    rng.randint(0, 80),
                    rng.randint(0, 40),
                )
            )
        for _ in range(rng.randint(0, 1) if self.lean else _count(rng, 2, (101, 160), none=0.2)):
            state_ = rng.choices(REVIEW_STATES, weights=(40, 15, 35, 7, 3))[0]
            when = self._time(rng, created, 96)
            pr.reviews.append(
                Review(
                    next(self._ids),
                    self._account(rng),
                    state_,
                    rng.choice(["", "LGTM", "See notes"]),
                    None if state_ == "PENDING" else when,
                    when,
                )
            )
        for _ in range(rng.randint(0, 1) if self.lean else _count(rng, 3, (101, 150), none=0.2)):
            when = self._time(rng, created, 120)
            pr.comments.append(
                Comment(next(self._ids), self._account(rng), "A comment.", when, when)
            )
        review_ids = [r.database_id for r in pr.reviews] or [None]
        for _ in range(0 if self.lean else _count(rng, 2, (101, 130), none=0.3)):
            path = rng.choice(pr.files).path
            line = rng.randint(1, 400)
            thread = Thread(next(self._ids), path, line, rng.random() < 0.5, [])
            first = None
            for _ in range(rng.choice((1, 1, 2, 3, 4)) if rng.random() > 0.002 else 120):
                when = self._time(rng, created, 120)
                comment = Comment(
                    next(self._ids),
                    self._account(rng),
                    "Consider this.",
                    when,
                    when,
                    path,
                    line,
                    line,
                    first,
                    rng.choice(review_ids),
                )
                first = first or comment.database_id
                thread.comments.append(comment)
            pr.threads.append(thread)
        if state != "OPEN":
            pr.closed_at = self._time(rng, created, 24 * 14)
            if state == "MERGED":
                pr.merged_at, pr.merged_by = pr.closed_at, rng.choice(self.users)
        activity = [pr.created_at, pr.closed_at or created]
        activity += [r.created_at for r in pr.reviews] + [c.updated_at for c in pr.comments]
        activity += [c.updated_at for c in pr.review_comments]
        pr.updated_at = max(activity)
        repo.pulls[number] = pr
        self._indexed(repo, pr)

    def _indexed(self, repo: Repository, pr: PullRequest | None = None) -> None:
        """A new repository or pull request (and its threads), findable by node id: added
        to the index if it is built (rebuilding it for each would read the whole world)."""
        if self._index is None:
            return
        self._index[repo.node_id] = repo
        if pr is not None:
            self._index[pr.node_id] = (repo, pr)
            self._index.update((f"PRRT_{t.database_id}", t) for t in pr.threads)

    # Changes while the sandbox runs, for incremental capture.

    def add_pull_request(self, full_name: str, at: datetime, bare: bool = False) -> PullRequest:
        """A new pull request created `at`; `bare`: open, with files and commits only (the
        reviews and comments a simulation adds later, as they happen)."""
        repo = self.repositories[full_name.lower()]
        number = max(repo.pulls, default=0) + 1
        self.now = max(self.now, at)
        self._generate(repo, number, at, random.Random(f"{self.seed}:{full_name}:{number}"))
        pr = repo.pulls[number]
        if bare:
            pr.state, pr.closed_at, pr.merged_at, pr.merged_by = "OPEN", None, None, None
            pr.reviews, pr.comments, pr.threads = [], [], []
            for commit in pr.commits:
                commit.authored_at = commit.committed_at = at
            pr.updated_at = at
        self._tell("pull_request", "opened", repo, pr, None, at)
        return pr

    def add_review(self, full_name: str, number: int, at: datetime, state: str) -> Review:
        pr = self.repositories[full_name.lower()].pulls[number]
        review = Review(next(self._ids), self.users[1], state, "Reviewed.", at, at)
        pr.reviews.append(review)
        pr.updated_at = max(pr.updated_at, at)
        self._tell("pull_request_review", "submitted", full_name, pr, review, at)
        return review

    def add_review_comment(self, full_name: str, number: int, at: datetime) -> Comment:
        """A new review thread with one comment, on the first changed file."""
        pr = self.repositories[full_name.lower()].pulls[number]
        path = pr.files[0].path if pr.files else "README.md"
        comment = Comment(next(self._ids), self.users[2], "A thought.", at, at, path, 1, 1)
        pr.threads.append(Thread(next(self._ids), path, 1, False, [comment]))
        pr.updated_at = max(pr.updated_at, at)
        self._indexed(self.repositories[full_name.lower()], pr)  # its new thread
        self._tell("pull_request_review_comment", "created", full_name, pr, comment, at)
        return comment

    def edit_pull_request(self, full_name: str, number: int, at: datetime, title: str) -> None:
        pr = self.repositories[full_name.lower()].pulls[number]
        changes = {"title": {"from": pr.title}}
        pr.title, pr.updated_at = title, max(pr.updated_at, at)
        self._tell("pull_request", "edited", full_name, pr, None, at, changes)

    def add_comment(self, full_name: str, number: int, at: datetime, body: str) -> Comment:
        pr = self.repositories[full_name.lower()].pulls[number]
        comment = Comment(next(self._ids), self.users[0], body, at, at)
        pr.comments.append(comment)
        pr.updated_at = max(pr.updated_at, at)
        self._tell("issue_comment", "created", full_name, pr, comment, at)
        return comment

    def edit_comment(
        self, full_name: str, number: int, comment_id: int, at: datetime, body: str
    ) -> Comment:
        """An issue or review comment's body edited `at` (its PR moves if edits bump it)."""
        pr = self.repositories[full_name.lower()].pulls[number]
        every = [*pr.comments, *pr.review_comments]
        comment = next(c for c in every if c.database_id == comment_id)
        changes = {"body": {"from": comment.body}}
        comment.body, comment.updated_at = body, max(comment.updated_at, at)
        self._touched(pr, at)
        event = "issue_comment" if comment.path is None else "pull_request_review_comment"
        self._tell(event, "edited", full_name, pr, comment, at, changes)
        return comment

    def delete_comment(self, full_name: str, number: int, comment_id: int, at: datetime) -> None:
        """An issue or review comment deleted (a thread left empty goes with it)."""
        pr = self.repositories[full_name.lower()].pulls[number]
        found = [c for c in pr.comments if c.database_id == comment_id]
        pr.comments = [c for c in pr.comments if c.database_id != comment_id]
        for thread in pr.threads:
            found += [c for c in thread.comments if c.database_id == comment_id]
            thread.comments = [c for c in thread.comments if c.database_id != comment_id]
        if not found:
            raise KeyError(f"no comment {comment_id} on {full_name}#{number}")
        if any(not t.comments for t in pr.threads):
            pr.threads = [t for t in pr.threads if t.comments]
            self._index = None
        self._touched(pr, at)
        event = "issue_comment" if found[0].path is None else "pull_request_review_comment"
        self._tell(event, "deleted", full_name, pr, found[0], at)

    def delete_review(self, full_name: str, number: int, review_id: int, at: datetime) -> None:
        """A review gone (GitHub deletes pending ones; its comments stay as GitHub shows)."""
        pr = self.repositories[full_name.lower()].pulls[number]
        if not any(r.database_id == review_id for r in pr.reviews):
            raise KeyError(f"no review {review_id} on {full_name}#{number}")
        pr.reviews = [r for r in pr.reviews if r.database_id != review_id]
        self._touched(pr, at)

    def _tell(
        self,
        event: str,
        action: str,
        repo: Repository | str,
        pr: PullRequest | None,
        obj: Any,
        at: datetime | None = None,
        changes: dict | None = None,
    ) -> None:
        if self.on_change is not None:
            found = repo if isinstance(repo, Repository) else self.repositories[repo.lower()]
            self.on_change(event, action, found, pr, obj, at or self.now, changes)

    def _touched(self, pr: PullRequest, at: datetime) -> None:
        self.now = max(self.now, at)
        if self.edit_bumps_pr:
            pr.updated_at = max(pr.updated_at, at)

    def rename_user(self, database_id: int, login: str) -> None:
        for account in self.users + self.bots:
            if account.database_id == database_id:
                account.login = login

    def delete_user(self, database_id: int) -> None:
        """An account deleted: its node is gone (GitHub shows its content as the ghost)."""
        self.users = [a for a in self.users if a.database_id != database_id]
        self._index = None

    # What GitHub moves or takes away: repositories renamed, transferred, deleted, private.

    def rename_repository(self, full_name: str, new_name: str) -> Repository:
        """Renamed (a new name, or `owner/name` for a transfer to another owner): the old
        name redirects until another repository takes it."""
        repo = self.repositories.pop(full_name.lower())
        if new_name.lower() in self.repositories:
            self.repositories[full_name.lower()] = repo
            raise ValueError(f"{new_name} exists")
        owner, _, name = new_name.rpartition("/")
        repo.owner, repo.name = owner or repo.owner, name
        self.repositories[repo.full_name.lower()] = repo
        self.moved = {old: i for old, i in self.moved.items() if old != repo.full_name.lower()}
        self.moved[full_name.lower()] = repo.database_id
        self._index = None
        moved_owner = full_name.split("/")[0].lower() != repo.owner.lower()
        self._tell("repository", "transferred" if moved_owner else "renamed", repo, None, full_name)
        return repo

    def transfer_repository(self, full_name: str, new_owner: str) -> Repository:
        return self.rename_repository(full_name, f"{new_owner}/{full_name.split('/')[1]}")

    def hide_repository(self, full_name: str) -> None:
        """Deleted, or made private (for the sandbox's tokens, the same): not found."""
        repo = self.repositories.pop(full_name.lower())
        self.hidden[full_name.lower()] = repo
        self.moved = {old: i for old, i in self.moved.items() if i != repo.database_id}
        self._index = None
        if self.on_change is not None:
            self.on_change("repository", "deleted", repo, None, full_name, self.now, None)

    def restore_repository(self, full_name: str) -> Repository:
        """Public again (a privatised repository made public)."""
        repo = self.hidden.pop(full_name.lower())
        self.repositories[full_name.lower()] = repo
        self._index = None
        return repo
