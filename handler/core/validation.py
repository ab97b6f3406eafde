"""Turn pydantic validation errors into what a caller can act on: a field path and a reason."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True)
class FieldError:
    field: str  # dotted path, e.g. "data.server_id" or "records[2].messages[0]"
    reason: str


class InvalidInput(ValueError):
    """Input that cannot become a detach request (or a message of the flow)."""

    def __init__(self, summary: str, errors: list[FieldError] | None = None) -> None:
        self.summary = summary
        self.errors = errors or []
        detail = "; ".join(f"{e.field}: {e.reason}" for e in self.errors)
        super().__init__(f"{summary}: {detail}" if detail else summary)

    @classmethod
    def from_validation(cls, summary: str, error: ValidationError, *, prefix: str = "") -> InvalidInput:
        return cls(
            summary,
            [FieldError(_path(prefix, err["loc"]), _reason(err["msg"])) for err in error.errors()],
        )


def _reason(message: str) -> str:
    """pydantic prefixes the messages of custom validators with 'Value error, '."""
    return message.removeprefix("Value error, ")


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path or "(root)"


class MalformedInput(InvalidInput):
    """Not even the right syntax: not JSON, or not a JSON object."""
