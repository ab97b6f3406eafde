"""Ticket webhooks read by JMESPath mappings: built-in Jira and ServiceNow, and user ones."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handler.core.validation import InvalidInput
from handler.sources import MappingError, TicketMapping, load_mappings, parse_ticket
from tests.sources.support import (
    NOT_A_UUID,
    PROPERTY,
    bad,
    event,
    event_bytes,
    json_text,
    junk,
    ok,
    only_invalid_input,
    outcomes,
    request_values,
    skip,
)
from tests.support import PID, WEB1, WEB1_DATA, WEB1_LOGS, WEB2

BUILT_IN = load_mappings()
JIRA, SERVICENOW = BUILT_IN["jira"], BUILT_IN["servicenow"]

# A user mapping: a monitoring tool that posts a list of approved tasks at once.
BATCH_MAPPING = {
    "name": "opsboard",
    "records": "tasks",
    "when": "approved",
    "ticket": "id",
    "fields": {"server_id": "target.server", "volume_id": "target.volume", "reason": "title"},
}


def jira() -> dict[str, Any]:
    return copy.deepcopy(event("ticket-jira.json"))


def write(tmp_path: Path, value: Any) -> Path:
    path = tmp_path / "mappings.json"
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def test_the_built_in_mappings_load() -> None:
    assert sorted(BUILT_IN) == ["jira", "servicenow"]


def test_a_jira_issue_moved_to_approved_asks_to_detach() -> None:
    assert outcomes(parse_ticket(event_bytes("ticket-jira.json"), JIRA)) == [
        ok(
            "(root)",
            server_id=WEB1,
            volume_id=WEB1_LOGS,
            project_id=PID,
            delete_flag=0,
            reason="OPS-123: Detach log disk /dev/vdc from web-1 for replacement",
            idempotency_key="jira:OPS-123:10555",
            alert_id="OPS-123",
            origin={
                "source": "tickets:jira",
                "ticket": "OPS-123",
                "status": "Approved",
                "changelog_id": "10555",
                "approved_by": "5b10ac8d82e05b22cc7d4ef5",
            },
        )
    ]


def test_a_jira_update_that_is_no_approval_is_skipped() -> None:
    body = jira()
    body["changelog"]["items"][0]["toString"] = "In Progress"
    assert outcomes(parse_ticket(body, JIRA)) == [skip("(root)", f"condition not met: {JIRA.when}")]


def test_jira_force_detach_sets_the_delete_flag() -> None:
    body = jira()
    body["issue"]["fields"]["customfield_10205"] = {"value": "Yes", "id": "10400"}
    request = outcomes(parse_ticket(body, JIRA))[0][1]
    assert request is not None
    assert request.delete_flag == 1


def test_an_approved_servicenow_change_asks_to_detach_by_device() -> None:
    assert outcomes(parse_ticket(event_bytes("ticket-servicenow.json"), SERVICENOW)) == [
        ok(
            "(root)",
            server_id=WEB2,
            device="/dev/vdb",
            project_id=PID,
            delete_flag=0,
            reason="CHG0030052: Detach data disk vdb from web-2 before decommissioning",
            idempotency_key="servicenow:change_request:9d385017c611228701d22104cc95c371",
            alert_id="CHG0030052",
            origin={
                "source": "tickets:servicenow",
                "ticket": "CHG0030052",
                "sys_id": "9d385017c611228701d22104cc95c371",
                "table": "change_request",
                "approved_by": "dana.ops",
            },
        )
    ]


def test_errors_name_the_expression_and_the_request_field() -> None:
    body = jira()
    body["issue"]["fields"]["customfield_10201"] = "web-1"
    assert outcomes(parse_ticket(body, JIRA)) == [
        bad("(root)", ("issue.fields.customfield_10201", f"server_id: {NOT_A_UUID}"))
    ]
    del body["issue"]["key"]
    assert outcomes(parse_ticket(body, JIRA)) == [
        bad("(root)", ("issue.key", "missing: the ticket key or number"))
    ]


def test_an_expression_that_fails_on_the_payload_is_a_bad_record() -> None:
    body = jira()
    body["issue"]["fields"]["labels"] = 7
    (_, _, errors, _) = outcomes(parse_ticket(body, JIRA))[0]
    assert errors is not None
    assert errors[0][0] == JIRA.when
    assert "invalid type" in errors[0][1]


def test_user_mappings_add_to_and_override_the_built_ins(tmp_path: Path) -> None:
    mine = {
        **json.loads(JIRA.model_dump_json()),
        "fields": {**JIRA.fields, "server_id": "issue.fields.customfield_99"},
    }
    mappings = load_mappings(write(tmp_path, [mine, BATCH_MAPPING]))
    assert sorted(mappings) == ["jira", "opsboard", "servicenow"]
    assert mappings["jira"].fields["server_id"] == "issue.fields.customfield_99"
    assert load_mappings(write(tmp_path, BATCH_MAPPING))["opsboard"].records == "tasks"


def test_a_records_expression_gives_one_record_per_item(tmp_path: Path) -> None:
    mapping = TicketMapping.model_validate(BATCH_MAPPING)
    body = {
        "tasks": [
            {
                "id": "T-1",
                "approved": True,
                "title": "swap disk",
                "target": {"server": WEB1, "volume": WEB1_DATA},
            },
            {"id": "T-2", "approved": False, "target": {"server": WEB2}},
            {"id": 3, "approved": True, "target": {"server": WEB2}},
        ]
    }
    assert outcomes(parse_ticket(body, mapping)) == [
        ok(
            "tasks[0]",
            server_id=WEB1,
            volume_id=WEB1_DATA,
            reason="swap disk",
            origin={"source": "tickets:opsboard", "ticket": "T-1"},
        ),
        skip("tasks[1]", "condition not met: approved"),
        bad("tasks[2]", ("tasks[2].target.volume", "volume_id: volume_id or device is required")),
    ]
    with pytest.raises(InvalidInput) as caught:
        parse_ticket({"tasks": {}}, mapping)
    assert [(e.field, e.reason) for e in caught.value.errors] == [("tasks", "expected a list, got dict")]


@pytest.mark.parametrize(
    ("mapping", "summary", "field", "reason"),
    [
        (
            {
                **BATCH_MAPPING,
                "name": "broken",
                "fields": {**BATCH_MAPPING["fields"], "server_id": "target.["},
            },
            "invalid ticket mapping 'broken'",
            "[0].fields.server_id",
            "invalid JMESPath expression",
        ),
        (
            {**BATCH_MAPPING, "fields": {**BATCH_MAPPING["fields"], "size": "gb"}},
            "invalid ticket mapping 'opsboard'",
            "[0].fields",
            "not request fields: size",
        ),
        (
            {**BATCH_MAPPING, "fields": {"server_id": "a"}},
            "invalid ticket mapping 'opsboard'",
            "[0].fields",
            "map server_id, and volume_id or device",
        ),
        ({**BATCH_MAPPING, "when": ""}, "invalid ticket mapping 'opsboard'", "[0].when", "invalid JMESPath"),
        (
            {**BATCH_MAPPING, "name": "Ops Board"},
            "invalid ticket mapping 'Ops Board'",
            "[0].name",
            "String should match pattern '^[a-z0-9][a-z0-9_.-]{0,63}$'",  # pydantic's words: no name of ours
        ),
    ],
)
def test_a_wrong_mapping_fails_at_load_naming_mapping_and_field(
    tmp_path: Path, mapping: dict[str, Any], summary: str, field: str, reason: str
) -> None:
    with pytest.raises(MappingError) as caught:
        load_mappings(write(tmp_path, [mapping]))
    assert caught.value.summary.startswith(summary)
    assert str(tmp_path) in caught.value.summary
    assert [e.field for e in caught.value.errors] == [field]
    assert caught.value.errors[0].reason.startswith(reason)


def test_a_mapping_file_that_cannot_load_says_why(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot read ticket mappings"):
        load_mappings(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(MappingError, match="are not JSON"):
        load_mappings(tmp_path / "bad.json")
    with pytest.raises(MappingError, match="defined twice"):
        load_mappings(write(tmp_path, [BATCH_MAPPING, BATCH_MAPPING]))


issue_fields = st.fixed_dictionaries(
    {
        "labels": st.just(["ecs-detach"]) | junk,
        "customfield_10201": request_values["server_id"] | junk,
        "customfield_10202": request_values["volume_id"] | st.none(),
    },
    optional={
        "summary": st.text(max_size=20) | junk,
        "customfield_10203": request_values["device"] | junk,
        "customfield_10205": st.fixed_dictionaries({"value": st.sampled_from(["Yes", "No"])}) | junk,
    },
)
jira_like = st.fixed_dictionaries(
    {
        "webhookEvent": st.just("jira:issue_updated"),
        "issue": st.fixed_dictionaries({"key": st.text(max_size=10) | junk, "fields": issue_fields}),
        "changelog": st.fixed_dictionaries(
            {
                "id": st.text(max_size=5) | junk,
                "items": st.just([{"field": "status", "toString": "Approved"}]),
            }
        ),
    }
)
tasks = st.fixed_dictionaries(
    {
        "approved": st.booleans() | junk,
        "id": st.text(max_size=5) | junk,
        "target": st.fixed_dictionaries(
            {"server": request_values["server_id"], "volume": request_values["volume_id"]}
        )
        | junk,
    }
)


@PROPERTY
@given(st.binary() | json_text() | json_text(jira_like), st.sampled_from([JIRA, SERVICENOW]))
def test_any_body_gives_records_or_invalid_input(body: bytes, mapping: TicketMapping) -> None:
    only_invalid_input(parse_ticket, body, mapping)


@PROPERTY
@given(st.fixed_dictionaries({"tasks": st.lists(tasks | junk, max_size=3)}) | junk)
def test_any_list_payload_gives_records_or_invalid_input(body: Any) -> None:
    only_invalid_input(parse_ticket, json.dumps(body), TicketMapping.model_validate(BATCH_MAPPING))
