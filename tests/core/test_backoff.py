"""Backoff arithmetic and Retry-After parsing."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from handler.core.backoff import Backoff, RetryPolicy, retry_after_seconds, retryable

NOW = datetime(2024, 1, 15, 8, 30, 0, tzinfo=timezone.utc)


def test_full_jitter_grows_exponentially_up_to_the_cap() -> None:
    backoff = Backoff(base_s=0.5, cap_s=20)
    assert [backoff.ceiling(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 20, 20]
    assert backoff.delay(3, rand=lambda: 0.0) == 0.0
    assert backoff.delay(3, rand=lambda: 0.5) == 2.0
    assert backoff.ceiling(10_000) == 20  # no overflow for absurd attempts


def test_jitter_spreads_over_the_whole_interval() -> None:
    delays = [Backoff(base_s=1, cap_s=8).delay(3) for _ in range(2000)]
    assert 0 <= min(delays) < 0.5
    assert 7.5 < max(delays) <= 8


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        (" 120 ", 120.0),
        ("Mon, 15 Jan 2024 08:30:30 GMT", 30.0),
        ("Mon, 15 Jan 2024 08:29:00 GMT", 0.0),  # in the past: now
        ("Mon, 15 Jan 2024 08:30:20 -0000", 20.0),  # a date with no zone is taken as UTC
        (None, None),
        ("", None),
        ("soon", None),
        ("-3", None),
    ],
)
def test_retry_after_both_forms(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, now=NOW) == seconds


def test_nonsense_backoff_is_refused() -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(base_s=0)


def test_a_retry_policy_without_a_try_is_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts must be at least 1"):
        RetryPolicy(max_attempts=0)


def test_one_try_and_a_fixed_backoff_are_allowed() -> None:
    assert RetryPolicy(max_attempts=1).delay(0, None) is None  # one try, no retry
    assert Backoff(base_s=2, cap_s=2).ceiling(5) == 2


def test_retry_after_without_a_clock_counts_from_now() -> None:
    seconds = retry_after_seconds("Mon, 15 Jan 2124 08:30:00 GMT")
    assert seconds is not None
    assert seconds > 0


def test_retry_policy_uses_its_tries_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_attempts=3, backoff=Backoff(base_s=1, cap_s=10))
    assert policy.delay(0, None, rand=lambda: 0.5) == 0.5
    assert policy.delay(1, 5.0, rand=lambda: 0.5) == 5.0  # never less than Retry-After
    assert policy.delay(2, None) is None  # three tries made


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (None, None, True),  # no answer: connection error or timeout
        (429, "APIGW.0308", True),
        (500, "Ecs.0615", True),
        (503, "503", True),
        (501, "Ecs.0603", False),  # busy server: come back in a minute, not now
        (400, "Ecs.0005", False),
        (401, "APIGW.0301", False),
        (404, "Ecs.0114", False),
    ],
)
def test_what_is_retried(status: int | None, code: str | None, expected: bool) -> None:
    assert retryable(status, code) is expected
