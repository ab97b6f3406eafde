"""CloudEvents senders as the CloudEvents Python SDK builds them, over real loopback HTTP.

The SDK's README builds an event with ``CloudEvent(attributes, data)`` and sends it with
``to_binary`` or ``to_structured``; without ``datacontenttype`` a binary event has no
Content-Type at all, which CloudEvents 1.0 allows. The SDK has no batch writer, so a batch is
built as the HTTP binding's batched mode says: a JSON array of structured events, sent as
``application/cloudevents-batch+json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cloudevents.conversion import to_binary, to_json, to_structured
from cloudevents.http import CloudEvent

from handler.entry.runtime import Runtime
from handler.local._serve import BackgroundServer
from handler.local.http import runtime_app
from tests.conftest import AUTH, Emulator
from tests.support import WEB1, WEB1_DATA, WEB1_LOGS, WEB2, WEB2_DATA

SOURCE = "urn:example:runbook/disk-replacement"


@pytest.fixture
def webhook(runtime: Runtime) -> Iterator[str]:
    with BackgroundServer(runtime_app(runtime)) as server:
        yield server.url


def requested(event_id: str, data: dict[str, Any], **attributes: str) -> CloudEvent:
    return CloudEvent({"type": "ecs-detach.requested", "source": SOURCE, "id": event_id, **attributes}, data)


def post(url: str, headers: dict[str, str], body: bytes | str) -> httpx.Response:
    return httpx.post(f"{url}/", headers={**headers, **AUTH}, content=body, timeout=10)


def deletes(emulator: Emulator) -> int:
    return [call["method"] for call in emulator.admin("GET", "calls")["calls"]].count("DELETE")


def test_a_binary_event_without_a_content_type_is_accepted(webhook: str, emulator: Emulator) -> None:
    headers, body = to_binary(requested("bin-1", {"server_id": WEB1, "volume_id": WEB1_DATA}))
    assert "content-type" not in {name.lower() for name in headers}  # the SDK sends none
    answer = post(webhook, headers, body)
    assert answer.status_code == 202, answer.text
    (record,) = answer.json()["records"]
    assert (record["status"], record["volume_id"]) == ("accepted", WEB1_DATA)
    again = post(webhook, headers, body)  # the SDK's retry: the same source and id
    assert again.json()["records"][0]["status"] == "duplicate"
    assert deletes(emulator) == 1


def test_a_binary_event_with_its_content_type_is_accepted(webhook: str) -> None:
    event = requested(
        "bin-2", {"server_id": WEB1, "volume_id": WEB1_DATA}, datacontenttype="application/json"
    )
    headers, body = to_binary(event)
    assert headers["content-type"] == "application/json"
    assert post(webhook, headers, body).status_code == 202


def test_a_structured_event_is_accepted(webhook: str) -> None:
    headers, body = to_structured(requested("st-1", {"server_id": WEB1, "volume_id": WEB1_LOGS}))
    assert headers["content-type"] == "application/cloudevents+json"
    answer = post(webhook, headers, body)
    assert answer.status_code == 202, answer.text
    assert answer.json()["records"][0]["volume_id"] == WEB1_LOGS


def test_a_batch_of_sdk_events_gives_one_record_each(webhook: str) -> None:
    events = [
        requested("batch-1", {"server_id": WEB1, "volume_id": WEB1_DATA}),
        requested("batch-2", {"server_id": WEB2, "volume_id": WEB2_DATA}),
        requested("batch-3", {"server_id": WEB1}),
    ]
    body = "[" + ",".join(to_json(event).decode() for event in events) + "]"
    answer = post(webhook, {"Content-Type": "application/cloudevents-batch+json"}, body)
    assert answer.status_code == 202, answer.text
    records = answer.json()["records"]
    assert [(r["ref"], r["status"]) for r in records] == [
        ("[0]", "accepted"),
        ("[1]", "accepted"),
        ("[2]", "invalid"),
    ]
    assert "[2].data.volume_id" in {e["field"] for e in records[2]["errors"]}


def test_what_is_no_cloudevent_and_no_json_is_still_refused(webhook: str) -> None:
    form = post(webhook, {"Content-Type": "application/x-www-form-urlencoded"}, b"server_id=x")
    assert form.status_code == 415
    bare = post(webhook, {}, json.dumps({"server_id": WEB1, "volume_id": WEB1_DATA}))
    assert bare.status_code == 415
    assert "ce-*" in bare.json()["detail"]
