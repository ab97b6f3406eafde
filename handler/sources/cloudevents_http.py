"""CloudEvents 1.0 over HTTP, read with the ``cloudevents`` library: binary, structured, batch.

Binary mode: ``ce-*`` headers carry the attributes and the body the data. Structured mode:
``Content-Type: application/cloudevents+json``, or ``application/json`` with ``specversion`` in
the body. Batch mode: ``application/cloudevents-batch+json``, a JSON array of structured events;
the library has no batch reader, so each element goes through its JSON format on its own.
Only type ``ecs-detach.requested``; its data is the detach request (field paths ``data.…``).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Mapping
from urllib.parse import unquote

from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent, from_http, from_json

from handler.core.validation import ROOT, FieldError, InvalidInput, load_json, load_object
from handler.sources._base import Parsed, Record
from handler.sources.plain import check_cloudevent, cloudevent_record, reroot, tag

SOURCE = "cloudevents"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


def parse_cloudevent_http(headers: Mapping[str, str], body: bytes) -> Parsed:
    """One Record per event. ``idempotency_key`` defaults to ``cloudevent:{source}:{id}``;
    ``origin`` gets ``ce_source``, ``ce_id``, ``ce_type`` and ``source`` "cloudevents".

    Raises ``InvalidInput`` when the request holds no CloudEvent, or a single event is not a
    CloudEvents 1.0 ``ecs-detach.requested`` event; invalid data is a bad Record. In a batch,
    each event that is wrong is a bad Record under ``[i]``.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    media = lowered.get("content-type", "").split(";")[0].strip().lower()
    if any(name.startswith("ce-") for name in lowered):
        return Parsed(SOURCE, [_binary(lowered, body)])
    if media == BATCH:
        return Parsed(SOURCE, _batch(body))
    event = load_object(body)
    if media != STRUCTURED and "specversion" not in event:
        reason = f"expected ce-* headers, Content-Type {STRUCTURED} or {BATCH}, or a body with specversion"
        raise InvalidInput("not a CloudEvent", [FieldError(ROOT, reason)])
    return Parsed(SOURCE, [_structured(event, ref=ROOT)])


def _binary(headers: dict[str, str], body: bytes) -> Record:
    check_cloudevent({name[3:]: unquote(value) for name, value in headers.items() if name.startswith("ce-")})
    return _record(lambda: from_http(headers, body), ROOT)


def _structured(event: dict[str, object], *, ref: str) -> Record:
    check_cloudevent(event)
    text = json.dumps(event)
    return _record(lambda: from_json(text), ref)


def _batch(body: bytes) -> list[Record]:
    events = load_json(body)
    if not isinstance(events, list):
        raise InvalidInput("not a CloudEvents batch", [FieldError(ROOT, "expected a JSON array of events")])
    records = []
    for i, event in enumerate(events):
        ref = f"[{i}]"
        try:
            if not isinstance(event, dict):
                raise InvalidInput("not a CloudEvent", [FieldError(ROOT, "expected an object")])
            records.append(_structured(event, ref=ref))
        except InvalidInput as error:
            records.append(Record.bad(ref, reroot(error, ref)))
    return records


def _record(read: Callable[[], CloudEvent], ref: str) -> Record:
    """The library's reading of the event (``read``) as a Record; raises for a bad envelope."""
    try:
        event = read()
    except GenericException as exc:
        raise InvalidInput("invalid CloudEvent", [FieldError(ROOT, str(exc))]) from None
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("invalid CloudEvent", [FieldError("data_base64", str(exc))]) from None
    record = cloudevent_record(ref, "" if ref == ROOT else ref, event["source"], event["id"], event.data)
    return tag(record, source=SOURCE)


def cloudevent_object(headers: Mapping[str, str], body: bytes) -> dict[str, object]:
    """The one CloudEvent of an HTTP request (binary or structured mode) as its structured JSON
    object, e.g. an ``ecs-detach.accepted`` event a Knative Trigger delivers to the poll target.

    Raises ``InvalidInput`` when the request holds no single CloudEvent.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        if any(name.startswith("ce-") for name in lowered):
            event = from_http(lowered, body)
            attributes: dict[str, object] = dict(event.get_attributes())
            return {**attributes, "data": event.get_data()}
        return load_object(body)
    except GenericException as error:
        raise InvalidInput("not a CloudEvent", [FieldError(ROOT, str(error))]) from None
