"""The detach function, branch by branch, on the fake clock (tests/functions/conftest.py)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from handler.core.followups import DetachQueued
from handler.core.models import DetachRequest
from handler.core.outcomes import DetachStatus, record_http_status
from handler.core.policy import SafetyPolicy
from handler.sources import parse_job_event
from handler.store import ClaimState
from handler.support.log import LOGGER_NAME, event_fields
from tests.functions.conftest import CREDENTIALS, World, build
from tests.support import (
    CLUSTER1,
    CLUSTER2,
    DB1_DATA,
    DB1_SHUTOFF,
    DB1_SYSTEM,
    PID,
    SHARED,
    SPARE,
    WEB1,
    WEB1_DATA,
    WEB1_LOGS,
    WEB1_SYSTEM,
    WEB2,
    WEB2_DATA,
)

KEY = f"{PID}/{WEB1}/{WEB1_DATA}"


def request(**fields: Any) -> DetachRequest:
    return DetachRequest.model_validate({"server_id": WEB1, "volume_id": WEB1_DATA, **fields})


def error_rule(
    status: int, code: str, *, methods: tuple[str, ...] = ("DELETE",), **more: Any
) -> dict[str, Any]:
    return {"errors": [{"rate": 1.0, "methods": list(methods), "status": status, "code": code, **more}]}


# -- accepted, and what a duplicate is told -------------------------------------------------------


def test_an_accepted_request_publishes_its_job_and_keeps_the_key(world: World) -> None:
    fns = build(world)
    outcome = fns.detach(request(idempotency_key="alert-1"))

    assert outcome.status is DetachStatus.ACCEPTED
    assert world.jobs.types() == ["ecs-detach.accepted"]
    (event,) = world.jobs.events()
    assert event["data"]["job_id"] == outcome.job_id
    assert event["data"]["idempotency_key"] == "alert-1"
    assert world.jobs.messages[0][0] == world.clock() + 2.0  # the first poll after first_delay_s
    assert world.deletes() == [WEB1_DATA]
    seen = world.store.peek("alert-1")
    assert seen is not None
    assert seen.record == {"outcome": "accepted", "job_id": outcome.job_id}
    assert world.results.messages == []


def test_a_duplicate_of_an_accepted_request_gets_its_job_and_202(world: World) -> None:
    fns = build(world)
    first = fns.detach(request())
    again = fns.detach(request())

    assert (again.status, again.original, again.job_id) == (DetachStatus.DUPLICATE, "accepted", first.job_id)
    assert record_http_status(again.status, again.original) == 202
    assert world.deletes() == [WEB1_DATA]
    assert len(world.jobs.messages) == 1


def test_a_duplicate_of_a_refusal_gets_409_with_the_original_code(world: World) -> None:
    fns = build(world, policy=SafetyPolicy(allowed_servers=[WEB2]))
    first = fns.detach(request())
    again = fns.detach(request())

    assert (first.status, first.error_code) == (DetachStatus.REJECTED, "PolicyServerNotAllowed")
    assert (again.status, again.original, again.error_code) == (
        DetachStatus.DUPLICATE,
        "rejected",
        "PolicyServerNotAllowed",
    )
    assert record_http_status(again.status, again.original) == 409
    assert len(world.results.messages) == 1  # one result event for the request, not one per delivery


def test_only_an_accepted_key_is_completed_without_a_sync(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The completion of an accepted key is the one write that need not wait for the disk (a
    power loss that rolls it back leaves what a crash after the publish leaves, which the relay
    repairs); a refusal's completion is its only record, and is synced."""
    completions: list[tuple[str, bool]] = []
    complete = world.store.complete

    def spy(key: str, record: dict[str, Any], *, ttl_s: float, synced: bool = True) -> None:
        completions.append((record["outcome"], synced))
        complete(key, record, ttl_s=ttl_s, synced=synced)

    monkeypatch.setattr(world.store, "complete", spy)
    assert build(world).detach(request()).status is DetachStatus.ACCEPTED
    refusing = build(world, policy=SafetyPolicy(allowed_servers=[WEB1]))
    assert refusing.detach(request(server_id=WEB2, volume_id=WEB2_DATA)).status is DetachStatus.REJECTED

    assert completions == [("accepted", False), ("rejected", True)]


def test_a_duplicate_of_an_already_detached_disk_is_200(world: World) -> None:
    fns = build(world)
    world.backend.detach_volume(PID, WEB1, WEB1_DATA)
    world.clock.advance(10)  # that job ends: the disk is off
    first = fns.detach(request())
    again = fns.detach(request())

    assert (first.status, first.error_code) == (DetachStatus.ALREADY_DETACHED, "VolumeNotAttached")
    assert world.results_of()[0]["fail_reason"] == f"volume {WEB1_DATA} is not attached to any server"
    assert (again.status, again.original) == (DetachStatus.DUPLICATE, "already_detached")
    assert again.reason == "the same request was handled before: already_detached"
    assert record_http_status(again.status, again.original) == 200
    assert world.deletes() == []


def test_a_duplicate_after_the_job_ended_sees_the_result(world: World) -> None:
    fns = build(world)
    first = fns.detach(request())
    fns.drain(world)
    again = fns.detach(request())

    assert (again.status, again.original, again.job_id) == (DetachStatus.DUPLICATE, "succeeded", first.job_id)
    assert record_http_status(again.status, again.original) == 202


