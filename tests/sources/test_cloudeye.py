"""Cloud Eye alarms through SMN: HTTP(S) subscriptions and the FunctionGraph SMN trigger."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handler.core.validation import InvalidInput
from handler.sources import parse_smn_http, parse_smn_trigger
from tests.sources.support import (
    PROPERTY,
    bad,
    event,
    event_bytes,
    header_maps,
    id_like,
    json_objects,
    json_text,
    junk,
    ok,
    only_invalid_input,
    outcomes,
    request_values,
    requests,
    skip,
)
from tests.support import PID, WEB1, WEB1_DATA, WEB2

TOPIC = f"urn:smn:ap-southeast-1:{PID}:ops-alarms"
NOTIFICATION = {"X-SMN-MESSAGE-TYPE": "Notification"}


def notification(alarm: dict[str, Any] | str, **envelope: Any) -> bytes:
    message = alarm if isinstance(alarm, str) else json.dumps(alarm)
    return json.dumps({"type": "Notification", "topic_urn": TOPIC, "message": message, **envelope}).encode()


def test_a_subscription_confirmation_gives_the_url_to_visit_and_no_records() -> None:
    parsed = parse_smn_http(
        {"x-smn-message-type": "SubscriptionConfirmation"}, event_bytes("smn-subscription-confirmation.json")
    )
    assert parsed.records == []
    assert parsed.confirm_url == (
        "https://smn.ap-southeast-1.myhuaweicloud.com/smn/subscription/confirm"
        f"?token=7a1c9e5b3d2f4a6c8e0b1d3f5a7c9e1b&topic_urn={TOPIC}"
    )


def test_the_message_type_may_come_from_the_body_alone() -> None:
    parsed = parse_smn_http({}, event_bytes("smn-subscription-confirmation.json"))
    assert parsed.confirm_url is not None


def test_an_unsubscribe_confirmation_needs_nothing() -> None:
    parsed = parse_smn_http(
        {"X-SMN-MESSAGE-TYPE": "UnsubscribeConfirmation"}, b'{"type": "UnsubscribeConfirmation"}'
    )
    assert (parsed.records, parsed.confirm_url) == ([], None)


def test_an_evs_alarm_over_http_asks_to_detach_the_disk_it_names() -> None:
    assert outcomes(parse_smn_http(NOTIFICATION, event_bytes("smn-cloudeye-evs-alarm.json"))) == [
        ok(
            "message",
            server_id=WEB1,
            device="/dev/vdb",
            project_id=PID,
            region="ap-southeast-1",
            reason="Cloud Eye alarm evs-io-util-web-1-vdb (SYS.EVS disk_device_io_util)",
            idempotency_key="cloudeye:al1705307400000AbCdEfGhI:1705307400000",
            alert_id="al1705307400000AbCdEfGhI",
            origin={
                "source": "cloudeye",
                "alarm_id": "al1705307400000AbCdEfGhI",
                "alarm_name": "evs-io-util-web-1-vdb",
                "namespace": "SYS.EVS",
                "metric_name": "disk_device_io_util",
                "topic_urn": TOPIC,
                "smn_message_id": "a516bfc1c2c94d0c8e8a3d2f4e1b2c3d",
            },
        )
    ]


def test_the_functiongraph_smn_trigger_gives_one_record_per_record() -> None:
    assert outcomes(parse_smn_trigger(event("fg-smn-trigger-cloudeye.json"))) == [
        ok(
            "record[0]",
            server_id=WEB2,
            device="/dev/vdb",
            project_id=PID,
            region="ap-southeast-1",
            reason="Write latency of web-2 vdb above 500 ms for 15 minutes",
            idempotency_key="cloudeye:al1705307400000QrStUvWxY:2024-01-15T08:30:00Z",
            alert_id="al1705307400000QrStUvWxY",
            origin={
                "source": "cloudeye",
                "alarm_id": "al1705307400000QrStUvWxY",
                "alarm_name": "evs-write-await-web-2-vdb",
                "namespace": "SYS.EVS",
                "metric_name": "disk_device_write_await",
                "topic_urn": TOPIC,
                "smn_message_id": "c1d2e3f4a5b64c7d8e9f0a1b2c3d4e5f",
            },
        ),
        skip("record[1]", "alarm state 'ok': acting only on 'alarm'"),
        bad(
            "record[2]",
            (
                "record[2].smn.message.dimensions",
                "a SYS.ECS alarm names no disk: instance_id but no disk_name or volume_id",
            ),
        ),
    ]


DISK_NAME = f"{WEB1}-vdb"


@pytest.mark.parametrize(
    "alarm",
    [
        {
            "alarm_id": "al1",
            "alarm_status": "alarm",
            "namespace": "SYS.EVS",
            "dimension": f"disk_name:{DISK_NAME}",
        },
        {"AlarmId": "al1", "AlarmState": "ALARM", "Dimensions": {"disk_name": DISK_NAME}},
        {"data": {"AlarmId": "al1", "IsAlarm": True, "DimensionName": "disk_name", "ResourceId": DISK_NAME}},
        {
            "alarm": {
                "alarm-id": "al1",
                "state": "alarm",
                "metric": {"dimensions": [{"Name": "disk_name", "Value": DISK_NAME}]},
            }
        },
    ],
    ids=["flat", "camel-case", "data-resource-id", "nested-rule"],
)
def test_plausible_alarm_shapes_give_the_same_disk(alarm: dict[str, Any]) -> None:
    (_, request, errors, _) = outcomes(parse_smn_http({}, notification(alarm)))[0]
    assert errors is None
    assert request is not None
    assert (request.server_id, request.device, request.alert_id) == (WEB1, "/dev/vdb", "al1")


def test_an_ecs_alarm_with_a_volume_id_names_its_disk() -> None:
    dims = [{"name": "instance_id", "value": WEB1}, {"name": "volume_id", "value": WEB1_DATA}]
    alarm = {"alarm_id": "al2", "alarm_state": "alarm", "namespace": "SYS.ECS", "dimensions": dims}
    request = outcomes(parse_smn_http({}, notification(alarm)))[0][1]
    assert request is not None
    assert (request.server_id, request.volume_id) == (WEB1, WEB1_DATA)
    top_level = {
        "alarm_id": "al2",
        "alarm_state": "alarm",
        "dimension": f"instance_id:{WEB1}",
        "volume_id": WEB1_DATA,
    }
    request = outcomes(parse_smn_http({}, notification(top_level)))[0][1]
    assert request is not None
    assert request.volume_id == WEB1_DATA


def test_without_alarm_time_the_smn_message_id_is_the_idempotency_key() -> None:
    alarm = {"alarm_state": "alarm", "dimension": f"disk_name:{DISK_NAME}"}
    request = outcomes(parse_smn_http({"X-SMN-MESSAGE-ID": "m-42"}, notification(alarm)))[0][1]
    assert request is not None
    assert (request.idempotency_key, request.alert_id) == ("smn:m-42", None)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("CPU high", ("message", "not JSON: a Cloud Eye alarm is a JSON text")),
        ("[1]", ("message", "expected a JSON object, got list")),
        (
            {"alarm_id": "al3"},
            ("message.alarm_state", "missing: no alarm_state, alarm_status, state or is_alarm"),
        ),
        (
            {"alarm_state": "alarm", "dimension": "disk_name:vdb"},
            ("message.dimensions.disk_name", "expected {server_id}-{drive}, got 'vdb'"),
        ),
        (
            {"alarm_state": "alarm", "dimension": "disk_name:web-1-vdb"},
            ("message.dimensions.disk_name", "must be a UUID"),
        ),
        (
            {"alarm_state": "alarm", "namespace": "SYS.RDS", "dimension": "rds_cluster_id:abc"},
            (
                "message.dimensions",
                "expected dimension disk_name (SYS.EVS) or instance_id (SYS.ECS) in SYS.RDS; "
                "found: rds_cluster_id",
            ),
        ),
    ],
)
def test_an_unusable_alarm_is_a_bad_record_naming_the_part(message: Any, expected: tuple[str, str]) -> None:
    (_, _, errors, _) = outcomes(parse_smn_http(NOTIFICATION, notification(message)))[0]
    assert errors is not None
    assert len(errors) == 1
    assert errors[0][0] == expected[0]
    assert errors[0][1].startswith(expected[1])


def test_a_detach_request_published_to_the_topic_is_taken_as_one() -> None:
    message = {"server_id": WEB1, "volume_id": WEB1_DATA, "reason": "published by hand"}
    assert outcomes(parse_smn_http(NOTIFICATION, notification(message))) == [
        ok(
            "message",
            server_id=WEB1,
            volume_id=WEB1_DATA,
            reason="published by hand",
            origin={"source": "smn"},
        )
    ]
    bad_request = {"server_id": "web-1", "volume_id": WEB1_DATA}
    (_, _, errors, _) = outcomes(parse_smn_http(NOTIFICATION, notification(bad_request)))[0]
    assert errors is not None
    assert [field for field, _ in errors] == ["message.server_id"]


@pytest.mark.parametrize(
    ("headers", "body", "field"),
    [
        ({}, b"{}", "type"),
        ({"X-SMN-MESSAGE-TYPE": "Bogus"}, b"{}", "type"),
        ({}, b'{"type": "SubscriptionConfirmation", "subscribe_url": "file:///etc/passwd"}', "subscribe_url"),
    ],
)
def test_an_http_message_that_is_not_smn_is_refused(headers: dict[str, str], body: bytes, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_smn_http(headers, body)
    assert [e.field for e in caught.value.errors] == [field]


def test_trigger_records_that_are_not_smn_are_bad_records() -> None:
    trigger = {
        "record": [
            "x",
            {"event_source": "kafka", "smn": {}},
            {"event_source": "smn"},
            {"smn": {"type": "other"}},
        ]
    }
    assert outcomes(parse_smn_trigger(trigger)) == [
        bad("record[0]", ("record[0]", "expected an object")),
        bad("record[1]", ("record[1].event_source", "expected 'smn', got 'kafka'")),
        bad("record[2]", ("record[2].smn", "required: an object")),
        skip("record[3]", "SMN message type 'other': not a notification"),
    ]
    with pytest.raises(InvalidInput):
        parse_smn_trigger({"record": {}})


dimensions = st.sampled_from([f"disk_name:{DISK_NAME}", f"instance_id:{WEB1}", "disk_name:vdb", "rds:x"])
alarms = st.fixed_dictionaries(
    {},
    optional={
        "alarm_id": st.text(max_size=30),
        "alarm_state": st.sampled_from(["alarm", "ok", "ALARM", "insufficient_data"]),
        "IsAlarm": st.booleans(),
        "namespace": st.sampled_from(["SYS.EVS", "SYS.ECS"]),
        "dimension": dimensions,
        "Dimensions": st.lists(
            st.fixed_dictionaries({"name": st.sampled_from(["disk_name", "volume_id"]), "value": id_like}),
            max_size=2,
        ),
        "time": st.integers() | st.text(max_size=30),
        "volume_id": request_values["volume_id"],
    },
)
wrapped = (
    alarms
    | st.builds(lambda alarm: {"data": alarm}, alarms)
    | st.builds(lambda alarm: {"metric": alarm}, alarms)
)
messages = wrapped.map(json.dumps) | requests.map(json.dumps) | st.text(max_size=20) | junk
envelopes = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["Notification", "Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
        ),
        "message": messages,
    },
    optional={
        "subscribe_url": st.sampled_from(["https://smn.example/confirm", "ftp://x"]),
        "topic_urn": st.sampled_from([TOPIC, "urn:smn:x"]) | junk,
        "message_id": st.text(max_size=300) | junk,
    },
)


@PROPERTY
@given(header_maps | st.just(NOTIFICATION), st.binary() | json_text() | json_text(envelopes))
def test_any_http_message_gives_records_or_invalid_input(headers: dict[str, str], body: bytes) -> None:
    only_invalid_input(parse_smn_http, headers, body)


smn_records = st.fixed_dictionaries(
    {
        "event_source": st.just("smn"),
        "smn": st.fixed_dictionaries({"message": messages}, optional={"type": junk}),
    }
)


@PROPERTY
@given(st.fixed_dictionaries({"record": st.lists(smn_records | junk, max_size=3)}) | json_objects)
def test_any_trigger_event_gives_records_or_invalid_input(trigger: dict[str, Any]) -> None:
    only_invalid_input(parse_smn_trigger, trigger)
