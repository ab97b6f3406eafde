"""Ticket systems (Jira, ServiceNow, …): one JMESPath expression per request field, by mapping.

A ``TicketMapping`` reads a ticket webhook: ``fields`` maps request fields to expressions,
``ticket`` finds the ticket key or number (``origin.ticket``), ``origin`` adds more audit entries,
``when`` must be true (JMESPath truthiness) or the record is skipped, and ``records`` (optional)
picks a list from the payload: one record per item, the other expressions then read the item.
A null or empty-string result counts as absent. Errors name the expression that failed, under
``{records}[i]`` in a list. Built-in mappings ship as JSON in ``mappings/``; a user file (a JSON
list of mappings, or one mapping) adds to them and wins on a name both define.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from handler.core.validation import ROOT, FieldError, InvalidInput, load_object
from handler.sources._base import Parsed, Record
from handler.sources.plain import as_text, fit, join_path, validate_request

REQUEST_FIELDS = (
    "server_id",
    "volume_id",
    "device",
    "project_id",
    "region",
    "delete_flag",
    "reason",
    "idempotency_key",
    "alert_id",
)


class MappingError(InvalidInput):
    """A ticket mapping that cannot load: the summary names the mapping, the errors its parts."""


def _compiles(expression: str) -> str:
    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValueError(f"invalid JMESPath expression: {exc}") from None
    return expression


Expression = Annotated[str, AfterValidator(_compiles)]


class TicketMapping(BaseModel):
    """How to read one ticket system's webhook; expressions are compiled once, at load."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    description: str = ""
    ticket: Expression
    fields: dict[str, Expression]
    origin: dict[str, Expression] = Field(default={})
    records: Expression | None = None
    when: Expression | None = None
    _compiled: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("fields")
    @classmethod
    def _request_fields(cls, fields: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(fields) - set(REQUEST_FIELDS))
        if unknown:
            raise ValueError(f"not request fields: {', '.join(unknown)} (known: {', '.join(REQUEST_FIELDS)})")
        if "server_id" not in fields or not {"volume_id", "device"} & set(fields):
            raise ValueError("map server_id, and volume_id or device")
        return fields

    def model_post_init(self, context: Any, /) -> None:
        expressions = [self.ticket, *self.fields.values(), *self.origin.values(), self.records, self.when]
        self._compiled = {e: jmespath.compile(e) for e in expressions if e is not None}

    def search(self, expression: str, data: object) -> Any:
        """The compiled ``expression`` applied to ``data``; ``JMESPathError`` if it fails."""
        return self._compiled[expression].search(data)


def load_mappings(path: Path | None = None) -> dict[str, TicketMapping]:
    """The built-in mappings (``jira``, ``servicenow``), then those in ``path``, by name.

    Raises ``MappingError`` naming the file, the mapping and the field that is wrong.
    """
    mappings: dict[str, TicketMapping] = {}
    for entry in sorted(
        resources.files("handler.sources").joinpath("mappings").iterdir(), key=lambda e: e.name
    ):
        if entry.name.endswith(".json"):
            mapping = _mappings(entry.read_text(encoding="utf-8"), f"built-in {entry.name}")[0]
            mappings[mapping.name] = mapping
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MappingError("cannot read ticket mappings", [FieldError(str(path), str(exc))]) from None
        mappings |= {mapping.name: mapping for mapping in _mappings(text, str(path))}
    return mappings


def _mappings(text: str, where: str) -> list[TicketMapping]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise MappingError(f"ticket mappings in {where} are not JSON", [FieldError(ROOT, str(exc))]) from None
    items = value if isinstance(value, list) else [value]
    mappings: list[TicketMapping] = []
    for i, item in enumerate(items):
        prefix = f"[{i}]" if isinstance(value, list) else ""
        name = item.get("name") if isinstance(item, dict) else None
        label = repr(name) if isinstance(name, str) else f"#{i}"
        try:
            mapping = TicketMapping.model_validate(item)
        except ValidationError as exc:
            raise MappingError.from_validation(
                f"invalid ticket mapping {label} in {where}", exc, prefix=prefix
            ) from None
        if any(m.name == mapping.name for m in mappings):
            raise MappingError(
                f"ticket mapping {label} defined twice in {where}",
                [FieldError(join_path(prefix, "name"), "duplicate")],
            )
        mappings.append(mapping)
    return mappings


def parse_ticket(raw: str | bytes | dict[str, Any], mapping: TicketMapping) -> Parsed:
    """Records from a ticket webhook read by ``mapping``; the source is ``tickets:{name}``.

    Raises ``InvalidInput`` when the body is not a JSON object, or ``records`` gives no list.
    """
    body = load_object(raw)
    source = f"tickets:{mapping.name}"
    if mapping.records is None:
        return Parsed(source, [_record(ROOT, "", body, mapping)])
    try:
        items = mapping.search(mapping.records, body)
    except JMESPathError as exc:
        raise InvalidInput("ticket mapping failed", [FieldError(mapping.records, str(exc))]) from None
    if not isinstance(items, list):
        reason = f"expected a list, got {type(items).__name__}"
        raise InvalidInput(f"no records in the {mapping.name} ticket", [FieldError(mapping.records, reason)])
    refs = [f"{mapping.records}[{i}]" for i in range(len(items))]
    return Parsed(source, [_record(ref, ref, item, mapping) for ref, item in zip(refs, items, strict=True)])


def _record(ref: str, prefix: str, item: object, mapping: TicketMapping) -> Record:
    def value(expression: str) -> Any:
        try:
            found = mapping.search(expression, item)
        except JMESPathError as exc:
            error = FieldError(path(expression), str(exc))
            raise InvalidInput(f"ticket mapping {mapping.name!r} failed", [error]) from None
        return None if found == "" else found

    def path(expression: str) -> str:
        return join_path(prefix, expression)

    try:
        if mapping.when is not None and not _truthy(value(mapping.when)):
            return Record.skip(ref, f"condition not met: {mapping.when}")
        ticket = as_text(value(mapping.ticket))
        if not ticket:
            reason = "missing: the ticket key or number"
            raise InvalidInput(f"invalid {mapping.name} ticket", [FieldError(path(mapping.ticket), reason)])
        data = {field: value(e) for field, e in mapping.fields.items()}
        extra = {key: as_text(value(e)) for key, e in mapping.origin.items()}
    except InvalidInput as error:
        return Record.bad(ref, error)
    if isinstance(data.get("reason"), str):
        data["reason"] = fit("reason", data["reason"])
    origin = {**extra, "source": f"tickets:{mapping.name}", "ticket": ticket}
    data = {k: v for k, v in data.items() if v is not None} | {
        "origin": {k: v for k, v in origin.items() if v}
    }
    try:
        return Record.ok(ref, validate_request(data, summary=f"invalid {mapping.name} ticket"))
    except InvalidInput as error:
        errors = []
        for e in error.errors:
            head = e.field.split(".", 1)[0]
            where = path(mapping.fields[head]) if head in mapping.fields else path(e.field)
            errors.append(FieldError(where, f"{head}: {e.reason}"))
        return Record.bad(ref, InvalidInput(error.summary, errors))


def _truthy(value: object) -> bool:
    """JMESPath truthiness: false, null and empty strings, lists and objects are false; 0 is true."""
    return not (value is None or value is False or (isinstance(value, (str, list, dict)) and not value))
