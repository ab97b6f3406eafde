"""The flow's own messages as Records, and the helpers the adapters share."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handler.core.validation import FieldError, InvalidInput, MalformedInput
from handler.sources import Record, parse_message, parse_plain
from handler.sources.plain import fit, join_path, reroot, tag
from tests.sources.support import (
    NOT_A_UUID,
    PROPERTY,
    assert_well_formed,
    bad,
    event,
    event_bytes,
    json_text,
    ok,
    only_invalid_input,
    outcomes,
)
from tests.support import PID, WEB1, WEB1_DATA, WEB1_LOGS


def test_a_plain_request_is_one_record() -> None:
    assert outcomes(parse_plain(event_bytes("detach-request.json"))) == [
        ok(
            "(root)",
            server_id=WEB1,
            volume_id=WEB1_DATA,
            reason="disk /dev/vdb of web-1 reported I/O errors",
            idempotency_key="demo-web-1-vdb",
            origin={"source": "plain"},
        )
    ]


def test_a_structured_cloudevent_is_one_record_with_its_attributes_in_origin() -> None:
    assert outcomes(parse_plain(event("detach-requested.cloudevent.json"))) == [
        ok(
            "(root)",
            server_id=WEB1,
            volume_id=WEB1_LOGS,
            project_id=PID,
            reason="step 3 of the storage remediation workflow",
            idempotency_key="wf-2231-step-3",
            origin={
                "source": "plain",
                "ce_source": "urn:example:workflow/storage-remediation",
                "ce_id": "8d4c2f0e-6a7b-4c1d-9e2f-3a4b5c6d7e8f",
                "ce_type": "ecs-detach.requested",
            },
        )
    ]


def test_an_invalid_request_is_a_bad_record_but_a_body_that_is_not_json_raises() -> None:
    assert outcomes(parse_plain({"server_id": WEB1, "volume_id": "x"})) == [
        bad("(root)", ("volume_id", NOT_A_UUID))
    ]
    with pytest.raises(MalformedInput):
        parse_plain(b"[]")
    with pytest.raises(InvalidInput) as caught:
        parse_plain({"specversion": "1.0", "id": "1", "source": "s", "type": "ecs-detach.accepted"})
    assert [e.field for e in caught.value.errors] == ["type"]


def test_a_broker_message_never_raises() -> None:
    assert outcomes(parse_message(b"\xff")) == [
        bad("(root)", ("(root)", "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"))
    ]
    assert outcomes(parse_message('{"server_id": "x"}', source="redis"))[0][2] == [
        ("server_id", NOT_A_UUID),
        ("volume_id", "volume_id or device is required"),
    ]


def test_paths_join_and_reroot() -> None:
    assert join_path("records[0]", "server_id") == "records[0].server_id"
    assert join_path("records[0]", "[2]") == "records[0][2]"
    assert join_path("records[0]", "(root)") == "records[0]"
    assert join_path("", "server_id") == "server_id"
    error = reroot(MalformedInput("no", [FieldError("(root)", "not JSON")]), "records[1].messages[0]")
    assert isinstance(error, MalformedInput)
    assert error.errors == [FieldError("records[1].messages[0]", "not JSON")]
    assert reroot(InvalidInput("empty"), "user_event").errors == [FieldError("user_event", "empty")]


def test_fit_and_tag() -> None:
    assert fit("reason", "short") == "short"
    assert len(fit("alert_id", "a" * 300)) == 256
    record = Record.ok(
        "r",
        parse_plain({"server_id": WEB1, "device": "vdb", "origin": {"source": "mine"}}).records[0].request,
    )  # type: ignore[arg-type]
    assert tag(record, source="timer", extra="1").request.origin == {"source": "mine", "extra": "1"}  # type: ignore[union-attr]
    crowded = parse_plain(
        {"server_id": WEB1, "device": "vdb", "origin": {str(i): "x" for i in range(32)}}
    ).records[0]
    assert tag(crowded, source="timer") == crowded


@PROPERTY
@given(st.binary() | json_text())
def test_any_body_gives_one_record_or_invalid_input(body: bytes) -> None:
    only_invalid_input(parse_plain, body)


@PROPERTY
@given(st.binary() | st.text() | json_text())
def test_any_message_gives_exactly_one_record(body: bytes | str) -> None:
    parsed = parse_message(body)
    assert_well_formed(parsed)
    assert len(parsed.records) == 1
