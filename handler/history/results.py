"""The history fed from result events: for deployments whose functions cannot reach a database.

A consumer of the results topic (on FunctionGraph: a small function subscribed to the results
topic's SMN topic, or triggered by its DMS queue, that alone sits in the database's VPC) records
each result event as a request's trail: its acceptance (when it had a job) and its result. It
knows what the event says (the request and its origin, the job, the cloud's request id, the
outcome, polls and duration) and nothing of the steps between (policy verdicts, queueing,
each poll): docs/history.md, "Two ways to feed it", compares the two.

Each event becomes one trail named by the event's ``source`` and ``id`` (which a result
published again after a crash keeps): a redelivered event is recognised and recorded once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from handler.core.followups import DetachResult
from handler.core.models import CloudEvent, event_model
from handler.core.validation import MalformedInput
from handler.errors import ConfigError
from handler.history._base import HistoryStore
from handler.history.models import Step
from handler.sources.triggers import dms_messages
from handler.support.log import log_event

RECORDED_FROM = "result event"  # marks the steps a consumer made, not the functions


def result_trail(event: CloudEvent[DetachResult]) -> tuple[Step, ...]:
    """The steps a result event stands for: ``detach.accepted`` at acceptance (``finished_at``
    less ``duration_s``) when the request had a job, then ``detach.result``."""
    result = event.data
    trail = hashlib.sha256(json.dumps([event.source, event.id]).encode()).hexdigest()[:32]
    request = result.model_dump(
        mode="json",
        include={"server_id", "volume_id", "device", "project_id", "idempotency_key", "alert_id"},
        exclude_none=True,
    )
    marks = {"recorded_from": RECORDED_FROM, "event_id": event.id, "event_source": event.source}
    ending = {
        **request,
        "outcome": result.outcome.value,
        "job_id": result.job_id,
        "request_id": result.request_id,
        "status": result.status,
        "error_code": result.error_code,
        "fail_reason": result.fail_reason,
        "polls": result.polls,
        "duration_s": result.duration_s,
        **marks,
    }
    ending = {key: value for key, value in ending.items() if value is not None}
    opening = {**request, "origin": result.origin, "reason": result.reason}
    finished = Step(result.finished_at, "detach.result", ending, result.outcome.value, trail)
    if result.job_id is None or result.duration_s is None:
        return (Step(finished.at, finished.event, {**opening, **ending}, finished.status, trail, True),)
    accepted_at = result.finished_at - timedelta(seconds=result.duration_s)
    accepted = {**opening, "job_id": result.job_id, "request_id": result.request_id, **marks}
    started = Step(accepted_at, "detach.accepted", accepted, "accepted", trail, opens=True)
    return (started, finished)


def record_results(history: HistoryStore, bodies: Iterable[object]) -> int:
    """Record each result event of ``bodies`` (JSON text or an object) not recorded before;
    how many were new. A body that is not a result event is logged and skipped: it cannot
    become one by being delivered again."""
    trails: list[Step] = []
    for body in bodies:
        try:
            event = _event(body)
        except (ValidationError, ValueError) as error:
            log_event("history.result_invalid", level=logging.WARNING, error=str(error)[:500])
            continue
        trails += result_trail(event)
    return history.append_new(trails)


def _event(body: object) -> CloudEvent[DetachResult]:
    if isinstance(body, (str, bytes)):
        return event_model(DetachResult).model_validate_json(body)
    return event_model(DetachResult).model_validate(body)


def trigger_messages(event: Mapping[str, Any]) -> list[object]:
    """The messages of a FunctionGraph trigger event on the results topic: SMN (``record`` →
    ``smn.message``) or DMS Kafka/RabbitMQ (``records`` → ``messages``)."""
    if isinstance(event.get("record"), list):
        return [
            record.get("smn", {}).get("message")
            for record in event["record"]
            if isinstance(record, Mapping) and isinstance(record.get("smn"), Mapping)
        ]
    if isinstance(event.get("records"), list):
        return [message for _, message in dms_messages(event) if not isinstance(message, Exception)]
    raise MalformedInput("not an SMN or DMS trigger event: expected 'record' or 'records'")


_history: HistoryStore | None = None


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """FunctionGraph: record the result events of an SMN or DMS trigger on the results topic in
    ``ECS_DETACH_HISTORY`` (PostgreSQL in the function's VPC). A history that cannot be written
    raises: the platform delivers the event again, and what was recorded is not recorded twice."""
    global _history  # noqa: PLW0603 (one connection per function instance, kept between invocations)
    if _history is None:
        from handler.entry.functiongraph import read_settings  # noqa: PLC0415
        from handler.history import open_history  # noqa: PLC0415
        from handler.settings import FunctionSettings  # noqa: PLC0415

        url = read_settings(FunctionSettings, context).history_url()
        if url is None:
            raise ConfigError("ECS_DETACH_HISTORY is off: there is no history to record the results in")
        _history = open_history(url)
    messages = trigger_messages(event)
    return {"messages": len(messages), "recorded": record_results(_history, messages)}