def test_the_same_key_for_another_disk_is_a_conflict_that_keeps_the_first(world: World) -> None:
    fns = build(world)
    fns.detach(request(idempotency_key="k"))
    other = fns.detach(request(idempotency_key="k", volume_id=WEB1_LOGS))

    assert (other.status, other.error_code) == (DetachStatus.REJECTED, "IdempotencyConflict")
    seen = world.store.peek("k")
    assert seen is not None
    assert seen.record is not None
    assert seen.record["outcome"] == "accepted"  # the first request's record is untouched


def test_a_request_in_progress_elsewhere_is_asked_to_retry(world: World) -> None:
    fns = build(world)
    fns.guard.claim(KEY, request(project_id=PID), PID)  # another instance is at it right now

    outcome = fns.detach(request())

    assert outcome.status is DetachStatus.RETRY
    assert outcome.retry_after_s == 30.0  # at most busy_retry_s, at least a second
    assert world.deletes() == []


# -- refusals and temporary refusals ---------------------------------------------------------------


def test_no_project_anywhere_is_rejected_without_a_key(world: World) -> None:
    outcome = build(world, project=None).detach(request())

    assert (outcome.status, outcome.error_code) == (DetachStatus.REJECTED, "MissingProjectId")
    assert world.results.types() == ["ecs-detach.rejected"]
    assert world.results_of()[0]["fail_reason"] == "no project_id in the request or credentials"
    assert world.store.peek(KEY) is None


@pytest.mark.parametrize(
    ("policy", "fields", "code"),
    [
        (SafetyPolicy(allowed_projects=["0" * 32]), {}, "PolicyProjectNotAllowed"),
        (SafetyPolicy(allowed_servers=[WEB2]), {}, "PolicyServerNotAllowed"),
        (SafetyPolicy(), {"delete_flag": 1}, "PolicyForceNotAllowed"),
        (
            SafetyPolicy(required_tag="auto-remediation=true"),
            {"server_id": DB1_SHUTOFF, "volume_id": DB1_DATA},
            "PolicyTagMissing",
        ),
        (SafetyPolicy(), {"volume_id": WEB1_SYSTEM}, "PolicySystemDisk"),
        (
            SafetyPolicy(allow_system_disk_when_stopped=True),
            {"volume_id": WEB1_SYSTEM},
            "PolicySystemDiskRunning",
        ),
        (
            SafetyPolicy(allow_system_disk_when_stopped=True, allow_force=True),
            {"server_id": DB1_SHUTOFF, "volume_id": DB1_SYSTEM, "delete_flag": 1},
            "PolicySystemDiskForce",
        ),
        (SafetyPolicy(), {"server_id": CLUSTER1, "volume_id": SHARED}, "PolicySharedDisk"),
        (SafetyPolicy(), {"device": "/dev/vdz", "volume_id": None}, "DeviceNotAttached"),
    ],
)
def test_each_refusal_is_final_and_makes_no_detach(
    world: World, policy: SafetyPolicy, fields: dict[str, Any], code: str
) -> None:
    fns = build(world, policy=policy)
    outcome = fns.detach(request(**fields))

    assert (outcome.status, outcome.error_code) == (DetachStatus.REJECTED, code)
    assert world.deletes() == []
    assert world.results.types() == ["ecs-detach.rejected"]
    assert world.results.events()[0]["data"]["error_code"] == code
    assert outcome.reason == f"{code}: {world.results.events()[0]['data']['fail_reason']}"
    assert len(outcome.reason) > len(code) + 10  # says why, not only which rule
    key = f"{PID}/{outcome.request.server_id}/{outcome.request.volume_id or outcome.request.device}"
    seen = world.store.peek(key)
    assert seen is not None
    assert seen.state is ClaimState.DONE


@pytest.mark.parametrize(
    ("policy", "fields"),
    [
        (SafetyPolicy(allow_force=True), {"delete_flag": 1}),
        (
            SafetyPolicy(allow_system_disk_when_stopped=True),
            {"server_id": DB1_SHUTOFF, "volume_id": DB1_SYSTEM},
        ),
        (SafetyPolicy(allow_shared_disks=True), {"server_id": CLUSTER1, "volume_id": SHARED}),
        (SafetyPolicy(allowed_servers=[WEB1], allowed_projects=[PID]), {}),
        (SafetyPolicy(), {"device": "vdb", "volume_id": None}),
        (SafetyPolicy(), {"server_id": DB1_SHUTOFF, "volume_id": DB1_DATA}),
    ],
)
def test_each_permission_lets_the_detach_through(
    world: World, policy: SafetyPolicy, fields: dict[str, Any]
) -> None:
    outcome = build(world, policy=policy).detach(request(**fields))

    assert outcome.status is DetachStatus.ACCEPTED, outcome.reason
    assert len(world.deletes()) == 1


def test_a_disk_on_another_server_is_refused_naming_that_server(world: World) -> None:
    outcome = build(world).detach(request(volume_id=WEB2_DATA))

    assert (outcome.status, outcome.error_code) == (DetachStatus.REJECTED, "VolumeNotAttached")
    assert WEB2 in outcome.reason
    assert world.deletes() == []


