"""A world that changes over simulated time: new pull requests, edits, reviews and
comments on pull requests of any age, heavy-tailed across repositories (a few are busy,
most are quiet), driven by the clock the caller advances."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from devtools.sandbox.data import World

KINDS = (("pull_request", 0.15), ("edit", 0.15), ("review", 0.35), ("comment", 0.35))
OLD_SHARE = 0.2  # changes on a pull request of any age (picked uniformly), not a recent one


@dataclass(frozen=True)
class Change:
    """One thing that happened on GitHub: its kind, where, when, and the id it left (a
    review's or comment's database id, a new pull request's number, an edit's title)."""

    kind: str
    repository: str
    number: int
    at: datetime
    ref: int | str


def heavy_tailed_rates(
    repositories: list[str], per_day: float, seed: int = 1, alpha: float = 1.2
) -> dict[str, float]:
    """Changes per hour for each repository, Pareto-distributed, `per_day` in all."""
    rng = random.Random(seed)
    weights = {name: rng.paretovariate(alpha) for name in repositories}
    total = sum(weights.values())
    return {name: per_day / 24 * w / total for name, w in weights.items()}


class Activity:
    """Advances `world` through simulated time, Poisson arrivals per repository."""

    def __init__(self, world: World, rates: Mapping[str, float], start: datetime, seed: int = 1):
        self.world = world
        self.rates = dict(rates)
        self.now = start
        self.rng = random.Random(seed)
        self.changes: list[Change] = []

    def advance(self, until: datetime) -> list[Change]:
        """Everything that happens from the last call until `until`, in time order."""
        hours = (until - self.now).total_seconds() / 3600
        arrivals: list[tuple[datetime, str]] = []
        for repository, rate in self.rates.items():
            t = self.rng.expovariate(rate) if rate > 0 else hours
            while t < hours:
                arrivals.append(
                    ((self.now + timedelta(hours=t)).replace(microsecond=0), repository)
                )
                t += self.rng.expovariate(rate)
        arrivals.sort()
        found = [self._one(repository, at) for at, repository in arrivals]
        done = [change for change in found if change is not None]
        self.now = max(self.now, until)
        self.world.now = max(self.world.now, until)
        self.changes += done
        return done

    def _one(self, repository: str, at: datetime) -> Change | None:
        """One change on the repository (under its name now, if it was renamed or moved;
        none if it is gone)."""
        repo, _ = self.world.resolve(repository)
        if repo is None:
            return None
        repository = repo.full_name
        kind = self.rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
        if kind == "pull_request" or not repo.pulls:
            pr = self.world.add_pull_request(repository, at, bare=True)
            return Change("pull_request", repository, pr.number, at, pr.number)
        numbers = sorted(repo.pulls)
        if self.rng.random() < OLD_SHARE:
            number = self.rng.choice(numbers)
        else:  # mostly the recent ones
            number = numbers[-1 - min(len(numbers) - 1, int(self.rng.expovariate(0.2)))]
        if kind == "edit":
            title = f"Edited at {at.isoformat()}"
            self.world.edit_pull_request(repository, number, at, title)
            return Change("edit", repository, number, at, title)
        if kind == "review":
            review = self.world.add_review(repository, number, at, "COMMENTED")
            return Change("review", repository, number, at, review.database_id)
        if self.rng.random() < 0.5:
            comment = self.world.add_comment(repository, number, at, "More.")
        else:
            comment = self.world.add_review_comment(repository, number, at)
        return Change("comment", repository, number, at, comment.database_id)
