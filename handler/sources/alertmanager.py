"""Prometheus Alertmanager webhook (payload ``version`` "4"): one request per firing alert.

IDs come from the alert's labels, then ``commonLabels``, under the names ``LabelNames`` gives.
A resolved alert is skipped; a firing one without the labels is a bad Record naming them.
Grafana's contact point sends the same shape (see ``grafana.py``), so both share this code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from handler.core.validation import FieldError, InvalidInput, load_object
from handler.sources._base import Parsed, Record
from handler.sources._labels import LabelNames
from handler.sources.plain import fit, validate_request

_ID_FIELDS = ("server_id", "volume_id", "device", "project_id")


DEFAULT_LABELS = LabelNames()


class _Envelope(BaseModel):
    groupKey: str = ""
    receiver: str = ""
    commonLabels: dict[str, str] = Field(default={})
    alerts: list[Any]


class _Alert(BaseModel):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default={})
    startsAt: str = Field(min_length=1)
    fingerprint: str = Field(min_length=1)


AlertOrigin = Callable[[Mapping[str, Any]], dict[str, str]]


def parse_alertmanager(raw: str | bytes | dict[str, Any], names: LabelNames = DEFAULT_LABELS) -> Parsed:
    """One Record per alert of an Alertmanager webhook; ``idempotency_key`` is
    ``alertmanager:{fingerprint}:{startsAt}``. Raises ``InvalidInput`` for a version other than "4"."""
    return alert_records(load_object(raw), source="alertmanager", version="4", names=names)


def alert_records(
    body: Mapping[str, Any],
    *,
    source: str,
    version: str,
    names: LabelNames,
    extra_origin: AlertOrigin | None = None,
) -> Parsed:
    """The Alertmanager-shaped payload ``body`` as Records; ``extra_origin(alert)`` adds to origin."""
    if body.get("version") != version:
        reason = f"expected {version!r}, got {body.get('version')!r}"
        raise InvalidInput(f"unsupported {source} webhook version", [FieldError("version", reason)])
    try:
        envelope = _Envelope.model_validate(body)
    except ValidationError as exc:
        raise InvalidInput.from_validation(f"invalid {source} webhook", exc) from None
    return Parsed(
        source,
        [
            _record(
                f"alerts[{i}]",
                alert,
                envelope=envelope,
                names=names,
                source=source,
                extra_origin=extra_origin,
            )
            for i, alert in enumerate(envelope.alerts)
        ],
    )


def _record(
    ref: str,
    raw: object,
    *,
    envelope: _Envelope,
    names: LabelNames,
    source: str,
    extra_origin: AlertOrigin | None,
) -> Record:
    if not isinstance(raw, dict):
        return Record.bad(ref, InvalidInput("invalid alert", [FieldError(ref, "expected an object")]))
    if raw.get("status") == "resolved":
        return Record.skip(ref, "alert resolved")
    try:
        alert = _Alert.model_validate(raw)
    except ValidationError as exc:
        return Record.bad(ref, InvalidInput.from_validation("invalid alert", exc, prefix=ref))
    values: dict[str, Any] = {}
    paths = {"idempotency_key": f"{ref}.fingerprint", "alert_id": f"{ref}.fingerprint", "origin": ref}
    for field in _ID_FIELDS:
        for name in getattr(names, field):  # an empty label is no label, as in Prometheus
            if alert.labels.get(name) or envelope.commonLabels.get(name):
                on_alert = bool(alert.labels.get(name))
                values[field] = alert.labels[name] if on_alert else envelope.commonLabels[name]
                paths[field] = f"{ref}.labels.{name}" if on_alert else f"commonLabels.{name}"
                break
    missing = _missing(ref, values, names)
    if missing:
        return Record.bad(ref, InvalidInput(f"{source} alert lacks the labels to detach a disk", missing))
    alertname = alert.labels.get("alertname", "")
    origin = {
        "source": source,
        "fingerprint": alert.fingerprint,
        "groupKey": envelope.groupKey,
        "receiver": envelope.receiver,
        "alertname": alertname,
        "starts_at": alert.startsAt,  # when the alert began: the console's time to detached
        **(extra_origin(raw) if extra_origin else {}),
    }
    notes = [alert.annotations.get(key, "").strip() for key in ("summary", "description")]
    data = {
        **values,
        "reason": fit(
            "reason",
            " — ".join(n for n in notes if n) or f"{source} alert {alertname or alert.fingerprint} firing",
        ),
        "idempotency_key": f"{source}:{alert.fingerprint}:{alert.startsAt}",
        "alert_id": alert.fingerprint,
        "origin": {key: value for key, value in origin.items() if value},
    }
    try:
        return Record.ok(
            ref, validate_request(data, summary=f"invalid {source} alert", paths=paths, prefix=ref)
        )
    except InvalidInput as error:
        return Record.bad(ref, error)


def _missing(ref: str, values: Mapping[str, Any], names: LabelNames) -> list[FieldError]:
    def listed(labels: tuple[str, ...]) -> str:
        return " or ".join(repr(label) for label in labels)

    errors = []
    if "server_id" not in values:
        reason = f"missing: no label {listed(names.server_id)} on the alert or in commonLabels"
        errors.append(FieldError(f"{ref}.labels.{names.server_id[0]}", reason))
    if "volume_id" not in values and "device" not in values:
        labels = names.volume_id + names.device
        reason = f"missing: no label {listed(labels)} on the alert or in commonLabels"
        errors.append(FieldError(f"{ref}.labels.{labels[0]}", reason))
    return errors
