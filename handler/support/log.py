"""Structured logging: every step of the flow is one JSON line with an event name and fields.

``log_event("detach.accepted", job_id=…)`` writes through the ``ecs_detach`` logger; ``configure``
installs the JSON formatter (FunctionGraph and containers ship stdout to their log service).
Field names that look like secrets are masked, and URLs in text fields redacted, as a last line
of defence: the code never logs credentials, and this keeps a mistake from reaching a log line.
``redact_url`` and ``redact_text`` are the one redaction for URLs and error texts that can carry
credentials (topics, stores, push endpoints, SMN, proxies). Fields carry text from outside (keys
and values of a request, the cloud's answers): no control character reaches a line raw, so none
can forge a line, repaint a terminal or reorder what is shown.

Recorders (``add_recorder``) are handed every event too, whatever the log level: the audit
history (``handler.history``) is one. They are not ``logging`` handlers on purpose: a level
or a filter that drops a log line must never drop an audit record.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

LOGGER_NAME = "ecs_detach"
_logger = logging.getLogger(LOGGER_NAME)
# A field is masked when its name holds one of these words (in any case), or is "sk".
_SECRET_WORDS = ("secret", "token", "password", "authorization", "signature")
MASK = "**********"
# What would end a line, repaint a terminal or reorder text if written raw: C0 and C1 controls,
# DEL, the line and paragraph separators, bidirectional overrides and isolates. The regular
# expressions of this module are compiled on first use (``re``'s cache keeps them): a cold start
# writes only ASCII lines and redacts no URL, and compiling them all cost about 1.5 ms of it.
_UNSAFE = "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"


Recorder = Callable[[str, Mapping[str, Any]], None]
"""Takes an event's name and its fields (secrets masked); must return quickly and not raise."""
_recorders: tuple[Recorder, ...] = ()
_recorders_lock = threading.Lock()


def add_recorder(recorder: Recorder) -> None:
    """Hand every later event to ``recorder`` (until ``remove_recorder``)."""
    global _recorders  # noqa: PLW0603 (one registry per process, replaced whole: readers need no lock)
    with _recorders_lock:
        _recorders = (*_recorders, recorder)


def remove_recorder(recorder: Recorder) -> None:
    """Stop handing events to ``recorder`` (no-op when it is not registered)."""
    global _recorders  # noqa: PLW0603
    with _recorders_lock:
        kept = list(_recorders)
        if recorder in kept:
            kept.remove(recorder)
        _recorders = tuple(kept)


def log_event(event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one step of the flow; ``fields`` become top-level JSON keys. Every registered
    recorder gets the event too, whatever the level; a recorder that fails is logged, never
    raised to the caller."""
    _logger.log(level, event, extra={"event": event, "fields": fields})
    recorders = _recorders
    if not recorders:
        return
    masked = {key: _masked(key, value) for key, value in fields.items()}
    for recorder in recorders:
        try:
            recorder(event, masked)
        except Exception as error:  # a recorder's bug must not fail the step it records
            _logger.warning(
                "log.recorder_failed",
                extra={"event": "log.recorder_failed", "fields": {"error": type(error).__name__}},
            )


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields of a record written by ``log_event``, secrets masked: a field whose name looks
    like a secret, and URLs in text (``redact_text``)."""
    fields: dict[str, Any] = getattr(record, "fields", {})
    return {key: _masked(key, value) for key, value in fields.items()}


@functools.lru_cache(maxsize=1024)
def _secret_name(key: str) -> bool:
    """Whether a field of this name is masked (the names are the code's own, a few dozen: each
    is matched once, not for every event)."""
    folded = key.casefold()
    return folded == "sk" or any(word in folded for word in _SECRET_WORDS)


def _masked(key: str, value: Any) -> Any:
    if _secret_name(key):
        return MASK
    if isinstance(value, str) and "://" in value:
        return redact_text(value)
    return value


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
        if text.isascii() and "\x7f" not in text:  # nothing unsafe left (most lines)
            return text
        return re.sub(_UNSAFE, lambda m: f"\\u{ord(m.group()):04x}", text)


def escape_controls(text: str) -> str:
    """``text`` with each control character written as its escape (``\\n``, ``\\x1b``,
    ``\\u2028``): shown as sent, on one line, with no effect on a terminal."""
    return re.sub(_UNSAFE, lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


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


# Query parameters whose values are shown: names the project's own URLs use, none of them secret.
SAFE_QUERY_PARAMS = frozenset({"topic", "prefix", "ca"})
_PARAM_NAME = r"[A-Za-z][A-Za-z0-9_.-]{0,31}"
# A path segment of a push endpoint that looks like a token (webhook services put keys there).
_TOKEN_SEGMENT = r"(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{16,}"  # noqa: S105 (a pattern)
_URL_IN_TEXT = r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+"
REDACTED = "***"


def redact_url(url: str) -> str:
    """``url`` with nothing secret left: fit for a message, a log line or a banner.

    The rule (docs/architecture.md, "Redaction"): scheme, host, port and path are kept, so two
    topics on one broker still read differently; userinfo (user and password, or a NATS token)
    becomes ``***@``; of the query, ``topic``, ``prefix`` and ``ca`` keep their values, any
    other ``name=value`` shows as ``name=***`` and anything else (a bare word, a strange name)
    is left out; the fragment is left out. In an ``http(s)`` path, a segment that looks like a
    token (16 or more letters, digits, ``-`` or ``_``, with both letters and digits) becomes
    ``***``. Works on malformed URLs too, erring towards cutting too much: the userinfo ends
    at the last ``@`` before the query, wherever the first ``/`` is.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    rest, _, _fragment = rest.partition("#")
    location, mark, query = rest.partition("?")
    if "@" in location:
        location = REDACTED + "@" + location.rpartition("@")[2]
    if scheme.lower() in ("http", "https"):
        host, slash, path = location.partition("/")
        segments = (REDACTED if re.fullmatch(_TOKEN_SEGMENT, part) else part for part in path.split("/"))
        location = host + slash + "/".join(segments)
    kept = [_redact_param(item) for item in query.split("&")] if mark else []
    shown = "&".join(item for item in kept if item)
    return scheme + separator + location + ("?" + shown if shown else "")


def _redact_param(item: str) -> str:
    name, equals, _value = item.partition("=")
    if not equals or not re.fullmatch(_PARAM_NAME, name):
        return ""
    return item if name in SAFE_QUERY_PARAMS else f"{name}={REDACTED}"


def redact_text(text: str, *secrets: str | None) -> str:
    """``text`` (an error message from a client library) with every URL in it redacted as
    ``redact_url`` does, and every one of ``secrets`` (a password or token the caller knows)
    replaced by ``***`` wherever it appears."""
    text = re.sub(_URL_IN_TEXT, lambda match: redact_url(match.group()), text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text
