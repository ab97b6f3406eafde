"""Requests are validated with errors that name the field and the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from handler.core.models import DetachRequest
from handler.core.validation import InvalidInput, MalformedInput
from handler.sources import parse_job_event, parse_request

SERVER = "1b3c5e7f-0000-4000-8000-00000000aaaa"
VOLUME = "2c4d6e8f-0000-4000-8000-00000000bbbb"
EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_plain_request_is_normalised() -> None:
    request = parse_request({"server_id": SERVER.upper(), "volume_id": VOLUME, "delete_flag": "1"})
    assert request.server_id == SERVER
    assert request.delete_flag == 1
    assert request.subject == f"{SERVER}/{VOLUME}"


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    assert parse_request({"server_id": SERVER, "volume_id": VOLUME, "added_in_v9": True}).volume_id == VOLUME


@pytest.mark.parametrize(
    ("body", "field", "reason_part"),
    [
        ({"volume_id": VOLUME}, "server_id", "Field required"),
        ({"server_id": "web-1", "volume_id": VOLUME}, "server_id", "must be a UUID"),
        (
            {"server_id": SERVER, "volume_id": VOLUME, "delete_flag": 2},
            "delete_flag",
            "less than or equal to 1",
        ),
        ({"server_id": SERVER, "volume_id": VOLUME, "project_id": "nope"}, "project_id", "32 hex digits"),
    ],
)
def test_invalid_requests_name_field_and_reason(
    body: dict[str, object], field: str, reason_part: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_request(body)
    fields = {e.field: e.reason for e in caught.value.errors}
    assert field in fields
    assert reason_part in fields[field]


def test_cloudevent_request_and_its_errors_have_data_paths() -> None:
    event = {"specversion": "1.0", "id": "1", "source": "s", "type": "ecs-detach.requested"}
    assert parse_request({**event, "data": {"server_id": SERVER, "volume_id": VOLUME}}).server_id == SERVER
    with pytest.raises(InvalidInput) as caught:
        parse_request({**event, "data": {"server_id": SERVER}})
    assert [e.field for e in caught.value.errors] == ["data.volume_id"]
    with pytest.raises(InvalidInput, match="unsupported CloudEvent type"):
        parse_request({**event, "type": "other", "data": {"server_id": SERVER, "volume_id": VOLUME}})


def test_a_field_path_names_list_items_by_index() -> None:
    class Batch(BaseModel):
        records: list[DetachRequest]

    with pytest.raises(ValidationError) as raised:
        Batch.model_validate({"records": [{"server_id": SERVER, "volume_id": VOLUME}, {"server_id": "x"}]})
    error = InvalidInput.from_validation("invalid batch", raised.value, prefix="data")

    assert {(e.field, e.reason) for e in error.errors} == {
        ("data.records[1].server_id", "must be a UUID (8-4-4-4-12 hex digits)"),
        ("data.records[1].volume_id", "volume_id or device is required"),
    }


@pytest.mark.parametrize("raw", [b"{not json", b"[1]", b'"text"'])
def test_malformed_bodies(raw: bytes) -> None:
    with pytest.raises(MalformedInput):
        parse_request(raw)


def test_sample_events_parse() -> None:
    for name in ("detach-request.json", "detach-requested.cloudevent.json"):
        request = parse_request(json.loads((EVENTS / name).read_text()))
        assert request.server_id == SERVER


def test_accepted_event_must_carry_the_job() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_job_event(
            {
                "specversion": "1.0",
                "id": "1",
                "source": "s",
                "type": "ecs-detach.accepted",
                "data": {"server_id": SERVER, "volume_id": VOLUME},
            }
        )
    assert {"data.job_id", "data.project_id", "data.deadline"} <= {e.field for e in caught.value.errors}


def test_a_job_event_of_another_type_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_job_event({"specversion": "1.0", "id": "1", "source": "s", "type": "ecs-detach.succeeded"})
    assert [e.field for e in caught.value.errors] == ["type"]


def test_a_queued_event_must_carry_its_key_and_deadline() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_job_event(
            {
                "specversion": "1.0",
                "id": "1",
                "source": "s",
                "type": "ecs-detach.queued",
                "data": {"server_id": SERVER, "volume_id": VOLUME},
            }
        )
    assert {"data.idempotency_key", "data.project_id", "data.deadline"} <= {
        e.field for e in caught.value.errors
    }


def test_a_result_published_again_is_the_same_cloudevent() -> None:
    from handler.core.followups import DetachResult, result_event
    from handler.core.models import Outcome

    result = DetachResult(server_id=SERVER, volume_id=VOLUME, outcome=Outcome.SUCCEEDED, job_id="j1")
    again = result.model_copy(update={"polls": 3})  # the same report, seen by a redelivered message
    failed = result.model_copy(update={"outcome": Outcome.FAILED})
    assert result_event(result, source="s").id == result_event(again, source="s").id
    assert result_event(result, source="s").id != result_event(failed, source="s").id
    assert result_event(result, source="s").type == "ecs-detach.succeeded"


def test_the_envelopes_are_built_once_not_after_each_garbage_collection() -> None:
    """pydantic keeps a generic model's parametrizations weakly: one written in a call would be
    collected with its last instance and built again (class and validator) by the next call."""
    import gc
    import weakref

    from handler.core.followups import DetachResult, result_event
    from handler.core.models import Outcome, envelope

    result = DetachResult(server_id=SERVER, volume_id=VOLUME, outcome=Outcome.SUCCEEDED, job_id="j1")
    built = [
        weakref.ref(type(envelope(result, type_="t", source="s"))),
        weakref.ref(type(result_event(result, source="s"))),
        weakref.ref(type(parse_job_event(json.dumps(_accepted()).encode()))),
    ]
    gc.collect()
    assert [ref() is not None for ref in built] == [True, True, True]


# Ids become path segments of signed API calls: only the forms the cloud issues get through.
HOSTILE_IDS = [".", "..", "a/b", "%2e%2e", "", "ｆ" * 32, "٠" * 32, "f" * 32 + "\n", "f" * 100_000]
JOB = "ff80808288d41e1b018917ae93d3044c"
PROJECT = "0123456789abcdef0123456789abcdef"


def _accepted(**data: object) -> dict[str, object]:
    fields = {
        "server_id": SERVER,
        "volume_id": VOLUME,
        "project_id": PROJECT,
        "job_id": JOB,
        "accepted_at": "2024-01-15T08:30:00Z",
        "not_before": "2024-01-15T08:30:02Z",
        "deadline": "2024-01-15T08:40:00Z",
    }
    return {
        "specversion": "1.0",
        "id": "1",
        "source": "s",
        "type": "ecs-detach.accepted",
        "data": fields | data,
    }


@pytest.mark.parametrize("job_id", [JOB, JOB.upper(), "70a599e0-31e7-49b7-b260-868f441e862b"])
def test_job_ids_in_the_forms_the_cloud_issues_are_accepted(job_id: str) -> None:
    assert parse_job_event(_accepted(job_id=job_id)).data.job_id == job_id  # opaque: case kept


@pytest.mark.parametrize("field", ["job_id", "server_id", "volume_id", "project_id"])
@pytest.mark.parametrize("bad", HOSTILE_IDS, ids=lambda v: repr(v[:12]) + f"…{len(v)}")
def test_hostile_ids_in_a_poll_event_name_the_field(field: str, bad: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_job_event(_accepted(**{field: bad}))
    reasons = {e.field: e.reason for e in caught.value.errors}
    assert f"data.{field}" in reasons
    kind = {"job_id": "job ID", "project_id": "project ID"}.get(field, "UUID")
    assert kind in reasons[f"data.{field}"]


@pytest.mark.parametrize("field", ["server_id", "volume_id", "project_id"])
@pytest.mark.parametrize("bad", HOSTILE_IDS, ids=lambda v: repr(v[:12]) + f"…{len(v)}")
def test_hostile_ids_in_a_detach_request_name_the_field(field: str, bad: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_request({"server_id": SERVER, "volume_id": VOLUME, field: bad})
    assert field in {e.field for e in caught.value.errors}
