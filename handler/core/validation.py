"""Turn pydantic validation errors into what a caller can act on: a field path and a reason;
and load JSON from outside (``load_json``, ``load_object``) with an error, never a crash."""

import json
from typing import Any, NamedTuple

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from handler.core.errors import EcsDetachError
from handler.core.models import DEVICE_PATTERN, JOB_ID_PATTERN, PROJECT_ID_PATTERN, UUID_PATTERN

ROOT = "(root)"


class FieldError(NamedTuple):
    field: str  # dotted path, e.g. "data.server_id" or "records[2].messages[0]"
    reason: str


class InvalidInput(EcsDetachError, ValueError):
    """Input that cannot become a detach request (or a message of the flow)."""

    def __init__(self, summary: str, errors: list[FieldError] | None = None) -> None:
        self.summary = summary
        self.errors = errors or []
        detail = "; ".join(f"{e.field}: {e.reason}" for e in self.errors)
        super().__init__(f"{summary}: {detail}" if detail else summary)

    @classmethod
    def from_validation(cls, summary: str, error: ValidationError, *, prefix: str = "") -> "InvalidInput":
        return cls(summary, [FieldError(_path(prefix, err["loc"]), _reason(err)) for err in error.errors()])


_PATTERN_NAMES = {
    UUID_PATTERN: "must be a UUID (8-4-4-4-12 hex digits)",
    PROJECT_ID_PATTERN: "must be a project ID (32 hex digits)",
    JOB_ID_PATTERN: "must be a job ID (32 hex digits or a UUID)",
    DEVICE_PATTERN: "must be a device name like vdb or /dev/vdb",
}


def _reason(error: ErrorDetails) -> str:
    """pydantic's message, with known patterns named and the 'Value error, ' prefix dropped."""
    if error["type"] == "string_pattern_mismatch":
        pattern = (error.get("ctx") or {}).get("pattern")
        if pattern in _PATTERN_NAMES:
            return _PATTERN_NAMES[pattern]
    return error["msg"].removeprefix("Value error, ")


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path or ROOT


class MalformedInput(InvalidInput):
    """Not even the right syntax: not JSON, or not a JSON object."""


def load_json(raw: str | bytes) -> Any:
    """The JSON value in ``raw``; ``MalformedInput`` naming why it is not JSON. Every JSON from
    outside is loaded here: nesting deeper than the interpreter's recursion limit (a 100,000-deep
    array is 200 kB) is an error like any other, not a ``RecursionError``."""
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise MalformedInput("body is not valid JSON", [FieldError(ROOT, str(exc))]) from None
    except RecursionError:
        raise MalformedInput("body is not valid JSON", [FieldError(ROOT, "nested too deeply")]) from None


def load_object(raw: object) -> dict[str, Any]:
    """A JSON object from text, bytes or an already decoded dict; ``MalformedInput`` otherwise."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, (str, bytes)):
        raise MalformedInput("expected JSON text", [FieldError(ROOT, type(raw).__name__)])
    value = load_json(raw)
    if not isinstance(value, dict):
        raise MalformedInput("body must be a JSON object", [FieldError(ROOT, type(value).__name__)])
    return value
