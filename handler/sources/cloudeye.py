"""Cloud Eye (CES) alarms delivered by SMN: an HTTP(S) subscription, or the FunctionGraph SMN trigger.

Signatures are not verified here. Only an alarm in state ``alarm`` becomes a request:
``SYS.EVS`` dimension ``disk_name`` = ``{server_id}-{drive}`` gives the server and ``/dev/{drive}``;
``instance_id`` (``SYS.ECS``) gives the server only, so such an alarm needs a ``volume_id`` too.
``project_id`` and ``region`` come from the topic URN ``urn:smn:{region}:{project_id}:{topic}``.

**Unconfirmed** (docs/cloud-api.md §8.2): the CES JSON inside the SMN ``message``. Keys match whatever
their case, ``_`` or ``-`` (``alarm_id`` = ``AlarmId``), at the top level and under ``data``,
``alarm`` and ``metric``. Accepted: state from ``alarm_state``, ``alarm_status``, ``state`` or a
boolean ``is_alarm``; dimensions as a list of ``{name, value}``, an object, or the text
``name:value[,name:value]`` under ``dimensions``/``dimension``, or ``dimension_name`` with
``resource_id``; a volume from a ``volume_id``/``disk_id`` dimension or a ``volume_id`` key; time
from ``alarm_time``, ``time`` or ``timestamp``. A message holding a detach request or an
``ecs-detach.requested`` CloudEvent instead (``server_id`` or ``specversion``) is taken as one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handler.core.validation import FieldError, InvalidInput, MalformedInput, load_json, load_object
from handler.sources._base import Parsed, Record
from handler.sources.plain import as_text, fit, join_path, message_record, validate_request

SOURCE = "smn"
_TOPIC_URN = re.compile(r"urn:smn:([a-z0-9-]{1,64}):([0-9a-fA-F]{32}):[^:]+")
_DISK_NAME = re.compile(r"(.+)-([^-]+)")


@dataclass(frozen=True)
class _SmnMeta:
    """What SMN says about a message, beside the message itself."""

    topic_urn: str = ""
    message_id: str = ""


def parse_smn_http(headers: Mapping[str, str], body: bytes) -> Parsed:
    """An SMN HTTP(S) message: a subscription confirmation (``confirm_url`` set, no records; the
    URL's host is not checked here), an unsubscribe confirmation (nothing to do), or a notification
    (one Record, ``ref`` "message"). The type comes from ``X-SMN-MESSAGE-TYPE`` or the body's ``type``."""
    lowered = {name.lower(): value for name, value in headers.items()}
    envelope = load_object(body)
    kind = lowered.get("x-smn-message-type") or envelope.get("type")
    if not isinstance(kind, str) or not kind:
        raise InvalidInput(
            "not an SMN message", [FieldError("type", "missing: no X-SMN-MESSAGE-TYPE header or type field")]
        )
    if kind.lower() == "subscriptionconfirmation":
        url = envelope.get("subscribe_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise InvalidInput(
                "invalid SMN subscription confirmation",
                [FieldError("subscribe_url", "required: an http(s) URL")],
            )
        return Parsed(SOURCE, [], confirm_url=url)
    if kind.lower() == "unsubscribeconfirmation":
        return Parsed(SOURCE, [])
    if kind.lower() != "notification":
        reason = f"expected SubscriptionConfirmation, Notification or UnsubscribeConfirmation, got {kind!r}"
        raise InvalidInput("unsupported SMN message type", [FieldError("type", reason)])
    meta = _SmnMeta(
        topic_urn=as_text(envelope.get("topic_urn")) or lowered.get("x-smn-topic-urn", ""),
        message_id=as_text(envelope.get("message_id")) or lowered.get("x-smn-message-id", ""),
    )
    return Parsed(SOURCE, [_alarm_record("message", "message", envelope.get("message"), meta)])


def parse_smn_trigger(event: Mapping[str, Any]) -> Parsed:
    """FunctionGraph's SMN trigger ``{"record": [{"event_source": "smn", "smn": {...}}]}``: one
    Record per record (``ref`` "record[i]")."""
    records = event.get("record")
    if not isinstance(records, list):
        raise InvalidInput("not an SMN trigger event", [FieldError("record", "required: a list")])
    return Parsed(SOURCE, [_trigger_record(f"record[{i}]", item) for i, item in enumerate(records)])


def _trigger_record(ref: str, item: object) -> Record:
    def bad(field: str, reason: str) -> Record:
        return Record.bad(ref, InvalidInput("invalid SMN record", [FieldError(field, reason)]))

    if not isinstance(item, dict):
        return bad(ref, "expected an object")
    if item.get("event_source", SOURCE) != SOURCE:
        return bad(f"{ref}.event_source", f"expected 'smn', got {item.get('event_source')!r}")
    smn = item.get("smn")
    if not isinstance(smn, dict):
        return bad(f"{ref}.smn", "required: an object")
    kind = smn.get("type", "notification")
    if not isinstance(kind, str) or kind.lower() != "notification":
        return Record.skip(ref, f"SMN message type {kind!r}: not a notification")
    meta = _SmnMeta(topic_urn=as_text(smn.get("topic_urn")), message_id=as_text(smn.get("message_id")))
    return _alarm_record(ref, f"{ref}.smn.message", smn.get("message"), meta)


def _alarm_record(ref: str, path: str, message: object, meta: _SmnMeta) -> Record:
    """The SMN ``message`` (found at ``path``) as one Record: a CES alarm, or a detach request."""
    alarm = _decode(message)
    if isinstance(alarm, str):
        return Record.bad(ref, InvalidInput("not a Cloud Eye alarm", [FieldError(path, alarm)]))
    if "server_id" in alarm or "specversion" in alarm:
        return message_record(alarm, ref=ref, path=path, source=SOURCE)
    fields = _fields(alarm)
    state = _state(fields)
    if state != "alarm":
        if state is None:
            reason = "missing: no alarm_state, alarm_status, state or is_alarm"
            error = InvalidInput(
                "not a Cloud Eye alarm", [FieldError(join_path(path, "alarm_state"), reason)]
            )
            return Record.bad(ref, error)
        return Record.skip(ref, f"alarm state {state!r}: acting only on 'alarm'")
    target = _target(path, fields)
    if isinstance(target, FieldError):
        return Record.bad(ref, InvalidInput("Cloud Eye alarm names no disk to detach", [target]))
    return _request(ref, path, fields=fields, target=target, meta=meta)


def _decode(message: object) -> dict[str, Any] | str:
    """The alarm as an object, or why it is not one."""
    if message is None:
        return "required: the alarm, as JSON text"
    try:
        alarm = load_json(message) if isinstance(message, (str, bytes)) else message
    except MalformedInput:
        return "not JSON: a Cloud Eye alarm is a JSON text"
    return alarm if isinstance(alarm, dict) else f"expected a JSON object, got {type(alarm).__name__}"


def _request(
    ref: str,
    path: str,
    *,
    fields: Mapping[str, Any],
    target: tuple[dict[str, str], dict[str, str]],
    meta: _SmnMeta,
) -> Record:
    values, paths = target
    alarm_id, name = as_text(fields.get("alarmid")), as_text(fields.get("alarmname"))
    namespace, metric = as_text(fields.get("namespace")), as_text(fields.get("metricname"))
    time = as_text(fields.get("alarmtime")) or as_text(fields.get("time")) or as_text(fields.get("timestamp"))
    description = as_text(fields.get("alarmdescription")) or as_text(fields.get("alarmdesc"))
    topic = _TOPIC_URN.fullmatch(meta.topic_urn)
    if topic:
        values |= {"region": topic.group(1), "project_id": topic.group(2)}
    key = None
    if alarm_id and time:
        key = f"cloudeye:{alarm_id}:{time}"
    elif meta.message_id:
        key = f"smn:{meta.message_id}"
    origin = {
        "source": "cloudeye",
        "alarm_id": alarm_id,
        "alarm_name": name,
        "namespace": namespace,
        "metric_name": metric,
        "topic_urn": meta.topic_urn,
        "smn_message_id": meta.message_id,
    }
    data = {
        **values,
        "reason": fit("reason", description or f"Cloud Eye alarm {name or alarm_id} ({namespace} {metric})"),
        "idempotency_key": key,
        "alert_id": alarm_id or None,
        "origin": {k: v for k, v in origin.items() if v},
    }
    paths |= {"alert_id": join_path(path, "alarm_id"), "idempotency_key": join_path(path, "alarm_id")}
    try:
        return Record.ok(
            ref, validate_request(data, summary="invalid Cloud Eye alarm", paths=paths, prefix=path)
        )
    except InvalidInput as error:
        return Record.bad(ref, error)


def _target(path: str, fields: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]] | FieldError:
    """Server and disk from the dimensions, with where each came from; or what is missing."""
    dims = _dimensions(fields)
    where = join_path(path, "dimensions")
    volume_id, volume_path = dims.get("volume_id") or dims.get("disk_id"), f"{where}.volume_id"
    if volume_id is None and isinstance(fields.get("volumeid"), str):
        volume_id, volume_path = fields["volumeid"], join_path(path, "volume_id")
    disk = {"volume_id": volume_id} if volume_id else {}
    disk_paths = {"volume_id": volume_path} if volume_id else {}
    if "disk_name" in dims:
        match = _DISK_NAME.fullmatch(dims["disk_name"])
        if match is None:
            return FieldError(
                f"{where}.disk_name", f"expected {{server_id}}-{{drive}}, got {dims['disk_name']!r}"
            )
        server_id, drive = match.groups()
        values = {"server_id": server_id, "device": f"/dev/{drive}", **disk}
        return values, {"server_id": f"{where}.disk_name", "device": f"{where}.disk_name", **disk_paths}
    if "instance_id" in dims:
        if not volume_id:
            return FieldError(
                where, "a SYS.ECS alarm names no disk: instance_id but no disk_name or volume_id"
            )
        return {"server_id": dims["instance_id"], **disk}, {"server_id": f"{where}.instance_id", **disk_paths}
    namespace = as_text(fields.get("namespace")) or "?"
    found = ", ".join(sorted(dims)) or "none"
    return FieldError(
        where,
        f"expected dimension disk_name (SYS.EVS) or instance_id (SYS.ECS) in {namespace}; found: {found}",
    )


