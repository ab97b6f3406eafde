"""FunctionGraph triggers: which one sent the event, and its records (or APIG's HTTP request)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handler.core.validation import InvalidInput
from handler.sources import ApigRequest, Parsed, apig_response, detect_trigger, parse_smn_trigger
from tests.sources.support import (
    NOT_A_UUID,
    PROPERTY,
    assert_names_fields,
    assert_well_formed,
    bad,
    event,
    json_objects,
    junk,
    ok,
    outcomes,
    requests,
)
from tests.support import PID, WEB1, WEB1_DATA, WEB1_LOGS, WEB2, WEB2_DATA


def parsed(trigger: dict[str, Any]) -> Parsed:
    result = detect_trigger(trigger)
    assert isinstance(result, Parsed)
    return result


def test_an_apig_event_becomes_the_http_request_for_the_router() -> None:
    assert detect_trigger(event("fg-apig.json")) == ApigRequest(
        method="POST",
        path="/",
        headers={
            "content-type": "application/json",
            "user-agent": "curl/8.5.0",
            "x-forwarded-for": "203.0.113.7",
            "x-request-id": "11cd4b2e9f7a4c8d",
        },
        query={"dry_run": "false"},
        body=json.dumps(
            {"server_id": WEB1, "volume_id": WEB1_DATA, "reason": "detach requested through API Gateway"},
            separators=(",", ":"),
        ).encode(),
        request_id="11cd4b2e9f7a4c8d9e0f1a2b3c4d5e6f",
    )


def test_apig_headers_are_lower_cased_and_a_text_body_is_kept() -> None:
    trigger = {
        "httpMethod": "post",
        "headers": {"Content-Type": "application/json"},
        "body": "{}",
        "isBase64Encoded": False,
    }
    request = detect_trigger(trigger)
    assert request == ApigRequest("POST", "/", {"content-type": "application/json"}, {}, b"{}", "")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"body": "not base64!"}, "body"),
        ({"body": base64.b64encode(b"{}").decode() + "é"}, "body"),
        ({"headers": {"x-a": 1}}, "headers.x-a"),
        ({"queryStringParameters": ["a"]}, "queryStringParameters"),
        ({"httpMethod": None}, "httpMethod"),
    ],
)
def test_an_apig_event_that_cannot_be_read_is_refused(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        detect_trigger({**event("fg-apig.json"), **change})
    assert [e.field for e in caught.value.errors] == [field]


def test_a_kafka_trigger_gives_one_record_per_message() -> None:
    assert outcomes(parsed(event("fg-kafka.json"))) == [
        ok(
            "records[0].messages[0]",
            server_id=WEB2,
            volume_id=WEB2_DATA,
            reason="queued by the capacity planner",
            idempotency_key="planner-7781",
            origin={"source": "dms-kafka"},
        ),
        ok(
            "records[0].messages[1]",
            server_id=WEB1,
            volume_id=WEB1_LOGS,
            project_id=PID,
            reason="step 3 of the storage remediation workflow",
            idempotency_key="cloudevent:urn:example:workflow/storage-remediation:0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6",
            origin={
                "source": "dms-kafka",
                "ce_source": "urn:example:workflow/storage-remediation",
                "ce_id": "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6",
                "ce_type": "ecs-detach.requested",
            },
        ),
    ]


def test_one_bad_rabbitmq_message_leaves_the_others_good() -> None:
    result = parsed(event("fg-rabbitmq-batch-one-bad.json"))
    assert result.source == "dms-rabbitmq"
    assert outcomes(result) == [
        ok(
            "records[0].messages[0]",
            server_id=WEB1,
            device="/dev/vdc",
            reason="rotate the log disk of web-1",
            idempotency_key="rotate-web-1-vdc",
            origin={"source": "dms-rabbitmq"},
        ),
        bad("records[0].messages[1]", ("records[0].messages[1].volume_id", NOT_A_UUID)),
        ok(
            "records[0].messages[2]",
            server_id=WEB2,
            device="/dev/vdb",
            reason="decommission web-2",
            idempotency_key="decom-web-2-vdb",
            origin={"source": "dms-rabbitmq"},
        ),
    ]


def test_broken_dms_records_and_messages_are_bad_records() -> None:
    trigger = {
        "trigger_type": "KAFKA",
        "records": [{"topic_id": "t"}, {"messages": ["{", 5, '{"specversion": "1.0", "type": "x"}']}],
    }
    assert outcomes(parsed(trigger)) == [
        bad("records[0]", ("records[0].messages", "required: a list")),
        bad(
            "records[1].messages[0]",
            (
                "records[1].messages[0]",
                "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            ),
        ),
        bad("records[1].messages[1]", ("records[1].messages[1]", "int")),
        bad(
            "records[1].messages[2]",
            ("records[1].messages[2].id", "required: a non-empty string"),
            ("records[1].messages[2].source", "required: a non-empty string"),
        ),
    ]


def test_a_timer_trigger_carries_one_request_in_user_event() -> None:
    assert outcomes(parsed(event("fg-timer.json"))) == [
        ok(
            "user_event",
            server_id=WEB2,
            device="/dev/vdb",
            project_id=PID,
            reason="nightly: detach the scratch disk of web-2",
            origin={"source": "timer"},
        )
    ]
    assert outcomes(parsed({"trigger_type": "TIMER", "user_event": "nightly"})) == [
        bad("user_event", ("user_event", "Expecting value: line 1 column 1 (char 0)"))
    ]


def test_an_smn_trigger_is_read_as_cloud_eye_alarms() -> None:
    trigger = event("fg-smn-trigger-cloudeye.json")
    assert outcomes(parsed(trigger)) == outcomes(parse_smn_trigger(trigger))


def test_a_direct_invocation_with_a_request_or_a_cloudevent() -> None:
    assert outcomes(parsed(event("detach-request.json"))) == [
        ok(
            "(root)",
            server_id=WEB1,
            volume_id=WEB1_DATA,
            reason="disk /dev/vdb of web-1 reported I/O errors",
            idempotency_key="demo-web-1-vdb",
            origin={"source": "plain"},
        )
    ]
    (_, request, _, _) = outcomes(parsed(event("detach-requested.cloudevent.json")))[0]
    assert request is not None
    assert request.volume_id == WEB1_LOGS


def test_an_unknown_shape_is_refused_listing_the_accepted_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        detect_trigger({"hello": "world"})
    (error,) = caught.value.errors
    assert error.field == "(root)"
    assert "APIG request (httpMethod)" in error.reason
    assert error.reason.endswith("got keys: hello")


def test_apig_response_is_what_apig_expects() -> None:
    assert apig_response(202, {"job_ids": ["j-1"]}, {"Retry-After": "5"}) == {
        "statusCode": 202,
        "headers": {"Content-Type": "application/json", "Retry-After": "5"},
        "body": '{"job_ids":["j-1"]}',
        "isBase64Encoded": False,
    }


apig = st.fixed_dictionaries(
    {"httpMethod": st.sampled_from(["POST", "GET"])},
    optional={
        "path": st.text(max_size=10) | junk,
        "headers": st.dictionaries(st.text(max_size=8), st.text(max_size=8)) | junk,
        "queryStringParameters": st.dictionaries(st.text(max_size=8), st.text(max_size=8)) | junk,
        "requestContext": st.fixed_dictionaries({"requestId": st.text(max_size=8)}) | junk,
        "body": st.binary().map(lambda b: base64.b64encode(b).decode()) | st.text(max_size=20) | junk,
        "isBase64Encoded": st.booleans(),
    },
)
messages = requests.map(json.dumps) | st.text(max_size=20) | junk
dms = st.fixed_dictionaries(
    {
        "records": st.lists(
            st.fixed_dictionaries({"messages": st.lists(messages, max_size=3)}) | junk, max_size=3
        )
    },
    optional={"trigger_type": st.sampled_from(["KAFKA", "RABBITMQ"]) | junk},
)
timer = st.fixed_dictionaries({"user_event": messages})


@PROPERTY
@given(json_objects | apig | dms | timer | requests)
def test_any_event_gives_records_a_request_or_invalid_input(trigger: dict[str, Any]) -> None:
    try:
        result = detect_trigger(trigger)
    except InvalidInput as error:
        assert_names_fields(error)
    else:
        assert isinstance(result, (ApigRequest, Parsed))
        if isinstance(result, Parsed):
            assert_well_formed(result)