def test_a_blast_radius_refusal_holds_only_for_now(world: World) -> None:
    fns = build(world, max_per_window=1)
    assert fns.detach(request()).status is DetachStatus.ACCEPTED
    assert fns.blast.used(PID) == 1  # the detach took the project's one slot
    limited = fns.detach(request(server_id=WEB2, volume_id=WEB2_DATA))

    assert limited.status is DetachStatus.RETRY
    assert "BlastRadiusLimit" in limited.reason
    assert world.store.peek(f"{PID}/{WEB2}/{WEB2_DATA}") is None
    # its locks were taken with the slot or not at all: nothing is left to hold its server
    assert world.store.holder(f"server:{PID}:{WEB2}") is None
    assert world.store.holder(f"volume:{PID}:{WEB2_DATA}") is None
    assert world.results.messages == []  # nothing final was said
    world.clock.advance(601)  # the window passes: the same request goes through
    assert fns.detach(request(server_id=WEB2, volume_id=WEB2_DATA)).status is DetachStatus.ACCEPTED


def test_an_open_circuit_refuses_for_now_and_closes_again(world: World) -> None:
    fns = build(world, breaker_failures=1)
    world.backend.set_volume_fault(WEB1_DATA, _failing())
    fns.detach(request())
    fns.drain(world)
    assert world.results_of()[-1]["outcome"] == "failed"

    refused = fns.detach(request(server_id=WEB2, volume_id=WEB2_DATA))
    assert (refused.status, refused.retry_after_s) == (DetachStatus.RETRY, 30.0)
    assert "CircuitOpen: too many detach jobs failed recently" in refused.reason
    world.clock.advance(601)
    assert fns.detach(request(server_id=WEB2, volume_id=WEB2_DATA)).status is DetachStatus.ACCEPTED


def _failing() -> Any:
    from emulator.models import JobFailure, VolumeFault

    return VolumeFault(detach_fails_with=JobFailure(error_code="Ecs.1000", fail_reason="Nova timed out"))


# -- dry run ---------------------------------------------------------------------------------------


def test_a_dry_run_then_the_real_request(world: World) -> None:
    fns = build(world)
    rehearsal = fns.detach(request(dry_run=True))
    assert rehearsal.status is DetachStatus.DRY_RUN
    assert world.deletes() == []
    assert world.store.peek(KEY) is None  # the real request's key is untouched
    assert world.results.types() == ["ecs-detach.dry_run"]

    real = fns.detach(request())
    assert real.status is DetachStatus.ACCEPTED
    assert world.deletes() == [WEB1_DATA]


def test_a_dry_run_reports_the_refusal_the_real_one_would_meet(world: World) -> None:
    outcome = build(world, dry_run=True).detach(request(volume_id=WEB1_SYSTEM))

    assert (outcome.status, outcome.error_code) == (DetachStatus.REJECTED, "PolicySystemDisk")
    assert world.store.peek(f"{PID}/{WEB1}/{WEB1_SYSTEM}") is None


def test_a_dry_run_of_a_scope_refusal_makes_no_cloud_call(world: World) -> None:
    outcome = build(world, policy=SafetyPolicy(allowed_servers=[WEB2])).detach(request(dry_run=True))

    assert (outcome.status, outcome.error_code) == (DetachStatus.REJECTED, "PolicyServerNotAllowed")
    calls, _ = world.backend.ledger()
    assert calls == []


def test_the_dry_run_setting_rehearses_every_request(world: World) -> None:
    outcome = build(world, dry_run=True).detach(request(delete_flag=0))

    assert outcome.status is DetachStatus.DRY_RUN
    assert outcome.result is not None
    assert f"would detach volume {WEB1_DATA}" in (outcome.result.fail_reason or "")
    assert world.deletes() == []


# -- the cloud's answers ---------------------------------------------------------------------------


def test_a_cloud_refusal_of_the_request_is_final(world: World) -> None:
    world.faults(**error_rule(400, "Ecs.0005", message="invalid parameter"))
    fns = build(world, max_per_window=1)
    outcome = fns.detach(request())

    assert (outcome.status, outcome.error_code) == (DetachStatus.REJECTED, "Ecs.0005")
    world.faults()
    assert fns.detach(request()).status is DetachStatus.DUPLICATE  # final: kept under its key
    assert fns.blast.used(PID) == 0  # the refused call gave its slot back


def test_the_cloud_refusing_our_credentials_is_retried_not_final(world: World) -> None:
    world.faults(**error_rule(403, "IAM.0002", methods=("GET",), message="forbidden"))
    fns = build(world)
    outcome = fns.detach(request())

    assert outcome.status is DetachStatus.RETRY
    assert world.store.peek(KEY) is None
    world.faults()
    assert fns.detach(request()).status is DetachStatus.ACCEPTED


def test_no_answer_to_the_detach_is_retried_with_the_key_free(world: World) -> None:
    world.transport.fail = lambda r: r.method == "DELETE"
    fns = build(world)
    outcome = fns.detach(request())

    assert (outcome.status, outcome.retry_after_s) == (DetachStatus.RETRY, 5.0)
    assert "no answer from ECS" in outcome.reason
    assert len(world.slept) == 2  # the client tried three times, backing off on the fake clock
    assert world.store.peek(KEY) is None
    assert fns.blast.used(PID) == 0  # the call that had no answer gave its slot back
    world.transport.fail = lambda r: False
    assert fns.detach(request()).status is DetachStatus.ACCEPTED


def test_no_answer_to_the_reads_is_retried(world: World) -> None:
    world.transport.fail = lambda r: r.method == "GET"
    outcome = build(world).detach(request())

    assert outcome.status is DetachStatus.RETRY
    assert "no answer from the cloud" in outcome.reason


def test_a_throttled_detach_is_retried_soon(world: World) -> None:
    world.faults(**error_rule(429, "APIGW.0308"))
    outcome = build(world).detach(request())

    assert outcome.status is DetachStatus.RETRY
    assert outcome.retry_after_s == 5.0


