"""FunctionGraph trigger events (docs/cloud-api.md §7.1): which trigger sent ``event``, and its records.

APIG events become an ``ApigRequest`` for the HTTP router; every other trigger becomes Records:
SMN (Cloud Eye alarms, see ``cloudeye.py``), DMS for Kafka and for RabbitMQ (one Record per
message, each a detach request or a structured CloudEvent), Timer (``user_event`` holds one),
and a direct invocation with a detach request or a CloudEvent. The RabbitMQ layout is
unconfirmed; it is read like Kafka's. ``origin.source`` of a request from a message names the
trigger (``dms-kafka``, ``dms-rabbitmq``, ``timer``) unless the message set one.
"""

import base64
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from handler.core.validation import ROOT, FieldError, InvalidInput
from handler.sources._base import Parsed, Record
from handler.sources.plain import message_record, parse_plain

ACCEPTED_SHAPES = (
    "an APIG request (httpMethod), an SMN trigger (record[]), a DMS Kafka or RabbitMQ trigger "
    "(records[].messages[]), a timer trigger (user_event), a detach request (server_id) "
    "or a CloudEvent (specversion)"
)


class ApigRequest(NamedTuple):
    """An HTTP request as APIG hands it to the function; header names lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes
    request_id: str


def detect_trigger(event: dict[str, Any]) -> Parsed | ApigRequest:
    """The records of ``event``, or the HTTP request in it (APIG).

    Raises ``InvalidInput`` for a shape none of the triggers has, naming those accepted.
    """
    if not isinstance(event, dict):
        raise InvalidInput("unrecognised event", [FieldError(ROOT, f"expected {ACCEPTED_SHAPES}")])
    if "httpMethod" in event:
        return _apig(event)
    if "record" in event:
        # Imported here: a function fed by other triggers never loads the alarm parsing.
        from handler.sources.cloudeye import parse_smn_trigger  # noqa: PLC0415

        return parse_smn_trigger(event)
    if "records" in event:
        return _dms(event)
    if "user_event" in event:
        return Parsed("timer", [message_record(event["user_event"], ref="user_event", source="timer")])
    if "server_id" in event or "specversion" in event:
        return parse_plain(event)
    keys = ", ".join(sorted(map(str, event))[:10]) or "none"
    raise InvalidInput(
        "unrecognised event", [FieldError(ROOT, f"expected {ACCEPTED_SHAPES}; got keys: {keys}")]
    )


def dms_messages(event: Mapping[str, Any]) -> list[tuple[str, object]]:
    """The messages of a DMS Kafka or RabbitMQ trigger event, each with its path in the event;
    a record without a ``messages`` list is one ``(path, InvalidInput)`` entry."""
    records = event["records"]
    if not isinstance(records, list):
        raise InvalidInput("invalid DMS trigger event", [FieldError("records", "expected a list")])
    found: list[tuple[str, object]] = []
    for i, record in enumerate(records):
        ref = f"records[{i}]"
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list):
            error = InvalidInput("invalid DMS record", [FieldError(f"{ref}.messages", "required: a list")])
            found.append((ref, error))
            continue
        found += [(f"{ref}.messages[{j}]", message) for j, message in enumerate(messages)]
    return found


def _dms(event: Mapping[str, Any]) -> Parsed:
    kind = str(event.get("trigger_type", "")).lower()
    source = f"dms-{kind}" if kind in ("kafka", "rabbitmq") else "dms"
    return Parsed(
        source,
        [
            Record.bad(ref, message)
            if isinstance(message, InvalidInput)
            # One Record per message; a message that is not a request is a bad Record, not an error.
            else message_record(message, ref=ref, source=source)
            for ref, message in dms_messages(event)
        ],
    )


def _apig(event: Mapping[str, Any]) -> ApigRequest:
    errors: list[FieldError] = []

    def text(name: str, value: object, default: str = "") -> str:
        if value is None:
            return default
        if not isinstance(value, str):
            errors.append(FieldError(name, "expected a string"))
            return default
        return value

    def strings(name: str) -> dict[str, str]:
        value = event.get(name) or {}
        if not isinstance(value, dict):
            errors.append(FieldError(name, "expected an object"))
            return {}
        return {str(key): text(f"{name}.{key}", item) for key, item in value.items()}

    method = text("httpMethod", event["httpMethod"]).upper()
    if not method:
        errors.append(FieldError("httpMethod", "required: the HTTP method"))
    context = event.get("requestContext")
    request = ApigRequest(
        method=method,
        path=text("path", event.get("path"), "/"),
        headers={key.lower(): value for key, value in strings("headers").items()},
        query=strings("queryStringParameters"),
        body=_body(event, errors),
        request_id=text("requestContext.requestId", context.get("requestId"))
        if isinstance(context, dict)
        else "",
    )
    if errors:
        raise InvalidInput("invalid APIG event", errors)
    return request


def _body(event: Mapping[str, Any], errors: list[FieldError]) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        errors.append(FieldError("body", "expected a string"))
        return b""
    if event.get("isBase64Encoded") is True:
        try:
            return base64.b64decode(body, validate=True)
        except ValueError as exc:  # binascii.Error, or non-ASCII text
            errors.append(FieldError("body", f"isBase64Encoded is true but the body is not base64: {exc}"))
            return b""
    try:
        return body.encode()
    except UnicodeEncodeError:
        errors.append(FieldError("body", "not encodable as UTF-8"))
        return b""


def apig_response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The answer APIG expects from the function: a JSON body as a string, not base64."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body, default=str, separators=(",", ":")),
        "isBase64Encoded": False,
    }
