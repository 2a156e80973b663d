"""JobSpec validation: every bad input names its field and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobstore.errors import InvalidSpec
from jobstore.spec import JobSpec

GOOD = {"job_type": "pr-reviews", "repository": "acme/widgets"}


def nested(depth: int) -> dict:
    """params nesting `depth` levels deep, params itself the first."""
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


BAD = [
    ({"job_type": "PR Reviews"}, "job_type", "lowercase words"),
    ({"job_type": ""}, "job_type", "lowercase words"),
    ({"job_type": 7}, "job_type", "lowercase words"),
    ({"repository": "acme"}, "repository", "must be owner/name, got 'acme'"),
    ({"repository": "a/b/c"}, "repository", "must be owner/name"),
    ({"repository": "-acme/widgets"}, "repository", "owner '-acme'"),
    ({"repository": "ac--me/widgets"}, "repository", "owner 'ac--me'"),
    ({"repository": "a" * 40 + "/w"}, "repository", "not a GitHub login"),
    ({"repository": "acme/.."}, "repository", "name '..'"),
    ({"repository": "acme/wid gets"}, "repository", "name 'wid gets'"),
    ({"repository": "acme/" + "w" * 101}, "repository", "not a GitHub repository name"),
    ({"repository": None}, "repository", "must be owner/name"),
    ({"days": 0}, "days", "between 1 and 3,650, got 0"),
    ({"days": -1}, "days", "between 1 and 3,650, got -1"),
    ({"days": 3651}, "days", "between 1 and 3,650"),
    ({"days": "7"}, "days", "whole number, got '7'"),
    ({"days": True}, "days", "whole number"),
    ({"days": 1, "since": "2026-01-01"}, "days", "either days or since/until"),
    ({"since": "2026-01-01"}, "until", "go together"),
    ({"until": "2026-01-01"}, "since", "go together"),
    ({"since": "2026-02-01", "until": "2026-01-01"}, "since", "must be before until"),
    ({"since": "2026-01-01", "until": "2026-01-01"}, "since", "must be before until"),
    ({"since": "yesterday", "until": "2026-01-01"}, "since", "ISO 8601 time, got 'yesterday'"),
    ({"since": "2000-01-01", "until": "2026-01-01"}, "since", "is before 2008-01-01"),
    ({"pr_numbers": [1, 0]}, "pr_numbers", "between 1 and"),
    ({"pr_numbers": [-5]}, "pr_numbers", "between 1 and"),
    ({"pr_numbers": ["12"]}, "pr_numbers", "whole number"),
    ({"pr_numbers": range(1, 1002)}, "pr_numbers", "at most 1000 pull requests, got 1001"),
    ({"max_items": 0}, "max_items", "between 1 and"),
    ({"max_items": 2_000_000}, "max_items", "between 1 and 1,000,000"),
    ({"trigger": "cron"}, "trigger", "one of manual, scheduled, webhook, backfill, got 'cron'"),
    ({"priority": "urgent"}, "priority", "one of high, normal, low"),
    ({"dedupe_key": ""}, "dedupe_key", "1-200 printable"),
    ({"dedupe_key": "x" * 201}, "dedupe_key", "1-200 printable"),
    ({"dedupe_key": "a\nb"}, "dedupe_key", "printable"),
    ({"parent_id": "nope"}, "parent_id", "must be a job id, got 'nope'"),
    ({"params": "{not json"}, "params", "not valid JSON"),
    ({"params": "[1, 2]"}, "params", "must be a JSON object"),
    ({"params": {"x": float("nan")}}, "params", "not JSON-serialisable"),
    ({"params": {"x": object()}}, "params", "not JSON-serialisable"),
    ({"params": {"x": "y" * 20_000}}, "params", "larger than 16,384 bytes"),
    ({"params": "[" * 100_000}, "params", "larger than 16,384 bytes"),  # refused unparsed
    ({"params": '{"a":' * 900 + "1" + "}" * 900}, "params", "nests deeper than 8 levels"),
    ({"params": nested(9)}, "params", "nests deeper than 8 levels"),
    ({"params": {"a": [[[[[[[[1]]]]]]]]}}, "params", "nests deeper than 8 levels"),
]


@pytest.mark.parametrize(("change", "field", "problem"), BAD)
def test_bad_spec_names_the_field_and_the_problem(change, field, problem):
    with pytest.raises(InvalidSpec) as err:
        JobSpec.create(**{**GOOD, **change})
    assert err.value.field == field
    assert problem in str(err.value)
    assert str(err.value).startswith(f"{field}: ")


def test_params_may_nest_eight_levels():
    assert JobSpec.create(**{**GOOD, "params": nested(8)}).params == nested(8)


def test_good_spec_is_normalised():
    spec = JobSpec.create(
        "pr-details",
        "Acme-Corp/widgets.js",
        since="2026-01-01T00:00:00Z",
        until=datetime(2026, 2, 1),
        pr_numbers=[3, 1, 3],
        params='{"b": 1}',
    )
    assert spec.since == datetime(2026, 1, 1, tzinfo=UTC)
    assert spec.until == datetime(2026, 2, 1, tzinfo=UTC)  # naive times are UTC
    assert spec.pr_numbers == (1, 3)
    assert spec.params == {"b": 1}


def test_default_dedupe_key_is_type_repository_window_and_prs():
    spec = JobSpec.create("pr-reviews", "Acme/Widgets", days=7, pr_numbers=[2, 1])
    assert spec.dedupe_key == "pr-reviews:acme/widgets:days=7:1,2"
    assert JobSpec.create("pr-reviews", "acme/widgets", days=7, pr_numbers=[1, 2]).dedupe_key == (
        spec.dedupe_key
    )
    other = JobSpec.create("pr-reviews", "acme/widgets", days=8, pr_numbers=[1, 2])
    assert other.dedupe_key != spec.dedupe_key


def test_long_pr_lists_hash_into_a_short_dedupe_key():
    spec = JobSpec.create("pr-details", "acme/w", pr_numbers=range(1, 1001))
    assert len(spec.dedupe_key) < 100
    assert (
        spec.dedupe_key
        != JobSpec.create("pr-details", "acme/w", pr_numbers=range(2, 1002)).dedupe_key
    )


def test_days_window_ends_now():
    now = datetime(2026, 11, 29, tzinfo=UTC)
    spec = JobSpec.create("pr-reviews", "acme/w", days=2)
    assert spec.window(now) == (now - timedelta(days=2), now)
