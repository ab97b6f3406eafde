"""``ecs-detach results``: show the result events of a results topic (and its approval requests),
without taking them.

The deployment's own consumers (the next workflow step) keep every event: the topic is read
through its ``Browsable`` side (SQLite rows, Redis XREAD, NATS by sequence and a core
subscription). A RabbitMQ queue cannot be read without taking its messages, and push topics
(SMN, HTTP) are delivered to their subscribers: for those the command says what to do instead.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import TextIO

from pydantic import AwareDatetime, TypeAdapter, ValidationError

from handler.core.approval import Approval
from handler.core.followups import DetachResult
from handler.core.models import EVENT_APPROVAL_REQUESTED, CloudEvent
from handler.errors import ConfigError, EcsDetachError
from handler.topics import Browsable, Browsed, Topic, TopicError, open_topic

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")  # pydantic alone would take "10" as Unix time
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TIME = TypeAdapter(AwareDatetime)
_RESULT = TypeAdapter(CloudEvent[DetachResult])
_APPROVAL = TypeAdapter(CloudEvent[Approval])
DOCS = "docs/consuming-results.md"


SCHEMA_ID = "urn:ecs-detach:schema:result-event"


def result_event_schema() -> str:
    """The JSON Schema (2020-12) of a result event, from the models that write them; checked in
    as docs/schema/result-event.schema.json (``ecs-detach results --schema``)."""
    schema = {
        **_RESULT.json_schema(),
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "ecs-detach result event",
        "description": (
            "An ecs-detach result event: a CloudEvents 1.0 event in structured JSON mode whose type"
            " is ecs-detach.{outcome} and whose data says how one detach ended."
        ),
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


class CannotBrowse(EcsDetachError):
    """This topic cannot be read without taking its messages; the message says what to do."""


def parse_since(text: str, *, now: float | None = None) -> float:
    """``--since``: a duration back from now (``90s``, ``10m``, ``2h``, ``1d``) or an ISO 8601
    time with a zone (``2024-01-15T08:30:00Z``), as Unix time."""
    match = _DURATION.match(text.strip())
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        return (time.time() if now is None else now) - seconds
    try:
        if _ISO_DATE.match(text.strip()):
            return _TIME.validate_python(text.strip()).timestamp()
    except ValidationError:
        pass
    raise ConfigError(
        f"--since {text!r}: expected a duration (90s, 10m, 2h, 1d) or an ISO 8601 time with a"
        " zone (2024-01-15T08:30:00Z)"
    ) from None


def open_browsable(url: str) -> tuple[Topic, Browsable]:
    """The results topic ``url`` and its read-only side; raises ``CannotBrowse`` (with what to
    do instead) for topics that have none."""
    if url.startswith(("smn://", "http://", "https://")):
        raise CannotBrowse(
            f"{url.split('?', 1)[0]} is a push topic: each result event is delivered to its"
            f" subscribers, not kept to be read. Subscribe an HTTP receiver to it ({DOCS})."
        )
    topic = open_topic(url, default_name="results")
    if not isinstance(topic, Browsable):
        pending = topic.pending()
        topic.close()
        raise CannotBrowse(
            f"RabbitMQ cannot show the messages of the queue {topic.name!r} without taking them from"
            f" its consumers ({pending} ready now), and the topic publishes through the default"
            " exchange, which takes no other queue. Read the results where your workflow consumes"
            f" the queue (a minimal consumer: docs/examples/amqp_consumer.py), or put the results"
            f" topic on Redis or NATS, which ecs-detach results can read ({DOCS})."
        )
    return topic, topic


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _describe_approval(event: CloudEvent[Approval]) -> str:
    """An ``approval_requested`` event: when, which disk, the approval, why it needs one, who asked,
    until when, and the link to its page when the deployment has one."""
    approval = event.data
    parts = [_utc(event.time), f"{'approval_requested':<16}", event.subject or approval.subject]
    parts.append(f"approval {approval.id}")
    if approval.preview.approval_rules:
        parts.append(f"because {', '.join(approval.preview.approval_rules)}")
    if approval.requested_by:
        parts.append(f"asked by {', '.join(approval.requested_by)}")
    parts.append(f"expires {_utc(approval.expires_at)}")
    link = (event.model_extra or {}).get("approvalurl")
    if isinstance(link, str):
        parts.append(link)
    parts.append(f"key {approval.key}")
    return "  ".join(parts)


def describe(item: Browsed) -> str:
    """One line for a person: when, outcome, which disk, the job and why; for an approval
    request, the approval it waits for."""
    try:
        event = _RESULT.validate_json(item.body)
    except ValidationError:
        try:
            approval = _APPROVAL.validate_json(item.body)
        except ValidationError:
            approval = None
        if approval is not None and approval.type == EVENT_APPROVAL_REQUESTED:
            return _describe_approval(approval)
        return f"message {item.message_id}: not a result event ({len(item.body)} bytes)"
    result = event.data
    when = _utc(event.time)
    parts = [when, f"{result.outcome.value:<16}", event.subject or ""]
    if result.job_id:
        parts.append(f"job {result.job_id}")
    if result.error_code:
        parts.append(f"{result.error_code}: {result.fail_reason or ''}".rstrip(": "))
    if result.duration_s is not None:
        parts.append(f"{timedelta(seconds=round(result.duration_s))}")
    if result.idempotency_key:
        parts.append(f"key {result.idempotency_key}")
    return "  ".join(parts)


def show_results(
    url: str, *, follow: bool, as_json: bool, since: float | None, out: TextIO | None = None
) -> int:
    """Print the result events of ``url`` (one JSON event per line with ``as_json``); with
    ``follow``, go on printing new ones until interrupted. Returns how many were printed."""
    topic, browsable = open_browsable(url)
    printed = 0
    try:
        browser = browsable.browse(since=since)
        try:
            while True:
                items = browser.next(wait=1.0 if follow else 0.0)
                for item in items:
                    print(item.body if as_json else describe(item), file=out or sys.stdout, flush=True)
                printed += len(items)
                if not items and not follow:
                    return printed
        finally:
            browser.close()
    finally:
        topic.close()


def run(url: str, *, follow: bool, as_json: bool, since: str | None) -> int:
    """The command: exit 0, or 1 with the reason on stderr."""
    start = None if since is None else parse_since(since)
    try:
        printed = show_results(url, follow=follow, as_json=as_json, since=start)
    except (CannotBrowse, TopicError) as error:
        print(f"ecs-detach results: {error}", file=sys.stderr)
        return 1
    if printed == 0 and not as_json:
        print("no result events in the topic", file=sys.stderr)
    return 0
