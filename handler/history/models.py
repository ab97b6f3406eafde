"""The audit history's vocabulary, pure: which events are recorded, how steps form a request's
trail, and what the trail says became of it.

A *step* is one recorded event (``detach.requested``, ``detach.accepted``, ``poll.status``…)
with its fields as ``log_event`` gave them (secrets masked). A *trail* is one request and every
step that concerns it, across invocations and processes: the steps of the invocation that took
the request (``detach.requested`` opens the trail), its turns when it was queued, and the polls
and the result of its job. What became of the request (``Trail.outcome``) is the status of the
trail's latest step that has one.

How a step finds its trail (docs/history.md, "Trails"):

* ``detach.requested`` opens a new trail; the steps the same invocation logs after it (same
  thread or task, same idempotency key or none) join it (``in_request``);
* any other step names its trail by what it carries: the job (the trail whose
  ``detach.accepted`` started that job), else its idempotency key (the latest trail of that key
  that was queued or accepted: a queued request's turn); when neither finds one, it opens a
  trail of its own;
* ``poll.untrusted`` (a forged or stale jobs event), ``detach.invalid`` and ``detach.ignored``
  always open a trail of their own: they are recorded, and never change a real request's trail.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

RECORDED_PREFIXES = ("detach.", "poll.")
# Steps that are a request of their own, never part of another one's trail.
OWN_TRAIL = frozenset({"detach.invalid", "detach.ignored", "poll.untrusted"})
OPENS_REQUEST = "detach.requested"
# The steps that end the detach function's handling of one request (the invocation's context
# opened by ``detach.requested`` is closed by them).
ENDS_REQUEST = frozenset(
    {
        "detach.accepted",
        "detach.queued",
        "detach.still_queued",
        "detach.retry_later",
        "detach.duplicate",
        "detach.pending_approval",
        "detach.result",
    }
)
_STATUS = {
    "detach.requested": "requested",
    "detach.accepted": "accepted",
    "detach.queued": "queued",
    "detach.still_queued": "queued",
    "detach.retry_later": "retry",
    "detach.pending_approval": "pending_approval",
    "detach.invalid": "invalid",
    "detach.ignored": "ignored",
    "poll.untrusted": "untrusted",
}
# The statuses a request can end in; the others (requested, accepted, queued) are in flight.
IN_FLIGHT = frozenset({"requested", "accepted", "queued", "pending_approval"})
OUTCOMES = (
    "requested",
    "accepted",
    "queued",
    "pending_approval",
    "duplicate",
    "retry",
    "succeeded",
    "failed",
    "timed_out",
    "already_detached",
    "rejected",
    "dry_run",
    "invalid",
    "ignored",
    "untrusted",
)
# Step fields shown in a step's one-line summary (CLI and console), in this order; the rest is in
# the step's full fields.
SUMMARY_FIELDS = (
    "outcome",
    "status",
    "request_id",
    "attempt",
    "code",
    "error_code",
    "original",
    "retry_after_s",
    "polls",
    "duration_s",
    "reason",
    "fail_reason",
)
# A step that can be the turn of a queued request, its job's poll, or the decision on its
# approval and the turn after it: the statuses of the trail it joins by idempotency key.
JOINABLE_STATUSES = ("queued", "accepted", "pending_approval")


def recorded(event: str) -> bool:
    """Whether ``event`` belongs in the history (the steps of requests, not the plumbing)."""
    return event.startswith(RECORDED_PREFIXES)


def status_of(event: str, fields: Mapping[str, Any], *, in_request: bool) -> str | None:
    """The request status a step sets, or None for a step that only adds to the trail.

    A duplicate is a status only within the request it answers: a redelivered turn that finds
    its request ended already (``detach.duplicate`` outside a request) changes nothing."""
    if event == "detach.result":
        outcome = fields.get("outcome")
        return str(outcome) if outcome else None
    if event == "detach.duplicate":
        return "duplicate" if in_request else None
    return _STATUS.get(event)


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


class Step(NamedTuple):
    """One recorded event. ``trail`` is None until the writer names it (by job or key)."""

    at: datetime
    event: str
    fields: Mapping[str, Any]
    status: str | None = None
    trail: str | None = None
    opens: bool = False
    seq: int | None = None  # the order it was written in (set by the store)

    @property
    def idempotency_key(self) -> str | None:
        return _text(self.fields.get("idempotency_key"))

    @property
    def job_id(self) -> str | None:
        return _text(self.fields.get("job_id"))

    @property
    def server_id(self) -> str | None:
        return _text(self.fields.get("server_id"))

    @property
    def volume_id(self) -> str | None:
        return _text(self.fields.get("volume_id"))

    def as_dict(self) -> dict[str, Any]:
        """``status`` is what the step made of the request; ``fields`` what the event said."""
        return {
            "at": self.at.isoformat(),
            "event": self.event,
            "status": self.status,
            "fields": {key: value for key, value in self.fields.items() if value is not None},
        }


class Trail(NamedTuple):
    """One request and its steps, in the order they happened."""

    id: str
    steps: tuple[Step, ...]

    def _first(self, name: str) -> Any:
        return next((step.fields[name] for step in self.steps if step.fields.get(name) is not None), None)

    @property
    def started_at(self) -> datetime:
        return self.steps[0].at

    @property
    def outcome(self) -> str | None:
        """The status of the latest step that has one (in the order the steps were written)."""
        latest = max(
            (step for step in self.steps if step.status is not None),
            key=lambda step: step.seq or 0,
            default=None,
        )
        return latest.status if latest else None

    @property
    def finished_at(self) -> datetime | None:
        """When the request ended (its last step), or None while it is in flight."""
        return None if self.outcome in IN_FLIGHT or self.outcome is None else self.steps[-1].at

    @property
    def key(self) -> str | None:
        return _text(self._first("idempotency_key"))

    @property
    def server_id(self) -> str | None:
        return _text(self._first("server_id"))

    @property
    def volume_id(self) -> str | None:
        return _text(self._first("volume_id"))

    @property
    def job_id(self) -> str | None:
        accepted = [step.job_id for step in self.steps if step.event == "detach.accepted" and step.job_id]
        return accepted[-1] if accepted else _text(self._first("job_id"))

    @property
    def origin(self) -> dict[str, Any]:
        found = self._first("origin")
        return dict(found) if isinstance(found, Mapping) else {}

    def as_dict(self) -> dict[str, Any]:
        finished = self.finished_at
        return {
            "trail": self.id,
            "started_at": self.started_at.isoformat(),
            "finished_at": finished.isoformat() if finished else None,
            "duration_s": round((finished - self.started_at).total_seconds(), 3) if finished else None,
            "outcome": self.outcome,
            "idempotency_key": self.key,
            "server_id": self.server_id,
            "volume_id": self.volume_id,
            "job_id": self.job_id,
            "origin": self.origin,
            "steps": [step.as_dict() for step in self.steps],
        }
