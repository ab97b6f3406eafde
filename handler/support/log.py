"""Structured logging: every step of the flow is one JSON line with an event name and fields.

``log_event("detach.accepted", job_id=…)`` writes through the ``ecs_detach`` logger; ``configure``
installs the JSON formatter (FunctionGraph and containers ship stdout to their log service).
Field names that look like secrets are masked as a last line of defence: the code never logs
credentials, and this keeps a mistake from reaching a log line. Fields carry text from outside
(keys and values of a request, the cloud's answers): no control character reaches a line raw,
so none can forge a line, repaint a terminal or reorder what is shown.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any

LOGGER_NAME = "ecs_detach"
_logger = logging.getLogger(LOGGER_NAME)
_SECRET_KEY = re.compile(r"(secret|token|password|authorization|signature|^sk$)", re.IGNORECASE)
MASK = "**********"
# What would end a line, repaint a terminal or reorder text if written raw: C0 and C1 controls,
# DEL, the line and paragraph separators, bidirectional overrides and isolates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def log_event(event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one step of the flow; ``fields`` become top-level JSON keys."""
    _logger.log(level, event, extra={"event": event, "fields": fields})


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields of a record written by ``log_event``, secrets masked."""
    fields: dict[str, Any] = getattr(record, "fields", {})
    return {key: MASK if _SECRET_KEY.search(key) else value for key, value in fields.items()}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", record.getMessage()),
            **event_fields(record),
        }
        if record.exc_info and record.exc_info[0] is not None:
            line["error_type"] = record.exc_info[0].__name__
        # json.dumps escapes C0 controls; the others, left raw by ensure_ascii=False, become
        # \\u escapes too (they can only be inside strings): the line reads back unchanged.
        text = json.dumps(line, default=str, ensure_ascii=False)
        return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def escape_controls(text: str) -> str:
    """``text`` with each control character written as its escape (``\\n``, ``\\x1b``,
    ``\\u2028``): shown as sent, on one line, with no effect on a terminal."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def configure(level: str | int = "INFO") -> None:
    """JSON lines on stderr for the ``ecs_detach`` logger (idempotent)."""
    if any(isinstance(h.formatter, JsonFormatter) for h in _logger.handlers):
        _logger.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    _logger.addHandler(handler)
    _logger.setLevel(level)
    _logger.propagate = False


def redact_url(url: str) -> str:
    """``url`` without userinfo, query and fragment: safe to show in a message or a log.

    Works on malformed URLs too, erring towards cutting too much.
    """
    head, separator, rest = url.partition("://")
    if not separator:
        head, rest = "", url
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    for mark in "?#":
        rest = rest.partition(mark)[0]
    return head + separator + rest
