"""CloudEvents over HTTP: binary, structured and batch mode, through the cloudevents library."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handler.core.validation import InvalidInput, MalformedInput
from handler.sources import parse_cloudevent_http
from tests.sources.support import (
    NOT_A_UUID,
    PROPERTY,
    bad,
    event,
    event_bytes,
    header_maps,
    json_text,
    junk,
    ok,
    only_invalid_input,
    outcomes,
    requests,
)
from tests.support import PID, WEB1, WEB1_DATA, WEB1_LOGS

STRUCTURED = {"content-type": "application/cloudevents+json; charset=utf-8"}
BATCH = {"Content-Type": "application/cloudevents-batch+json"}
SOURCE = "urn:example:runbook/disk-replacement"
EVENT_ID = "5f0c9a7e-2b1d-4c3e-8f6a-9b0c1d2e3f40"


def binary() -> tuple[dict[str, str], bytes]:
    sample = event("cloudevent-binary.json")
    return sample["headers"], json.dumps(sample["body"]).encode()


def structured(**changes: Any) -> dict[str, Any]:
    return {**event("detach-requested.cloudevent.json"), **changes}


def origin(source: str, event_id: str) -> dict[str, str]:
    return {
        "source": "cloudevents",
        "ce_source": source,
        "ce_id": event_id,
        "ce_type": "ecs-detach.requested",
    }


def test_a_binary_mode_event_asks_to_detach_with_a_key_from_source_and_id() -> None:
    assert outcomes(parse_cloudevent_http(*binary())) == [
        ok(
            "(root)",
            server_id=WEB1,
            volume_id=WEB1_DATA,
            project_id=PID,
            reason="runbook disk-replacement, step 2: detach the failed data disk",
            idempotency_key=f"cloudevent:{SOURCE}:{EVENT_ID}",
            origin=origin(SOURCE, EVENT_ID),
        )
    ]


@pytest.mark.parametrize("headers", [STRUCTURED, {"Content-Type": "application/json"}, {}])
def test_a_structured_event_keeps_its_own_idempotency_key(headers: dict[str, str]) -> None:
    assert outcomes(parse_cloudevent_http(headers, event_bytes("detach-requested.cloudevent.json"))) == [
        ok(
            "(root)",
            server_id=WEB1,
            volume_id=WEB1_LOGS,
            project_id=PID,
            reason="step 3 of the storage remediation workflow",
            idempotency_key="wf-2231-step-3",
            origin=origin("urn:example:workflow/storage-remediation", "8d4c2f0e-6a7b-4c1d-9e2f-3a4b5c6d7e8f"),
        )
    ]


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (
            {"ce-type": "com.example.other"},
            "type",
            "expected 'ecs-detach.requested', got 'com.example.other'",
        ),
        ({"ce-id": ""}, "id", "required: a non-empty string"),
        ({"ce-specversion": "0.3"}, "specversion", "expected '1.0', got '0.3'"),
        ({"ce-time": "yesterday"}, "time", "not an RFC 3339 time with a time zone"),
        ({"ce-time": "2024-01-15T08:30:00"}, "time", "not an RFC 3339 time with a time zone"),
    ],
)
def test_a_binary_envelope_that_is_wrong_is_refused_naming_the_attribute(
    change: dict[str, str], field: str, reason: str
) -> None:
    headers, body = binary()
    with pytest.raises(InvalidInput) as caught:
        parse_cloudevent_http({**headers, **change}, body)
    assert [e.field for e in caught.value.errors] == [field]
    assert caught.value.errors[0].reason.startswith(reason)


def test_a_structured_event_of_another_type_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_cloudevent_http(STRUCTURED, json.dumps(structured(type="ecs-detach.accepted")).encode())
    assert [e.field for e in caught.value.errors] == ["type"]


def test_invalid_data_is_a_bad_record_with_data_paths() -> None:
    headers, _ = binary()
    parsed = parse_cloudevent_http(headers, json.dumps({"server_id": WEB1, "volume_id": "vol-1"}).encode())
    assert outcomes(parsed) == [bad("(root)", ("data.volume_id", NOT_A_UUID))]
    assert outcomes(parse_cloudevent_http(headers, b"")) == [bad("(root)", ("data", "required"))]
    assert outcomes(parse_cloudevent_http(headers, b"not json")) == [
        bad("(root)", ("data", "expected a JSON object, got bytes"))
    ]


def test_json_without_ce_headers_or_specversion_is_no_cloudevent() -> None:
    with pytest.raises(InvalidInput, match="not a CloudEvent"):
        parse_cloudevent_http({"content-type": "application/json"}, b'{"server_id": "x"}')
    with pytest.raises(MalformedInput):
        parse_cloudevent_http(STRUCTURED, b"[")


def test_a_batch_gives_one_record_per_event() -> None:
    good = structured(id="e-1")
    body = json.dumps(
        [good, structured(id="e-2", type="other"), structured(id="e-3", data={"server_id": WEB1}), 7]
    )
    assert outcomes(parse_cloudevent_http(BATCH, body.encode())) == [
        ok(
            "[0]",
            server_id=WEB1,
            volume_id=WEB1_LOGS,
            project_id=PID,
            reason="step 3 of the storage remediation workflow",
            idempotency_key="wf-2231-step-3",
            origin=origin("urn:example:workflow/storage-remediation", "e-1"),
        ),
        bad("[1]", ("[1].type", "expected 'ecs-detach.requested', got 'other'")),
        bad("[2]", ("[2].data.volume_id", "volume_id or device is required")),
        bad("[3]", ("[3]", "expected an object")),
    ]
    with pytest.raises(InvalidInput, match="not a CloudEvents batch"):
        parse_cloudevent_http(BATCH, b"{}")


def test_a_very_long_source_and_id_still_give_a_valid_key() -> None:
    headers, body = binary()
    parsed = parse_cloudevent_http({**headers, "ce-source": "s" * 300}, body)
    request = outcomes(parsed)[0][1]
    assert request is not None
    assert request.idempotency_key is not None
    assert request.idempotency_key.startswith("cloudevent:sha256:")
    assert len(request.idempotency_key) <= 256


def test_the_data_keeps_its_own_origin_entries() -> None:
    headers, _ = binary()
    data = {"server_id": WEB1, "volume_id": WEB1_DATA, "origin": {"runbook": "disk-replacement"}}
    request = outcomes(parse_cloudevent_http(headers, json.dumps(data).encode()))[0][1]
    assert request is not None
    assert request.origin == {"runbook": "disk-replacement", **origin(SOURCE, EVENT_ID)}


ce_headers = st.fixed_dictionaries(
    {
        "ce-specversion": st.just("1.0"),
        "ce-type": st.just("ecs-detach.requested"),
        "ce-id": st.text(min_size=1, max_size=10),
        "ce-source": st.text(max_size=300),
    },
    optional={
        "ce-time": st.sampled_from(["2024-01-15T08:30:00Z"]) | st.text(max_size=25),
        "content-type": st.sampled_from(["application/json", "text/plain"]) | st.text(max_size=10),
        "ce-Ext_Name": st.text(max_size=5),
    },
)
events = st.fixed_dictionaries(
    {
        "specversion": st.just("1.0"),
        "type": st.just("ecs-detach.requested"),
        "id": st.text(min_size=1, max_size=10),
        "source": st.text(min_size=1, max_size=10),
        "data": requests | junk,
    },
    optional={"time": st.sampled_from(["2024-01-15T08:30:00Z"]) | st.text(max_size=25)},
)
content_types = st.sampled_from(
    [{}, STRUCTURED, BATCH, {"content-type": "application/json"}, {"Content-Type": "text/plain"}]
)


@PROPERTY
@given(
    header_maps | ce_headers | content_types,
    st.binary()
    | json_text()
    | json_text(events)
    | json_text(st.lists(events | junk, max_size=3))
    | json_text(requests),
)
def test_any_request_gives_records_or_invalid_input(headers: dict[str, str], body: bytes) -> None:
    only_invalid_input(parse_cloudevent_http, headers, body)