def _fields(alarm: Mapping[str, Any]) -> dict[str, Any]:
    """Keys normalised (lower case, no ``_``/``-``) from the alarm and its data/alarm/metric parts."""
    fields: dict[str, Any] = {}
    parts: list[Mapping[str, Any]] = [alarm]
    seen = 0
    while seen < min(len(parts), 8):  # breadth first, outer keys win
        normalised = {re.sub(r"[_-]", "", k.lower()): v for k, v in parts[seen].items() if isinstance(k, str)}
        for key, value in normalised.items():
            fields.setdefault(key, value)
        parts += [normalised[n] for n in ("data", "alarm", "metric") if isinstance(normalised.get(n), dict)]
        seen += 1
    return fields


def _state(fields: Mapping[str, Any]) -> str | None:
    for key in ("alarmstate", "alarmstatus", "state"):
        value = fields.get(key)
        if isinstance(value, str) and value:
            return value.lower()
    is_alarm = fields.get("isalarm")
    return ("alarm" if is_alarm else "ok") if isinstance(is_alarm, bool) else None


def _dimensions(fields: Mapping[str, Any]) -> dict[str, str]:
    raw = fields.get("dimensions", fields.get("dimension"))
    pairs: list[tuple[object, object]] = []
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict):
                named = {str(k).lower(): v for k, v in item.items()}
                pairs.append((named.get("name"), named.get("value")))
    elif isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, str):
        for part in re.split(r"[,;]", raw):
            name, colon, value = part.partition(":")
            if colon:
                pairs.append((name, value))
    pairs.append((fields.get("dimensionname"), fields.get("resourceid")))
    dims: dict[str, str] = {}
    for name, value in pairs:
        if isinstance(name, str) and isinstance(value, str) and value.strip():
            dims.setdefault(name.strip().lower(), value.strip())
    return dims
