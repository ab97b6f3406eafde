"""One vocabulary for what became of a request, and how every entry point answers it.

The detach function ends every request in one ``DetachStatus``; everything that answers a
caller derives its answer from it here, never from strings or HTTP codes:

* the HTTP status of one record (``record_http_status``) and of a whole request with several
  records (``batch_http_status``): webhooks, APIG, functions-framework;
* what a queue consumer does with the message (``batch_disposition``): ack, requeue after a
  delay, or dead-letter; a queue-triggered FunctionGraph batch raises for ``REQUEUE`` so the
  platform redelivers it.

Which outcomes are *final* (they complete an idempotency key, so a duplicate is answered with
the original outcome) is decided here too: ``completes_key``. ``PENDING_APPROVAL`` is kept like
``QUEUED``: in progress under its key until a decision or the expiry ends it; a queue consumer
acknowledges it (it is kept).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class DetachStatus(str, Enum):
    """What the detach function did with one request."""

    ACCEPTED = "accepted"
    """The cloud accepted the detach: a job is followed; its result event comes later."""
    QUEUED = "queued"
    """Another detach on the same server or volume is running: kept durably, made when it ends."""
    PENDING_APPROVAL = "pending_approval"
    """The approval policy asks a person first: kept durably with its preview until approved
    (then made like any request), denied or expired (``rejected``)."""
    DUPLICATE = "duplicate"
    """The same request (idempotency key) was handled before: its original outcome, no new call."""
    ALREADY_DETACHED = "already_detached"
    """Nothing to do: the disk is not attached (any more). Final; a result event says so."""
    REJECTED = "rejected"
    """Refused for good (policy, the cloud's 4xx, conflicting key). Final; a result event says why."""
    DRY_RUN = "dry_run"
    """Every check passed; the detach was reported, not made. Never consumes the request's key."""
    RETRY = "retry"
    """Not now (throttled, busy, no answer, blast radius, circuit open): ask again after a delay.
    Nothing is kept: the key is free for the retry."""
    INVALID = "invalid"
    """The record could not be read as a request (field paths say why)."""
    IGNORED = "ignored"
    """Nothing to act on (a resolved alert, a ticket in another state)."""


class QueueAction(str, Enum):
    """What a queue consumer does with a message, from the statuses of its records."""

    ACK = "ack"
    REQUEUE = "requeue"  # after the smallest retry delay; not counted as a failed delivery
    DEAD_LETTER = "dead_letter"  # nothing in it can ever be processed


# The outcomes of an earlier request that mean its detach was started (accepted or queued, and
# what its job became): a duplicate of it is answered 202, like the original.
STARTED = frozenset({"accepted", "queued", "pending_approval", "succeeded", "failed", "timed_out"})

_FINAL = frozenset({DetachStatus.ACCEPTED, DetachStatus.ALREADY_DETACHED, DetachStatus.REJECTED})


def completes_key(status: DetachStatus) -> bool:
    """Whether ``status`` is the request's final word, kept under its idempotency key (and
    answered to every duplicate). ``QUEUED`` and ``PENDING_APPROVAL`` keep the key in progress
    until its detach is made or refused; ``DRY_RUN``, ``RETRY`` and the rest leave the key free
    for the real or the retried request."""
    return status in _FINAL


def record_http_status(status: DetachStatus, original: str | None = None) -> int:
    """The HTTP status for one record; ``original`` is a duplicate's original outcome."""
    if status is DetachStatus.DUPLICATE:
        if original in STARTED:
            return 202
        return 409 if original == DetachStatus.REJECTED.value else 200
    return _HTTP[status]


_HTTP = {
    DetachStatus.ACCEPTED: 202,
    DetachStatus.QUEUED: 202,
    DetachStatus.PENDING_APPROVAL: 202,
    DetachStatus.ALREADY_DETACHED: 200,
    DetachStatus.REJECTED: 409,
    DetachStatus.DRY_RUN: 200,
    DetachStatus.RETRY: 503,
    DetachStatus.INVALID: 422,
    DetachStatus.IGNORED: 200,
}


def batch_http_status(records: Iterable[int]) -> int:
    """One status for a request of several records, from each record's status:

    503 if any must be retried (the sender retries all; the others answer as duplicates); else
    202 if any detach was started; else 422 if every record is invalid; else 409 if nothing but
    refusals and invalid records; else 200 (nothing to do, already detached, dry run)."""
    codes = list(records)
    if not codes:
        return 200
    if 503 in codes:
        return 503
    if 202 in codes:
        return 202
    if all(code == 422 for code in codes):
        return 422
    if 409 in codes and all(code in (409, 422) for code in codes):
        return 409
    return 200


def batch_disposition(statuses: Iterable[DetachStatus]) -> QueueAction:
    """Requeue a message when any of its records must be retried; dead-letter it when none of
    them can ever be processed (no records, or all invalid); else acknowledge it."""
    seen = list(statuses)
    if DetachStatus.RETRY in seen:
        return QueueAction.REQUEUE
    if not seen or all(status is DetachStatus.INVALID for status in seen):
        return QueueAction.DEAD_LETTER
    return QueueAction.ACK
