"""What an invocation may still spend — time, and cloud calls — set once by the entrypoint and
honoured by every call.

``with time_budget(seconds):`` (FunctionGraph: the context's remaining time less a margin;
a worker: the message's lease) makes the clients stop retrying, and shorten their timeouts,
so that nothing runs past it; the caller then re-publishes or nacks with a delay.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("ecs_detach_deadline", default=None)


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    token = _deadline.set(time.monotonic() + max(seconds, 0.0))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left in the current budget, or None when no budget is set."""
    deadline = _deadline.get()
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


_calls: ContextVar[list[int] | None] = ContextVar("ecs_detach_calls_left", default=None)


@contextmanager
def call_budget(calls: int) -> Iterator[None]:
    """At most ``calls`` cloud calls (tries included) within the block: one request with many
    records cannot make the functions read the cloud without bound. A call past the budget
    raises ``CallBudgetSpent`` instead of being sent."""
    token = _calls.set([max(calls, 0)])
    try:
        yield
    finally:
        _calls.reset(token)


def spend_call() -> bool:
    """Count one call against the budget; False when it is spent (no budget: always True)."""
    left = _calls.get()
    if left is None:
        return True
    if left[0] <= 0:
        return False
    left[0] -= 1
    return True
