"""What a hostile or careless caller sends through the webhook server, as ``up`` runs it: the
Starlette app on a loopback port, the router, the runtime, the emulator behind them."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest
from rich.console import Console

from handler.entry.runtime import Runtime
from handler.local._console import show_events
from handler.local._serve import BackgroundServer
from handler.local.http import create_app
from handler.support.log import LOGGER_NAME, JsonFormatter, log_event
from tests.conftest import AUTH, Emulator
from tests.support import WEB1, WEB1_DATA

DEPTH = 100_000
DEEP_ARRAY = b"[" * DEPTH + b"]" * DEPTH
DEEP_OBJECT = b'{"a":' * 40_000 + b"1" + b"}" * 40_000
ROUTES = ["/", "/alertmanager", "/grafana", "/smn", "/tickets/jira"]
JSON = {"Content-Type": "application/json", **AUTH}


@pytest.fixture
def webhook(runtime: Runtime) -> Iterator[str]:
    with BackgroundServer(
        create_app(
            runtime.router,
            max_body_bytes=runtime.settings.max_body_bytes,
            body_timeout_s=runtime.settings.http_body_timeout_s,
        )
    ) as server:
        yield server.url


def _problem(answer: httpx.Response, status: int) -> dict[str, object]:
    assert answer.status_code == status, answer.text[:500]
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = answer.json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
def test_deeply_nested_json_is_a_400_on_every_route(
    webhook: str, emulator: Emulator, route: str, body: bytes
) -> None:
    problem = _problem(httpx.post(webhook + route, content=body, headers=JSON, timeout=30), 400)
    assert "nested too deeply" in json.dumps(problem)
    assert emulator.admin("GET", "calls")["calls"] == []


def test_a_deep_message_inside_an_smn_notification_is_a_4xx(webhook: str, emulator: Emulator) -> None:
    notification = {"type": "Notification", "message": DEEP_ARRAY.decode()}
    answer = httpx.post(f"{webhook}/smn", json=notification, headers=AUTH, timeout=30)
    assert answer.status_code in (400, 422), answer.text[:500]
    assert answer.headers["content-type"] == "application/problem+json"
    assert emulator.admin("GET", "calls")["calls"] == []


# -- log forging -------------------------------------------------------------------------------

# Each would start a line of its own, repaint the terminal or style what follows if echoed raw.
HOSTILE_TEXT = [
    "k\n✓ result: succeeded",
    "cr\rover",
    "\x1b[2J\x1b[31mansi",
    "[red]markup[/red]",
    "[link=https://evil.example]click[/link]",
    "ls\u2028ps\u2029",
    "nel\x85c1\x9b31m",
    "del\x7f",
    "bidi\u202eevil",
    ":warning: emoji",
]
# What must not reach a console or a log line raw: C0 and C1 controls, DEL, line and paragraph
# separators, bidirectional overrides.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def outputs() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """The console ``up`` shows and the JSON log lines, both captured; the logger restored after."""
    logger = logging.getLogger(LOGGER_NAME)
    saved = (logger.handlers[:], logger.level, logger.propagate)
    console, lines = io.StringIO(), io.StringIO()
    show_events(Console(file=console, width=10_000, color_system=None))
    json_handler = logging.StreamHandler(lines)
    json_handler.setFormatter(JsonFormatter())
    logger.addHandler(json_handler)
    yield console, lines
    logger.handlers, logger.level, logger.propagate = saved


def test_hostile_keys_reach_the_console_and_the_log_escaped(
    webhook: str, outputs: tuple[io.StringIO, io.StringIO]
) -> None:
    """A request whose invalid ``origin`` keys are echoed in the field paths of the warning."""
    console, lines = outputs
    body = {"server_id": WEB1, "volume_id": WEB1_DATA, "origin": {text: 1 for text in HOSTILE_TEXT}}
    answer = httpx.post(webhook, json=body, headers=AUTH, timeout=10)
    assert answer.status_code == 422

    shown = console.getvalue()
    assert shown.count("\n") == 1, shown  # one event, one line
    assert not RAW_CONTROL.search(shown)
    assert "[red]markup[/red]" in shown  # markup shown as text, not applied
    assert ":warning:" in shown  # not turned into an emoji
    logged = lines.getvalue().splitlines()
    assert len(logged) == 1
    assert not RAW_CONTROL.search(logged[0])
    reason = json.loads(logged[0])["reason"]
    assert all(f"origin.{text}" in reason for text in HOSTILE_TEXT)  # escaped, not altered


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_every_console_line_escapes_outside_text(text: str, outputs: tuple[io.StringIO, io.StringIO]) -> None:
    """Fields the console describes, each carrying text from outside (the cloud, a caller)."""
    console, lines = outputs
    events: list[tuple[str, dict[str, object]]] = [
        ("detach.requested", {"volume_id": text, "server_id": text, "device": text}),
        ("detach.accepted", {"http_status": text, "job_id": text}),
        ("detach.retry_later", {"retry_after_s": text, "reason": text}),
        ("poll.status", {"attempt": text, "job_id": text, "status": text}),
        ("detach.result", {"outcome": text, "error_code": text, "fail_reason": text, "job_id": text}),
        ("webhook.unauthenticated", {"path": text, text: text}),
    ]
    for event, fields in events:
        log_event(event, level=logging.WARNING, **fields)  # type: ignore[arg-type]
    shown = console.getvalue()
    assert shown.count("\n") == len(events), shown
    assert not RAW_CONTROL.search(shown)
    logged = lines.getvalue().splitlines()
    assert len(logged) == len(events)
    assert not any(RAW_CONTROL.search(line) for line in logged)
    assert json.loads(logged[-1])[text] == text
