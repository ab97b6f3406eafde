"""What a hostile or careless caller sends through the webhook server, as ``up`` runs it: the
Starlette app on a loopback port, the router, the runtime, the emulator behind them."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from handler.entry import functiongraph
from handler.entry.runtime import Runtime, build_runtime
from handler.local._console import show_events
from handler.local._serve import BackgroundServer
from handler.local.http import runtime_app
from handler.support.log import LOGGER_NAME, JsonFormatter, log_event
from tests.conftest import AUTH, DEMO_CREDENTIALS, Emulator, fast_settings
from tests.support import PID, WEB1, WEB1_DATA

TOPIC = f"urn:smn:ap-southeast-1:{PID}:ops-alarms"

DEPTH = 100_000
DEEP_ARRAY = b"[" * DEPTH + b"]" * DEPTH
DEEP_OBJECT = b'{"a":' * 40_000 + b"1" + b"}" * 40_000
ROUTES = ["/", "/alertmanager", "/grafana", "/smn", "/tickets/jira"]
JSON = {"Content-Type": "application/json", **AUTH}


@pytest.fixture
def webhook(runtime: Runtime) -> Iterator[str]:
    with BackgroundServer(runtime_app(runtime)) as server:
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


# -- records per request -----------------------------------------------------------------------


def _alerts(count: int) -> dict[str, object]:
    labels = {"server_id": WEB1, "volume_id": WEB1_DATA}
    alerts = [
        {"status": "firing", "labels": labels, "startsAt": "2024-01-15T08:30:00Z", "fingerprint": f"f{i}"}
        for i in range(count)
    ]
    return {"version": "4", "status": "firing", "alerts": alerts}


def _cloudevents(count: int) -> list[dict[str, object]]:
    return [
        {
            "specversion": "1.0",
            "id": str(i),
            "source": "test",
            "type": "ecs-detach.requested",
            "data": {"server_id": WEB1, "volume_id": WEB1_DATA, "dry_run": True},
        }
        for i in range(count)
    ]


def _tickets(count: int) -> dict[str, object]:
    return {"items": [{"key": f"OPS-{i}", "server": WEB1, "volume": WEB1_DATA} for i in range(count)]}


BATCHES = {
    "alertmanager": ("/alertmanager", "application/json", _alerts),
    "cloudevents": ("/", "application/cloudevents-batch+json", _cloudevents),
    "tickets": ("/tickets/batch", "application/json", _tickets),
}


@pytest.fixture
def limited(tmp_path: Path, emulator: Emulator) -> Iterator[tuple[Runtime, str]]:
    """A webhook server whose requests may hold at most 3 records, with a ticket mapping that
    reads a list of tickets; dry-run, so requests at the bound make no detach."""
    mapping = {
        "name": "batch",
        "records": "items",
        "ticket": "key",
        "fields": {"server_id": "server", "volume_id": "volume"},
    }
    (tmp_path / "mappings.json").write_text(json.dumps(mapping))
    settings = fast_settings(
        tmp_path, emulator.url, max_records=3, ticket_mappings=tmp_path / "mappings.json", dry_run=True
    )
    runtime = build_runtime(settings, DEMO_CREDENTIALS)
    app = runtime_app(runtime)
    with BackgroundServer(app) as server:
        yield runtime, server.url
    runtime.close()


@pytest.mark.parametrize("batch", BATCHES)
def test_a_request_over_the_records_bound_is_a_413_before_any_cloud_call(
    limited: tuple[Runtime, str], emulator: Emulator, batch: str
) -> None:
    _, url = limited
    route, content_type, make = BATCHES[batch]
    headers = {"Content-Type": content_type, **AUTH}
    problem = _problem(httpx.post(url + route, json=make(4), headers=headers, timeout=10), 413)
    assert problem["max_records"] == 3
    assert "4 records" in str(problem["detail"])
    assert "at most 3" in str(problem["detail"])
    assert emulator.admin("GET", "calls")["calls"] == []

    answer = httpx.post(url + route, json=make(3), headers=headers, timeout=30)  # at the bound
    assert answer.status_code < 300, answer.text[:500]


def test_the_default_bound_is_100_records(webhook: str, emulator: Emulator) -> None:
    """One Alertmanager group of 1,000 alerts once made 1,000 cloud reads."""
    answer = httpx.post(f"{webhook}/alertmanager", json=_alerts(1_000), headers=JSON, timeout=30)
    assert _problem(answer, 413)["max_records"] == 100
    assert emulator.admin("GET", "calls")["calls"] == []


def test_the_functiongraph_batch_path_has_the_same_bound(tmp_path: Path, emulator: Emulator) -> None:
    settings = fast_settings(tmp_path, emulator.url, max_records=3)
    runtime = build_runtime(settings, DEMO_CREDENTIALS)
    try:
        request = {"server_id": WEB1, "volume_id": WEB1_DATA, "dry_run": True}
        smn = {"record": [{"smn": {"message": json.dumps(request), "topic_urn": TOPIC}}] * 4}
        answer = functiongraph.handle_event(runtime, smn)
        assert (answer["status_code"], answer["max_records"]) == (413, 3)
        dms = {"trigger_type": "KAFKA", "records": [{"messages": [json.dumps(request)] * 4}]}
        with pytest.raises(functiongraph.TooManyRecords, match="at most 3"):
            functiongraph.handle_event(runtime, dms)  # a queue's batch: retried, then dead-lettered
        assert emulator.admin("GET", "calls")["calls"] == []
    finally:
        runtime.close()