def test_the_clouds_busy_answer_is_retried_after_busy_retry(world: World) -> None:
    world.backend.detach_volume(PID, WEB1, WEB1_LOGS)  # someone else is detaching on the server
    outcome = build(world).detach(request())

    assert outcome.status is DetachStatus.RETRY
    assert outcome.retry_after_s == 30.0
    assert "Ecs.0603" in outcome.reason


def test_a_disk_gone_from_evs_is_already_detached(world: World) -> None:
    world.faults(**error_rule(404, "EVS.2001", methods=("GET",), paths="cloudvolumes", message="gone"))
    world.backend.detach_volume(PID, WEB1, WEB1_DATA)
    world.clock.advance(10)
    outcome = build(world).detach(request())

    assert (outcome.status, outcome.error_code) == (DetachStatus.ALREADY_DETACHED, "VolumeNotFound")
    assert world.results_of()[0]["fail_reason"] == "gone"  # EVS's own words


# -- a crash, a topic that is down ----------------------------------------------------------------


def test_a_crash_after_the_detach_call_is_resumed_not_repeated(world: World) -> None:
    fns = build(world)
    world.jobs.down = True
    first = fns.detach(request())  # the call is made, the jobs topic does not take the job

    assert first.status is DetachStatus.RETRY
    assert world.deletes() == [WEB1_DATA]
    seen = world.store.peek(KEY)
    assert seen is not None
    assert "job_id" in seen.progress  # the job is noted, the key waits for the retry
    world.jobs.down = False

    again = fns.detach(request())
    assert again.status is DetachStatus.ACCEPTED
    assert world.deletes() == [WEB1_DATA]  # no second call
    assert world.jobs.types() == ["ecs-detach.accepted"]
    fns.drain(world)
    assert [r["outcome"] for r in world.results_of()] == ["succeeded"]


def test_a_resumed_request_by_device_publishes_the_job_of_its_first_call(world: World) -> None:
    fns = build(world)
    world.jobs.down = True
    assert fns.detach(request(device="vdb", volume_id=None)).status is DetachStatus.RETRY
    world.jobs.down = False

    again = fns.detach(request(device="vdb", volume_id=None))

    (event,) = world.jobs.events()
    (delete,) = [c for c in world.backend.ledger()[0] if c.method == "DELETE"]
    assert (again.status, again.request.volume_id) == (DetachStatus.ACCEPTED, WEB1_DATA)
    assert (event["data"]["volume_id"], event["data"]["job_id"]) == (WEB1_DATA, delete.job_id)
    assert event["data"]["request_id"] == delete.request_id


