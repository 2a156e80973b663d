"""JobSpec: what a producer asks for, validated before anything is written."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from jobstore.errors import InvalidSpec

TRIGGERS = ("manual", "scheduled", "webhook", "backfill")
PRIORITIES = ("high", "normal", "low")
MAX_DAYS = 3650  # `days` back from now at most (a window from GITHUB_EPOCH covers more)
# GitHub opened in 2008: a window from here holds a repository's whole history.
GITHUB_EPOCH = datetime(2008, 1, 1, tzinfo=UTC)
MAX_PRS = 1000
MAX_ITEMS = 1_000_000
MAX_PARAMS_BYTES = 16_384
MAX_PARAMS_DEPTH = 8  # objects and arrays within params, params itself the first
MAX_DEDUPE_KEY = 200

JOB_TYPE = re.compile(r"[a-z][a-z0-9-]{0,62}")
# GitHub: owners are 1-39 letters, digits or single hyphens, not at either end;
# repository names are 1-100 letters, digits, '.', '_' or '-', but not '.' or '..'.
OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


def parse_repository(value: object) -> str:
    if not isinstance(value, str) or value.count("/") != 1:
        raise InvalidSpec("repository", f"must be owner/name, got {value!r}")
    owner, name = value.split("/")
    if not OWNER.fullmatch(owner):
        raise InvalidSpec(
            "repository", f"owner {owner!r} is not a GitHub login (1-39 letters, digits, hyphens)"
        )
    if not NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidSpec(
            "repository", f"name {name!r} is not a GitHub repository name (letters, digits, ._-)"
        )
    return f"{owner}/{name}"


def _aware(name: str, value: object) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidSpec(name, f"must be an ISO 8601 time, got {value!r}") from None
    if not isinstance(value, datetime):
        raise InvalidSpec(name, f"must be a time, got {value!r}")
    # One instant, one spelling: dedupe keys and stored windows are in UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _positive_int(name: str, value: object, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(name, f"must be a whole number, got {value!r}")
    if not 1 <= value <= maximum:
        raise InvalidSpec(name, f"must be between 1 and {maximum:,}, got {value}")
    return value


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidSpec(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


@dataclass(frozen=True)
class JobSpec:
    """A validated request for one job. Build it with `JobSpec.create`."""

    job_type: str
    repository: str
    since: datetime | None = None
    until: datetime | None = None
    days: int | None = None
    pr_numbers: tuple[int, ...] = ()
    max_items: int | None = None
    trigger: str = "manual"
    priority: str = "normal"
    dedupe_key: str = ""
    parent_id: UUID | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        job_type: object,
        repository: object,
        *,
        since: object = None,
        until: object = None,
        days: object = None,
        pr_numbers: Iterable[object] = (),
        max_items: object = None,
        trigger: object = "manual",
        priority: object = "normal",
        dedupe_key: object = None,
        parent_id: object = None,
        params: object = None,
    ) -> JobSpec:
        """Validates every field; raises InvalidSpec naming the first bad one."""
        if not isinstance(job_type, str) or not JOB_TYPE.fullmatch(job_type):
            raise InvalidSpec(
                "job_type", f"must be lowercase words joined by '-', got {job_type!r}"
            )
        repo = parse_repository(repository)
        since_at = until_at = None
        if days is not None:
            if since is not None or until is not None:
                raise InvalidSpec("days", "give either days or since/until, not both")
            days = _positive_int("days", days, MAX_DAYS)
        elif since is not None or until is not None:
            if since is None or until is None:
                raise InvalidSpec(
                    "since" if since is None else "until", "since and until go together"
                )
            since_at, until_at = _aware("since", since), _aware("until", until)
            if since_at >= until_at:
                raise InvalidSpec("since", f"must be before until ({since_at} >= {until_at})")
            if since_at < GITHUB_EPOCH:
                raise InvalidSpec(
                    "since", f"is before {GITHUB_EPOCH.date()}: GitHub holds nothing older"
                )
        prs = []
        for number in pr_numbers:
            prs.append(_positive_int("pr_numbers", number, 2**31 - 1))
        if len(set(prs)) > MAX_PRS:
            raise InvalidSpec("pr_numbers", f"at most {MAX_PRS} pull requests, got {len(set(prs))}")
        items = None if max_items is None else _positive_int("max_items", max_items, MAX_ITEMS)
        parent = None
        if parent_id is not None:
            try:
                parent = parent_id if isinstance(parent_id, UUID) else UUID(str(parent_id))
            except ValueError:
                raise InvalidSpec("parent_id", f"must be a job id, got {parent_id!r}") from None
        spec = cls(
            job_type=job_type,
            repository=repo,
            since=since_at,
            until=until_at,
            days=days,  # type: ignore[arg-type]
            pr_numbers=tuple(sorted(set(prs))),
            max_items=items,
            trigger=_choice("trigger", trigger, TRIGGERS),
            priority=_choice("priority", priority, PRIORITIES),
            parent_id=parent,
            params=_params(params),
        )
        key = spec.default_dedupe_key() if dedupe_key is None else dedupe_key
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_DEDUPE_KEY or not key.isprintable():
            raise InvalidSpec("dedupe_key", f"must be 1-{MAX_DEDUPE_KEY} printable characters")
        return cls(**{**spec.__dict__, "dedupe_key": key})

    def default_dedupe_key(self) -> str:
        """Job type, repository, window and PR set: the same request is the same job."""
        if self.days is not None:
            window = f"days={self.days}"
        elif self.since is not None and self.until is not None:
            window = f"{self.since.isoformat()}..{self.until.isoformat()}"
        else:
            window = "incremental"
        prs = ",".join(map(str, self.pr_numbers))
        if len(prs) > 80:
            prs = "sha256=" + hashlib.sha256(prs.encode()).hexdigest()[:24]
        key = f"{self.job_type}:{self.repository.lower()}:{window}:{prs}"
        if self.parent_id is not None:
            key += f":parent={self.parent_id}"
        return key

    def window(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """The absolute window; a `days` window ends at `now`."""
        if self.days is not None:
            return now - timedelta(days=self.days), now
        return self.since, self.until

    def check_not_future(self, now: datetime) -> None:
        """Refuses a window that starts or ends in the future (by more than a minute of
        clock skew): there is nothing to capture there yet."""
        since, until = self.window(now)
        late = now + timedelta(minutes=1)
        for name, value in (("since", since), ("until", until)):
            if value is not None and value > late:
                raise InvalidSpec(name, f"{value.isoformat()} is in the future")

    def estimated_items(self) -> int | None:
        if self.pr_numbers:
            return len(self.pr_numbers)
        return self.max_items


def _depth(value: object) -> int:
    """How deep objects and arrays nest in `value` (walked without recursion: a hostile
    value may nest thousands deep)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            items: Iterable[object] = item.values()
        elif isinstance(item, list | tuple):
            items = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_PARAMS_DEPTH:
            return deepest
        todo.extend((child, depth + 1) for child in items)
    return deepest


def _params(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        if len(value) > MAX_PARAMS_BYTES:  # before parsing it
            raise InvalidSpec("params", f"is larger than {MAX_PARAMS_BYTES:,} bytes")
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidSpec("params", f"is not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise InvalidSpec("params", f"nests deeper than {MAX_PARAMS_DEPTH} levels") from None
    if not isinstance(value, dict):
        raise InvalidSpec("params", "must be a JSON object")
    if _depth(value) > MAX_PARAMS_DEPTH:  # every later load of the job would recurse as deep
        raise InvalidSpec("params", f"nests deeper than {MAX_PARAMS_DEPTH} levels")
    try:
        encoded = json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidSpec("params", f"is not JSON-serialisable ({exc})") from None
    if len(encoded.encode()) > MAX_PARAMS_BYTES:
        raise InvalidSpec("params", f"is larger than {MAX_PARAMS_BYTES:,} bytes")
    return json.loads(encoded)
