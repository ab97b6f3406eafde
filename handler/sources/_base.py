"""What every source adapter returns: one ``Record`` per record of the incoming event.

A record is a detach request, a precise error (field path and reason), or a reason why it needs
no action (a resolved alert, an alarm back to ``ok``). Nothing in a batch is dropped silently.
An event that is unusable as a whole (not JSON, not the source's envelope) raises
``InvalidInput`` instead.
"""

from typing import NamedTuple

from handler.core.models import DetachRequest
from handler.core.validation import InvalidInput


class Record(NamedTuple):
    ref: str  # where in the event, e.g. "alerts[2]" or "records[0].messages[1]"
    request: DetachRequest | None = None
    error: InvalidInput | None = None
    ignored: str | None = None

    @classmethod
    def ok(cls, ref: str, request: DetachRequest) -> "Record":
        return cls(ref, request=request)

    @classmethod
    def bad(cls, ref: str, error: InvalidInput) -> "Record":
        return cls(ref, error=error)

    @classmethod
    def skip(cls, ref: str, reason: str) -> "Record":
        return cls(ref, ignored=reason)


class Parsed(NamedTuple):
    source: str  # "plain", "alertmanager", "grafana", "smn", "tickets:jira", "cloudevents", …
    records: list[Record]
    confirm_url: str | None = None  # SMN SubscriptionConfirmation: GET this URL to confirm
