"""The flow's own messages: a plain detach request (JSON), or one wrapped in a CloudEvent."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from handler.core.models import EVENT_ACCEPTED, EVENT_REQUESTED, CloudEvent, DetachAccepted, DetachRequest
from handler.core.validation import FieldError, InvalidInput, MalformedInput


def _load(raw: str | bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise MalformedInput("body is not valid JSON", [FieldError("(root)", str(exc))]) from None
    if not isinstance(value, dict):
        raise MalformedInput("body must be a JSON object", [FieldError("(root)", type(value).__name__)])
    return value


def parse_request(raw: str | bytes | dict[str, Any]) -> DetachRequest:
    """A ``DetachRequest`` as JSON, or a structured CloudEvent of type ``ecs-detach.requested``."""
    body = _load(raw)
    if "specversion" in body:
        try:
            event = CloudEvent[DetachRequest].model_validate(body)
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


def parse_accepted(raw: str | bytes | dict[str, Any]) -> CloudEvent[DetachAccepted]:
    """An ``ecs-detach.accepted`` CloudEvent from the jobs topic."""
    try:
        event = CloudEvent[DetachAccepted].model_validate(_load(raw))
    except ValidationError as exc:
        raise InvalidInput.from_validation("invalid ecs-detach.accepted event", exc) from None
    if event.type != EVENT_ACCEPTED:
        raise InvalidInput("unexpected event type", [FieldError("type", f"expected {EVENT_ACCEPTED!r}")])
    return event
