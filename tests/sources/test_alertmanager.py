"""Alertmanager webhooks: one request per firing alert, IDs from labels."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from handler.core.validation import InvalidInput, MalformedInput
from handler.sources import LabelNames, parse_alertmanager
from tests.sources.support import (
    NOT_A_DEVICE,
    PROPERTY,
    bad,
    event,
    event_bytes,
    id_like,
    json_text,
    ok,
    only_invalid_input,
    outcomes,
    requests,
    skip,
)
from tests.support import PID, WEB1, WEB1_LOGS, WEB2

GROUP = '{}/{severity="critical"}:{alertname="EvsDiskFailing"}'


def firing() -> dict[str, Any]:
    return copy.deepcopy(event("alertmanager-firing.json"))


def test_a_firing_node_exporter_alert_asks_to_detach_its_device() -> None:
    assert outcomes(parse_alertmanager(event_bytes("alertmanager-firing.json"))) == [
        ok(
            "alerts[0]",
            server_id=WEB1,
            device="/dev/vdb",
            project_id=PID,
            reason="I/O on vdb of web-1 stalled for 10 minutes — "
            'node_disk_io_now{device="vdb"} stayed above 0 while no I/O completed.',
            idempotency_key="alertmanager:b5f5c8e7a1d3f2c4:2024-01-15T08:30:00.000Z",
            alert_id="b5f5c8e7a1d3f2c4",
            origin={
                "source": "alertmanager",
                "fingerprint": "b5f5c8e7a1d3f2c4",
                "groupKey": '{}/{severity="critical"}:{alertname="NodeDiskIOStalled"}',
                "receiver": "ecs-detach",
                "alertname": "NodeDiskIOStalled",
                "starts_at": "2024-01-15T08:30:00.000Z",
            },
        )
    ]


def test_a_resolved_alert_needs_nothing() -> None:
    parsed = parse_alertmanager(event_bytes("alertmanager-resolved.json"))
    assert outcomes(parsed) == [skip("alerts[0]", "alert resolved")]


def test_one_bad_alert_in_a_group_leaves_the_others_good() -> None:
    def origin(fingerprint: str, starts_at: str) -> dict[str, str]:
        return {
            "source": "alertmanager",
            "fingerprint": fingerprint,
            "groupKey": GROUP,
            "receiver": "ecs-detach",
            "alertname": "EvsDiskFailing",
            "starts_at": starts_at,
        }

    assert outcomes(parse_alertmanager(event_bytes("alertmanager-batch-one-bad.json"))) == [
        ok(
            "alerts[0]",
            server_id=WEB1,
            volume_id=WEB1_LOGS,
            project_id=PID,
            reason="Log disk of web-1 reports medium errors",
            idempotency_key="alertmanager:1f2e3d4c5b6a7988:2024-01-15T08:29:30.000Z",
            alert_id="1f2e3d4c5b6a7988",
            origin=origin("1f2e3d4c5b6a7988", "2024-01-15T08:29:30.000Z"),
        ),
        ok(  # the server from instance_id, the second label name tried
            "alerts[1]",
            server_id=WEB2,
            device="/dev/vdb",
            project_id=PID,
            reason="Data disk vdb of web-2 reports medium errors",
            idempotency_key="alertmanager:2a3b4c5d6e7f8091:2024-01-15T08:29:45.000Z",
            alert_id="2a3b4c5d6e7f8091",
            origin=origin("2a3b4c5d6e7f8091", "2024-01-15T08:29:45.000Z"),
        ),
        bad(
            "alerts[2]",
            (
                "alerts[2].labels.server_id",
                "missing: no label 'server_id' or 'instance_id' on the alert or in commonLabels",
            ),
        ),
    ]


def test_label_names_are_configurable_and_errors_name_them() -> None:
    names = LabelNames(server_id="host_uuid", volume_id=(), device=("disk", "device"))
    body = firing()
    body["alerts"][0]["labels"] = {"host_uuid": WEB2, "disk": "vdc"}
    assert outcomes(parse_alertmanager(body, names))[0][1].model_dump(include={"server_id", "device"}) == {
        "server_id": WEB2,
        "device": "/dev/vdc",
    }
    body["alerts"][0]["labels"] = {"server_id": WEB2}
    body["commonLabels"] = {}
    assert outcomes(parse_alertmanager(body, names)) == [
        bad(
            "alerts[0]",
            ("alerts[0].labels.host_uuid", "missing: no label 'host_uuid' on the alert or in commonLabels"),
            ("alerts[0].labels.disk", "missing: no label 'disk' or 'device' on the alert or in commonLabels"),
        )
    ]


def test_label_names_must_name_a_disk() -> None:
    with pytest.raises(ValidationError, match="give label names for volume_id or device"):
        LabelNames(volume_id=(), device=())


def test_labels_fall_back_to_common_labels_and_errors_say_where_the_value_was() -> None:
    body = firing()
    body["alerts"][0]["labels"] = {"alertname": "NodeDiskIOStalled", "server_id": WEB1}
    body["commonLabels"] = {"device": "eth0"}
    assert outcomes(parse_alertmanager(body)) == [bad("alerts[0]", ("commonLabels.device", NOT_A_DEVICE))]


def test_an_invalid_label_value_is_named_by_its_label() -> None:
    body = firing()
    body["alerts"][0]["labels"]["server_id"] = "web-1"
    (_, _, errors, _) = outcomes(parse_alertmanager(body))[0]
    assert errors is not None
    assert [field for field, _ in errors] == ["alerts[0].labels.server_id"]


def test_a_long_description_is_cut_to_the_reason_limit() -> None:
    body = firing()
    body["alerts"][0]["annotations"] = {"description": "x" * 5000}
    request = outcomes(parse_alertmanager(body))[0][1]
    assert request is not None
    assert request.reason is not None
    assert len(request.reason) == 1024
    assert request.reason.endswith("…")


def test_an_alert_without_annotations_is_explained_by_its_name() -> None:
    body = firing()
    del body["alerts"][0]["annotations"]
    request = outcomes(parse_alertmanager(body))[0][1]
    assert request is not None
    assert request.reason == "alertmanager alert NodeDiskIOStalled firing"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"fingerprint": None}, ("alerts[0].fingerprint", "Input should be a valid string")),
        ({"status": "pending"}, ("alerts[0].status", "Input should be 'firing' or 'resolved'")),
        ({"labels": ["server_id"]}, ("alerts[0].labels", "Input should be a valid dictionary")),
    ],
)
def test_a_malformed_alert_is_a_bad_record(change: dict[str, Any], expected: tuple[str, str]) -> None:
    body = firing()
    body["alerts"][0].update(change)
    assert outcomes(parse_alertmanager(body)) == [bad("alerts[0]", expected)]


def test_an_alert_that_is_not_an_object_is_a_bad_record() -> None:
    body = firing()
    body["alerts"].append("oops")
    assert outcomes(parse_alertmanager(body))[1] == bad("alerts[1]", ("alerts[1]", "expected an object"))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"version": "3"}, "version"),
        ({"alerts": {}}, "alerts"),
        ({"commonLabels": {"a": 1}}, "commonLabels.a"),
    ],
)
def test_an_envelope_that_is_not_alertmanager_v4_is_refused(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_alertmanager({**firing(), **change})
    assert [e.field for e in caught.value.errors] == [field]


def test_a_body_that_is_not_json_is_malformed() -> None:
    with pytest.raises(MalformedInput):
        parse_alertmanager(b"<html>")


labels = requests | st.dictionaries(st.sampled_from(["instance_id", "device"]) | st.text(max_size=5), id_like)
alerts = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved", "pending"]),
        "labels": labels,
        "startsAt": st.text(min_size=1, max_size=30),
        "fingerprint": st.text(min_size=1, max_size=300),
    },
    optional={"annotations": st.dictionaries(st.sampled_from(["summary", "description"]), st.text())},
)
webhooks = st.fixed_dictionaries(
    {"version": st.just("4"), "alerts": st.lists(alerts, max_size=4)},
    optional={"commonLabels": labels, "groupKey": st.text(), "receiver": st.text()},
)


@PROPERTY
@given(st.binary() | json_text() | json_text(webhooks))
def test_any_body_gives_records_or_invalid_input(body: bytes) -> None:
    only_invalid_input(parse_alertmanager, body)


@PROPERTY
@given(webhooks)
def test_any_webhook_shape_gives_one_record_per_alert_or_invalid_input(body: dict[str, Any]) -> None:
    try:
        parsed = parse_alertmanager(json.dumps(body))
    except InvalidInput:
        return
    assert len(outcomes(parsed)) == len(body["alerts"])