def test_a_crash_after_the_job_event_went_out_still_ends_in_a_result(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    fns = build(world)

    def crash(key: str, record: dict[str, Any], *, synced: bool = True) -> None:
        raise RuntimeError("the instance died before keeping the outcome")

    monkeypatch.setattr(fns.guard, "complete", crash)
    with pytest.raises(RuntimeError):
        fns.detach(request())
    monkeypatch.undo()
    assert world.jobs.types() == ["ecs-detach.accepted"]  # the event is out, the record still in progress

    fns.drain(world)

    assert [r["outcome"] for r in world.results_of()] == ["succeeded"]  # its event is trusted


def test_a_crash_between_the_locks_and_the_note_leaves_no_lock_behind(world: World) -> None:
    fns = build(world)
    fns.guard.claim(KEY, request(project_id=PID), PID)  # an instance took the key and the locks,
    assert fns.guard.acquire(fns.guard.locks(PID, WEB1, WEB1_DATA, KEY))
    world.backend.detach_volume(PID, WEB1, WEB1_DATA)  # made the call, and died before noting it
    world.clock.advance(61)  # its claim lapses; the job has ended

    again = fns.detach(request())  # the sender's retry takes the key over

    assert again.status is DetachStatus.ALREADY_DETACHED
    other = fns.detach(request(volume_id=WEB1_LOGS))
    assert other.status is DetachStatus.ACCEPTED  # not queued behind the dead instance's locks
    assert world.store.holder(f"volume:{PID}:{WEB1_DATA}") is None


def test_a_results_topic_that_is_down_frees_the_key(world: World) -> None:
    world.results.down = True
    outcome = build(world, policy=SafetyPolicy(allowed_servers=[WEB2])).detach(request())

    assert outcome.status is DetachStatus.RETRY
    assert world.store.peek(KEY) is None


def test_a_jobs_topic_that_is_down_when_queueing_frees_the_key(world: World) -> None:
    fns = build(world)
    fns.detach(request())
    world.jobs.down = True
    outcome = fns.detach(request(volume_id=WEB1_LOGS))

    assert (outcome.status, outcome.retry_after_s) == (DetachStatus.RETRY, 5.0)
    assert world.store.peek(f"{PID}/{WEB1}/{WEB1_LOGS}") is None


# -- queued behind a running job -------------------------------------------------------------------


def test_a_second_disk_of_a_busy_server_is_queued_then_detached(world: World) -> None:
    fns = build(world)
    first = fns.detach(request())
    second = fns.detach(request(volume_id=WEB1_LOGS))
    third = fns.detach(request(volume_id=WEB1_LOGS))  # the sender retries: a duplicate

    assert first.status is DetachStatus.ACCEPTED
    assert (second.status, second.request.volume_id) == (DetachStatus.QUEUED, WEB1_LOGS)
    assert second.reason == f"another detach on server {WEB1} or volume {WEB1_LOGS} is running"
    assert record_http_status(second.status) == 202
    assert (third.status, third.original) == (DetachStatus.DUPLICATE, "queued")
    assert world.deletes() == [WEB1_DATA]
    assert world.jobs.types() == ["ecs-detach.accepted", "ecs-detach.queued"]

    steps = fns.drain(world)

    assert world.deletes() == [WEB1_DATA, WEB1_LOGS]
    assert sorted(r["volume_id"] for r in world.results_of()) == sorted([WEB1_DATA, WEB1_LOGS])
    assert {r["outcome"] for r in world.results_of()} == {"succeeded"}
    (turn,) = [s for s in steps if s.what == "accepted"]  # the queued request's turn came once
    assert turn.job_id == [c.job_id for c in world.backend.ledger()[0] if c.method == "DELETE"][-1]
    assert not {WEB1_DATA, WEB1_LOGS} & world.attached(WEB1)


def test_a_queued_request_is_checked_again_on_its_turn(world: World) -> None:
    fns = build(world)
    fns.detach(request())
    fns.detach(request(volume_id=WEB1_LOGS))
    while world.jobs.next_type() == "ecs-detach.accepted":  # the running job ends first
        fns.step(world)
    world.backend.detach_volume(PID, WEB1, WEB1_LOGS)  # meanwhile someone takes the disk off by hand
    world.clock.advance(10)

    (turn,) = fns.drain(world)

    assert turn.what == "already_detached"
    assert world.deletes() == [WEB1_DATA]  # no detach call of ours for the disk that left
    assert [r["outcome"] for r in world.results_of()] == ["succeeded", "already_detached"]


def test_a_queued_request_past_its_deadline_is_rejected(world: World) -> None:
    fns = build(world, queue_timeout_s=4.0)
    world.backend.set_volume_fault(WEB1_DATA, _slow(3600.0))
    fns.detach(request())
    assert fns.detach(request(volume_id=WEB1_LOGS)).status is DetachStatus.QUEUED
    queued = _take(world, "ecs-detach.queued")
    world.clock.advance(5)

    step = fns.jobs(queued)

    assert (step.what, step.again) == ("rejected", None)
    (result,) = world.results_of()
    assert (result["volume_id"], result["error_code"]) == (WEB1_LOGS, "QueueTimeout")
    assert result["fail_reason"] == f"still waiting for another detach on server {WEB1} at the deadline"
    assert fns.detach(request(volume_id=WEB1_LOGS)).original == "rejected"
    assert world.deletes() == [WEB1_DATA]


def test_a_queued_request_still_blocked_waits_another_round(world: World) -> None:
    fns = build(world)
    world.backend.set_volume_fault(WEB1_DATA, _slow(60.0))
    fns.detach(request())
    fns.detach(request(volume_id=WEB1_LOGS))
    queued = _take(world, "ecs-detach.queued")
    world.clock.advance(5)

    step = fns.jobs(queued)

    assert step.what == "queued"
    assert step.delay_s == 5.0
    assert step.again is not None
    again_turn = parse_job_event(step.again).data
    assert isinstance(again_turn, DetachQueued)
    assert (again_turn.attempt, again_turn.volume_id) == (1, WEB1_LOGS)
    assert world.deletes() == [WEB1_DATA]
    again = fns.detach(request(volume_id=WEB1_LOGS))  # the sender's retry meanwhile
    assert (again.status, again.original) == (DetachStatus.DUPLICATE, "queued")


def test_a_queued_turn_delivered_early_waits_until_due_and_touches_nothing(world: World) -> None:
    fns = build(world)
    fns.detach(request())
    fns.detach(request(volume_id=WEB1_LOGS))
    queued = _take(world, "ecs-detach.queued")
    world.clock.advance(2)  # due 5 s after it was queued: 3 s early
    calls = len(world.backend.ledger()[0])

    step = fns.jobs(queued)

    assert (step.what, step.delay_s) == ("queued", 3.0)
    assert step.again is not None
    assert parse_job_event(step.again).data == parse_job_event(queued).data  # the same turn, not one on
    assert len(world.backend.ledger()[0]) == calls  # no cloud call
    fns.drain(world)  # the first detach ends
    assert fns.jobs(step.again).what == "queued"  # still early: not due before 08:30:05
    world.clock.advance(5)
    assert fns.jobs(step.again).what == "accepted"  # due: the turn is taken
    assert world.deletes() == [WEB1_DATA, WEB1_LOGS]


def test_a_stale_queued_event_changes_nothing(world: World) -> None:
    fns = build(world)
    fns.detach(request())
    fns.detach(request(volume_id=WEB1_LOGS))
    queued = next(body for _, body in world.jobs.messages if '"ecs-detach.queued"' in body)
    fns.drain(world)
    deletes = world.deletes()

    step = fns.jobs(queued)  # a redelivery after the request ended

    assert (step.what, step.again) == ("duplicate", None)
    assert world.deletes() == deletes


def test_a_queued_turn_that_gets_no_answer_stays_queued(world: World) -> None:
    fns = build(world)
    fns.detach(request())
    fns.detach(request(volume_id=WEB1_LOGS))
    while world.jobs.next_type() == "ecs-detach.accepted":
        fns.step(world)
    world.transport.fail = lambda r: r.method == "DELETE"

    step = fns.step(world)

    assert step is not None
    assert step.what == "queued"  # accepted as queued: not dropped, not answered for good
    assert world.jobs.types() == ["ecs-detach.queued"]
    world.transport.fail = lambda r: False
    fns.drain(world)
    assert world.deletes() == [WEB1_DATA, WEB1_LOGS]
    assert len(world.results_of()) == 2


def test_a_sender_retry_while_the_turn_is_running_is_a_queued_duplicate(world: World) -> None:
    fns = build(world)
    fns.detach(request())
    fns.detach(request(volume_id=WEB1_LOGS))
    key = f"{PID}/{WEB1}/{WEB1_LOGS}"
    taken = fns.guard.claim(key, request(volume_id=WEB1_LOGS, project_id=PID), PID)  # its turn runs now
    assert "queued" in taken.progress

    again = fns.detach(request(volume_id=WEB1_LOGS))

    assert (again.status, again.original) == (DetachStatus.DUPLICATE, "queued")
    assert record_http_status(again.status, again.original) == 202  # not 503: the turn makes the detach
    assert world.deletes() == [WEB1_DATA]


def test_a_sender_retry_while_the_job_is_being_published_is_an_accepted_duplicate(world: World) -> None:
    fns = build(world)
    fns.guard.claim(KEY, request(project_id=PID), PID)  # another instance made the call, noted its job,
    fns.guard.note(KEY, {"job_id": "0" * 32, "request_id": None, "volume_id": WEB1_DATA})  # not published yet

    again = fns.detach(request())

    assert (again.status, again.original, again.job_id) == (DetachStatus.DUPLICATE, "accepted", "0" * 32)
    assert record_http_status(again.status, again.original) == 202
    assert world.deletes() == []  # no second call while the first one's job is being handed on


def test_a_second_delivery_of_a_turn_being_taken_waits(world: World) -> None:
    fns = build(world)
    fns.detach(request())
    fns.detach(request(volume_id=WEB1_LOGS))
    queued = _take(world, "ecs-detach.queued")
    world.clock.advance(5)  # the turn is due
    key = f"{PID}/{WEB1}/{WEB1_LOGS}"
    fns.guard.claim(key, request(volume_id=WEB1_LOGS, project_id=PID), PID)  # the first delivery is at it

    step = fns.jobs(queued)

    assert step.what == "queued"
    assert step.again is not None  # it comes back: neither dropped nor made twice
    assert step.delay_s == 60.0  # when the other delivery's claim lapses (in_progress_ttl_s)
    assert world.deletes() == [WEB1_DATA]
    assert world.results.messages == []


def test_a_queued_event_whose_key_now_names_another_request_changes_nothing(world: World) -> None:
    fns = build(world)
    fns.detach(request())
    assert fns.detach(request(volume_id=WEB1_LOGS, idempotency_key="k")).status is DetachStatus.QUEUED
    queued = _take(world, "ecs-detach.queued")
    world.clock.advance(24 * 3600 + 1)  # the parked record lapses (keep_abandoned_s), the key is reused
    other = fns.detach(request(server_id=WEB2, volume_id=WEB2_DATA, idempotency_key="k"))
    assert other.status is DetachStatus.ACCEPTED

    turn = parse_job_event(queued).data
    assert isinstance(turn, DetachQueued)
    late = fns.detach.take_turn(turn)  # the old event comes back late

    assert (late.status, late.original, late.queued) == (DetachStatus.DUPLICATE, "conflict", None)
    assert WEB1_LOGS not in world.deletes()
    seen = world.store.peek("k")
    assert seen is not None
    assert seen.record == {"outcome": "accepted", "job_id": other.job_id}  # the new request's record stands


def test_evs_failing_while_checking_a_disk_elsewhere_is_retried_with_the_key_free(world: World) -> None:
    world.faults(**error_rule(500, "EVS.5000", methods=("GET",), paths="cloudvolumes", message="down"))
    fns = build(world)
    outcome = fns.detach(request(volume_id=WEB2_DATA))  # not on WEB1: EVS is asked where it is

    assert outcome.status is DetachStatus.RETRY
    assert outcome.retry_after_s == 5.0
    assert "EVS.5000" in outcome.reason
    assert world.store.peek(KEY.replace(WEB1_DATA, WEB2_DATA)) is None
    assert world.results.messages == []
    world.faults()
    refused = fns.detach(request(volume_id=WEB2_DATA))
    assert (refused.status, refused.error_code) == (DetachStatus.REJECTED, "VolumeNotAttached")
    assert world.deletes() == []


def test_a_request_queued_behind_its_volume_does_not_hold_its_server(world: World) -> None:
    world.backend.attach_volume(PID, CLUSTER2, SPARE)
    world.clock.advance(10)  # the attach job ends: cluster-2 has the shared disk and the spare
    fns = build(world, policy=SafetyPolicy(allow_shared_disks=True))
    first = fns.detach(request(server_id=CLUSTER1, volume_id=SHARED))
    behind = fns.detach(request(server_id=CLUSTER2, volume_id=SHARED))  # the volume is busy
    spare = fns.detach(request(server_id=CLUSTER2, volume_id=SPARE))  # the server is not

    assert (first.status, behind.status) == (DetachStatus.ACCEPTED, DetachStatus.QUEUED)
    assert spare.status is DetachStatus.ACCEPTED, spare.reason
    fns.drain(world)
    assert sorted(world.deletes()) == sorted([SHARED, SPARE, SHARED])
    assert {r["outcome"] for r in world.results_of()} == {"succeeded"}


# -- what reaches the cloud, the topics and the caller ----------------------------------------------


def test_every_call_is_made_in_the_requests_project(world: World) -> None:
    world.sign_with(CREDENTIALS.model_copy(update={"project_id": None}))  # no default project to fall back on
    fns = build(world, project=None)  # the project comes from each request
    accepted = fns.detach(request(project_id=PID, device="vdb", volume_id=None))
    shared = fns.detach(request(project_id=PID, server_id=CLUSTER1, volume_id=SHARED))  # EVS is read
    elsewhere = fns.detach(request(project_id=PID, volume_id=WEB2_DATA))  # EVS is read
    rehearsal = fns.detach(request(project_id=PID, volume_id=WEB1_LOGS, dry_run=True))
    fns.drain(world)  # the poll reads the job and the block devices

    assert accepted.status is DetachStatus.ACCEPTED, accepted.reason
    assert (shared.error_code, elsewhere.error_code) == ("PolicySharedDisk", "VolumeNotAttached")
    assert rehearsal.status is DetachStatus.DRY_RUN
    assert [r["outcome"] for r in world.results_of()] == ["rejected", "rejected", "dry_run", "succeeded"]
    assert world.deletes() == [WEB1_DATA]
    assert {r.url.path.split("/")[2] for r in world.transport.sent} == {PID}  # /v1/{project}/…


@pytest.mark.parametrize(("fields", "flag"), [({}, "0"), ({"delete_flag": 1}, "1")])
def test_force_reaches_the_cloud_only_when_asked(world: World, fields: dict[str, Any], flag: str) -> None:
    outcome = build(world, policy=SafetyPolicy(allow_force=True)).detach(request(**fields))

    assert outcome.status is DetachStatus.ACCEPTED
    (delete,) = [r for r in world.transport.sent if r.method == "DELETE"]
    assert delete.url.params.get("delete_flag", "0") == flag


def test_the_accepted_event_carries_the_job_and_when_to_poll(world: World) -> None:
    outcome = build(world).detach(request(alert_id="a-1"))

    assert outcome.accepted is not None
    assert (outcome.accepted.job_id, outcome.request.project_id) == (outcome.job_id, PID)
    (event,) = world.jobs.events()
    data = event["data"]
    (delete,) = [c for c in world.backend.ledger()[0] if c.method == "DELETE"]
    assert (data["request_id"], data["alert_id"]) == (delete.request_id, "a-1")
    assert data["not_before"] == (world.now() + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("rule", "status", "code"),
    [
        (
            {"code": "Ecs.0111", "status": 400, "message": "not attached"},
            DetachStatus.ALREADY_DETACHED,
            "Ecs.0111",
        ),
        (
            {"code": "Ecs.1000", "status": 404, "message": "itemNotFound: gone"},
            DetachStatus.ALREADY_DETACHED,
            "Ecs.1000",
        ),
        ({"code": "Ecs.1000", "status": 400, "message": "Nova says no"}, DetachStatus.REJECTED, "Ecs.1000"),
    ],
)
def test_a_refused_detach_call_ends_as_the_cloud_says_and_frees_the_server(
    world: World, rule: dict[str, Any], status: DetachStatus, code: str
) -> None:
    world.faults(**error_rule(**rule))
    fns = build(world)
    outcome = fns.detach(request())

    assert (outcome.status, outcome.error_code) == (status, code)
    (result,) = world.results_of()
    (delete,) = [c for c in world.backend.ledger()[0] if c.method == "DELETE"]
    assert (result["request_id"], result["fail_reason"]) == (delete.request_id, rule["message"])
    world.faults()
    assert fns.detach(request(volume_id=WEB1_LOGS)).status is DetachStatus.ACCEPTED  # not queued


def test_a_multiattach_disk_on_one_server_is_still_shared(world: World) -> None:
    world.backend.detach_volume(PID, CLUSTER2, SHARED)
    world.clock.advance(10)  # now only cluster-1 holds it, and it can be attached to others again
    outcome = build(world).detach(request(server_id=CLUSTER1, volume_id=SHARED))

    assert (outcome.status, outcome.error_code) == (DetachStatus.REJECTED, "PolicySharedDisk")


def test_the_same_key_for_the_same_disk_in_another_project_is_a_conflict(world: World) -> None:
    fns = build(world, policy=SafetyPolicy(allowed_projects=[PID]))
    fns.detach(request(idempotency_key="k"))
    other = fns.detach(request(idempotency_key="k", project_id="f" * 32))

    assert (other.status, other.error_code) == (DetachStatus.REJECTED, "IdempotencyConflict")
    assert "'k' was used before for a different request" in other.reason


@pytest.mark.parametrize(
    ("fields", "says"),
    [({}, f"would detach volume {WEB1_DATA} from server {WEB1}"), ({"delete_flag": 1}, "(force)")],
)
def test_a_dry_run_result_says_what_would_be_done(world: World, fields: dict[str, Any], says: str) -> None:
    outcome = build(world, policy=SafetyPolicy(allow_force=True)).detach(request(dry_run=True, **fields))

    (result,) = world.results_of()
    assert (outcome.status, result["error_code"]) == (DetachStatus.DRY_RUN, "DryRun")
    assert says in result["fail_reason"]
    assert ("(force)" in result["fail_reason"]) is bool(fields)


def test_a_dry_run_in_a_project_not_allowed_is_refused(world: World) -> None:
    outcome = build(world, policy=SafetyPolicy(allowed_projects=["0" * 32])).detach(request(dry_run=True))

    assert (outcome.status, outcome.error_code) == (DetachStatus.REJECTED, "PolicyProjectNotAllowed")


def test_every_request_is_logged_with_what_it_asked_for(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    build(world, dry_run=True).detach(request(device="vdb", delete_flag=1, idempotency_key="k", alert_id="a"))

    (logged,) = [event_fields(r) for r in caplog.records if r.getMessage() == "detach.requested"]
    assert logged == {
        "server_id": WEB1,
        "volume_id": WEB1_DATA,
        "device": "/dev/vdb",
        "project_id": PID,  # the credentials' project, when the request names none
        "force": True,
        "dry_run": True,  # the setting, though the request did not ask
        "idempotency_key": "k",
        "alert_id": "a",
        "origin": {},  # where it came from, for the audit history
        "reason": None,
    }


def test_each_decision_is_logged_for_the_operator(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    fns = build(world, policy=SafetyPolicy(allowed_servers=[WEB1]))
    accepted = fns.detach(request())
    fns.detach(request(server_id=WEB2, volume_id=WEB2_DATA))
    world.faults(**error_rule(403, "IAM.0002", methods=("GET",), message="forbidden"))
    fns.detach(request(volume_id=WEB1_LOGS))

    logged = {r.getMessage(): (r.levelno, event_fields(r)) for r in caplog.records}
    (delete,) = [c for c in world.backend.ledger()[0] if c.method == "DELETE"]
    assert logged["detach.accepted"][1] == {
        "server_id": WEB1,
        "volume_id": WEB1_DATA,
        "job_id": accepted.job_id,
        "request_id": delete.request_id,
        "http_status": 200,
        "idempotency_key": KEY,
        "alert_id": None,
    }
    assert logged["detach.refused_by_policy"][1] == {
        "server_id": WEB2,
        "code": "PolicyServerNotAllowed",
        "reason": f"server {WEB2} is not in the allowed servers",
        "idempotency_key": f"{PID}/{WEB2}/{WEB2_DATA}",  # it named none: the key it is known by
    }
    assert logged["detach.unauthorized"] == (logging.ERROR, {"code": "IAM.0002", "status": 403})


def test_each_retry_says_when(world: World) -> None:
    fns = build(world, max_per_window=1)
    world.results.down = True
    assert fns.detach(request(volume_id=WEB1_SYSTEM)).retry_after_s == 5.0  # its refusal was not published
    world.results.down = False
    world.jobs.down = True
    assert fns.detach(request()).retry_after_s == 5.0  # the job runs; its event goes with the retry
    world.jobs.down = False
    assert fns.detach(request()).status is DetachStatus.ACCEPTED
    limited = fns.detach(request(server_id=WEB2, volume_id=WEB2_DATA))
    assert (limited.status, limited.retry_after_s) == (DetachStatus.RETRY, 30.0)
    world.transport.fail = lambda r: r.method == "GET"
    assert fns.detach(request(server_id=DB1_SHUTOFF, volume_id=DB1_DATA)).retry_after_s == 5.0


def test_a_queued_request_at_its_deadline_is_rejected(world: World) -> None:
    fns = build(world, queue_timeout_s=5.0)
    world.backend.set_volume_fault(WEB1_DATA, _slow(3600.0))
    fns.detach(request())
    queued_outcome = fns.detach(request(volume_id=WEB1_LOGS))
    assert (queued_outcome.status, queued_outcome.retry_after_s) == (DetachStatus.QUEUED, 5.0)
    queued = _take(world, "ecs-detach.queued")
    world.clock.advance(5)  # exactly the deadline

    assert fns.jobs(queued).what == "rejected"


def test_a_queued_turn_meeting_a_busy_server_waits_the_busy_delay(world: World) -> None:
    fns = build(world)
    fns.detach(request())
    fns.detach(request(volume_id=WEB1_LOGS))
    while world.jobs.next_type() == "ecs-detach.accepted":  # the running job ends
        fns.step(world)
    world.faults(**error_rule(409, "Ecs.0603", message="other commands are running"))

    step = fns.step(world)

    assert step is not None
    assert (step.what, step.delay_s) == ("queued", 30.0)


@pytest.mark.parametrize("finisher", ["its next turn", "the sender's retry"])
def test_a_turn_whose_detach_was_made_is_finished_even_past_its_deadline(world: World, finisher: str) -> None:
    fns = build(world, queue_timeout_s=20.0)
    fns.detach(request())
    fns.detach(request(volume_id=WEB1_LOGS))
    while world.jobs.next_type() == "ecs-detach.accepted":
        fns.step(world)
    world.jobs.down = True  # the turn makes the call; its job event is not taken
    world.clock.advance(5)  # the turn is due
    turn = fns.jobs(_take(world, "ecs-detach.queued"))
    assert (turn.what, world.deletes()) == ("queued", [WEB1_DATA, WEB1_LOGS])
    assert turn.again is not None
    world.jobs.down = False
    world.clock.advance(60)  # past the queue's deadline

    if finisher == "its next turn":
        assert fns.jobs(turn.again).what == "accepted"
    else:
        assert fns.detach(request(volume_id=WEB1_LOGS)).status is DetachStatus.ACCEPTED
    assert world.deletes() == [WEB1_DATA, WEB1_LOGS]  # the call is not made twice
    fns.drain(world)
    assert [r["outcome"] for r in world.results_of()] == ["succeeded", "succeeded"]


def _take(world: World, kind: str) -> str:
    """Take the first message of type ``kind`` off the jobs topic, without moving the clock."""
    body = next(body for _, body in world.jobs.messages if f'"{kind}"' in body)
    world.jobs.messages = [(due, b) for due, b in world.jobs.messages if b != body]
    return body


def _slow(seconds: float) -> Any:
    from emulator.models import VolumeFault

    return VolumeFault(job_duration_s=seconds)
