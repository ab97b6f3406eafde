"""The flow's own messages: a plain detach request (JSON), or one wrapped in a CloudEvent.

Also the helpers every adapter shares: re-rooting field paths of errors, fitting
free text into the request's limits.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from annotated_types import MaxLen
from pydantic import AwareDatetime, ValidationError

from handler.core.models import (
    EVENT_ACCEPTED,
    EVENT_APPROVAL_TURN,
    EVENT_QUEUED,
    EVENT_REQUESTED,
    CloudEvent,
    DetachAccepted,
    DetachRequest,
    event_model,
)
from handler.core.validation import ROOT, FieldError, InvalidInput, load_object
from handler.sources._base import Parsed, Record

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from handler.core.followups import ApprovalTurn, DetachQueued

_CE_REQUIRED = ("specversion", "id", "source", "type")


@cache
def _rfc3339() -> TypeAdapter[AwareDatetime]:
    """RFC 3339 times with a zone (a CloudEvent's ``time``), made on first use: off the path of
    a cold start, which then skips ``pydantic.type_adapter`` too."""
    from pydantic import TypeAdapter  # noqa: PLC0415

    return TypeAdapter(AwareDatetime)


def join_path(prefix: str, field: str) -> str:
    """``records[0]`` + ``server_id`` → ``records[0].server_id``; ``(root)`` stands for the prefix."""
    if not prefix or prefix == ROOT:
        return field
    if field == ROOT:
        return prefix
    return prefix + field if field.startswith("[") else f"{prefix}.{field}"


def reroot(error: InvalidInput, prefix: str) -> InvalidInput:
    """The same error with every field path under ``prefix`` (a record inside a batch)."""
    errors = [FieldError(join_path(prefix, e.field), e.reason) for e in error.errors]
    return type(error)(error.summary, errors or [FieldError(prefix or ROOT, error.summary)])


def remap(error: InvalidInput, paths: Mapping[str, str], prefix: str = "") -> InvalidInput:
    """Errors on request fields moved to where each value came from (``server_id`` → a label)."""
    errors = []
    for e in error.errors:
        head = re.split(r"[.\[]", e.field, maxsplit=1)[0]
        field = paths[head] + e.field[len(head) :] if head in paths else join_path(prefix, e.field)
        errors.append(FieldError(field, e.reason))
    return type(error)(error.summary, errors)


def validate_request(
    data: Mapping[str, Any], *, summary: str, paths: Mapping[str, str] | None = None, prefix: str = ""
) -> DetachRequest:
    """``DetachRequest`` from ``data``; errors name ``paths[field]`` (or ``prefix.field``)."""
    try:
        return DetachRequest.model_validate(data)
    except ValidationError as exc:
        error = InvalidInput.from_validation(summary, exc)
    if data.get("device") is not None:  # "volume_id or device is required" only echoes a bad device
        kept = [e for e in error.errors if not (e.field == "volume_id" and "or device" in e.reason)]
        error = InvalidInput(summary, kept)
    raise remap(error, paths or {}, prefix)


def _max_length(field: str) -> int:
    return next(m.max_length for m in DetachRequest.model_fields[field].metadata if isinstance(m, MaxLen))


def fit(field: str, text: str) -> str:
    """``text`` cut to the ``max_length`` of the request's ``field`` (ends with … when cut)."""
    limit = _max_length(field)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_text(value: object) -> str:
    """A string, or a number as text; anything else (null, bool, list, object) as ''."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ""
    return str(value)


def tag(record: Record, **origin: str) -> Record:
    """The record with the ``origin`` entries its request does not carry yet, if they fit."""
    if record.request is None:
        return record
    merged = {**origin, **record.request.origin}
    if len(merged) > _max_length("origin"):
        return record
    return Record.ok(record.ref, record.request.model_copy(update={"origin": merged}))


def parse_request(raw: str | bytes | dict[str, Any]) -> DetachRequest:
    """A ``DetachRequest`` as JSON, or a structured CloudEvent of type ``ecs-detach.requested``."""
    body = load_object(raw)
    if "specversion" in body:
        try:
            event = event_model(DetachRequest).model_validate(body)
        except ValidationError as exc:
            raise InvalidInput.from_validation("invalid CloudEvent", exc) from None
        if event.type != EVENT_REQUESTED:
            raise InvalidInput(
                "unsupported CloudEvent type", [FieldError("type", f"expected {EVENT_REQUESTED!r}")]
            )
        return event.data
    try:
        return DetachRequest.model_validate(body)
    except ValidationError as exc:
        raise InvalidInput.from_validation("invalid detach request", exc) from None


def check_cloudevent(attributes: Mapping[str, Any]) -> tuple[str, str]:
    """``(source, id)`` of a CloudEvents 1.0 envelope of type ``ecs-detach.requested``.

    Raises ``InvalidInput`` naming each missing or wrong attribute.
    """
    errors = [
        FieldError(name, "required: a non-empty string")
        for name in _CE_REQUIRED
        if not isinstance(attributes.get(name), str) or not attributes[name]
    ]
    if not errors and attributes["specversion"] != "1.0":
        errors.append(FieldError("specversion", f"expected '1.0', got {attributes['specversion']!r}"))
    if not errors and attributes["type"] != EVENT_REQUESTED:
        errors.append(FieldError("type", f"expected {EVENT_REQUESTED!r}, got {attributes['type']!r}"))
    if "time" in attributes:
        try:
            _rfc3339().validate_python(attributes["time"])
        except ValidationError:
            errors.append(FieldError("time", "not an RFC 3339 time with a time zone"))
    if errors:
        raise InvalidInput(f"not an {EVENT_REQUESTED} CloudEvent", errors)
    return attributes["source"], attributes["id"]


def cloudevent_record(ref: str, path: str, source: str, event_id: str, data: object) -> Record:
    """The request in a CloudEvent's ``data``; ``idempotency_key`` defaults to
    ``cloudevent:{source}:{id}`` and ``origin`` gets ``ce_source``, ``ce_id``, ``ce_type``."""
    where = join_path(path, "data")
    if not isinstance(data, dict):
        reason = "required" if data is None else f"expected a JSON object, got {type(data).__name__}"
        return Record.bad(ref, InvalidInput("invalid detach request", [FieldError(where, reason)]))
    try:
        request = validate_request(data, summary="invalid detach request", prefix=where)
        key = f"cloudevent:{source}:{event_id}"
        if len(key) > 256:
            key = "cloudevent:sha256:" + hashlib.sha256(f"{source}\n{event_id}".encode()).hexdigest()
        update = {
            "idempotency_key": request.idempotency_key or key,
            "origin": {**request.origin, "ce_source": source, "ce_id": event_id, "ce_type": EVENT_REQUESTED},
        }
        return Record.ok(
            ref,
            validate_request(request.model_dump() | update, summary="invalid detach request", prefix=where),
        )
    except InvalidInput as error:
        return Record.bad(ref, error)


def _plain_record(body: dict[str, Any], *, ref: str, path: str, source: str) -> Record:
    """Raises ``InvalidInput`` for a CloudEvent that is not ours; a bad request is a bad Record."""
    if "specversion" in body:
        ce_source, event_id = check_cloudevent(body)
        record = cloudevent_record(ref, path, ce_source, event_id, body.get("data"))
    else:
        try:
            record = Record.ok(ref, validate_request(body, summary="invalid detach request", prefix=path))
        except InvalidInput as error:
            record = Record.bad(ref, error)
    return tag(record, source=source)


def parse_plain(raw: str | bytes | dict[str, Any]) -> Parsed:
    """A detach request or a structured ``ecs-detach.requested`` CloudEvent, as one Record.

    Raises ``InvalidInput`` when the body is not a JSON object or not an ``ecs-detach.requested``
    CloudEvent; an invalid request is a bad Record. ``origin.source`` defaults to ``plain``.
    """
    return Parsed("plain", [_plain_record(load_object(raw), ref=ROOT, path="", source="plain")])


def message_record(body: object, *, ref: str, source: str, path: str | None = None) -> Record:
    """One broker message as one Record, never raising: errors sit under ``path`` (default ``ref``)."""
    where = ref if path is None else path
    try:
        return _plain_record(load_object(body), ref=ref, path=where, source=source)
    except InvalidInput as error:
        return Record.bad(ref, reroot(error, where))


def parse_message(body: str | bytes, *, source: str = "message") -> Parsed:
    """One broker message (a detach request or a structured CloudEvent) as one Record.

    Unlike ``parse_plain`` it never raises: a message that is not even JSON is a bad Record too,
    so a consumer can dead-letter it.
    """
    return Parsed(source, [message_record(body, ref=ROOT, source=source, path="")])


def parse_job_event(
    raw: str | bytes | dict[str, Any],
) -> CloudEvent[DetachAccepted] | CloudEvent[DetachQueued] | CloudEvent[ApprovalTurn]:
    """A message of the jobs topic: an ``ecs-detach.accepted`` event (a job to poll), an
    ``ecs-detach.queued`` event (a request waiting for its turn) or an
    ``ecs-detach.approval_turn`` event (a request kept for an approval, decided or due)."""
    from handler.core.followups import ApprovalTurn, DetachQueued  # noqa: PLC0415 (not a detach's)

    body = load_object(raw)
    kind = body.get("type")
    model: type[CloudEvent[Any]]
    if kind == EVENT_ACCEPTED:
        model = event_model(DetachAccepted)
    elif kind == EVENT_QUEUED:
        model = event_model(DetachQueued)
    elif kind == EVENT_APPROVAL_TURN:
        model = event_model(ApprovalTurn)
    else:
        expected = f"expected {EVENT_ACCEPTED!r}, {EVENT_QUEUED!r} or {EVENT_APPROVAL_TURN!r}"
        raise InvalidInput("unexpected event type", [FieldError("type", expected)])
    try:
        event: CloudEvent[DetachAccepted] | CloudEvent[DetachQueued] | CloudEvent[ApprovalTurn] = (
            model.model_validate(body)
        )
    except ValidationError as exc:
        raise InvalidInput.from_validation(f"invalid {kind} event", exc) from None
    return event
