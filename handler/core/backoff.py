"""How long to wait before trying again: full-jitter exponential backoff and ``Retry-After``."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Final


# Backoff and RetryPolicy are plain classes, not frozen dataclasses: both are made at import on
# a cold start, where a dataclass costs about 0.5 ms to create. Their fields are Final (set
# once, as frozen fields were); nothing compares or prints them, so they have no __eq__ or
# __repr__.
class Backoff:
    """Full jitter: attempt ``n`` (0-based) waits uniformly in ``[0, min(cap, base × 2ⁿ)]``."""

    __slots__ = ("base_s", "cap_s")

    def __init__(self, base_s: float = 0.5, cap_s: float = 20.0) -> None:
        if not 0 < base_s <= cap_s:
            raise ValueError("backoff needs 0 < base_s <= cap_s")
        self.base_s: Final = base_s
        self.cap_s: Final = cap_s

    def ceiling(self, attempt: int) -> float:
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt, 62))

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        return rand() * self.ceiling(attempt)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


_DEFAULT_BACKOFF = Backoff()


class RetryPolicy:
    """How many times one call is tried, and how long to wait between tries."""

    __slots__ = ("backoff", "max_attempts")

    def __init__(self, max_attempts: int = 3, backoff: Backoff = _DEFAULT_BACKOFF) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts: Final = max_attempts
        self.backoff: Final = backoff

    def delay(
        self, attempt: int, retry_after_s: float | None, rand: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds before try ``attempt + 2`` after try ``attempt + 1`` failed retryably, or None
        when the tries are used up. A ``Retry-After`` is honoured (never waits less than it)."""
        if attempt + 1 >= self.max_attempts:
            return None
        jitter = self.backoff.delay(attempt, rand)
        return max(jitter, retry_after_s) if retry_after_s is not None else jitter


def retryable(status: int | None, code: str | None) -> bool:
    """Worth another try now: throttled (429), a server error (5xx) or no answer (``status``
    None: connection error or timeout) — but not ``Ecs.0603`` (other commands are running on
    the server: that takes about a minute, so the caller comes back later instead)."""
    if code == "Ecs.0603":
        return False
    return status is None or status == 429 or status >= 500
