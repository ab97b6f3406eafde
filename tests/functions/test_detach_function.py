"""The detach function, branch by branch, on the fake clock (tests/functions/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from handler.core.models import DetachRequest
from handler.core.outcomes import DetachStatus, record_http_status
from handler.core.policy import SafetyPolicy
from handler.store import ClaimState
from tests.functions.conftest import World, build
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


def test_a_duplicate_of_an_already_detached_disk_is_200(world: World) -> None:
    fns = build(world)
    world.backend.detach_volume(PID, WEB1, WEB1_DATA)
    world.clock.advance(10)  # that job ends: the disk is off
    first = fns.detach(request())
    again = fns.detach(request())

    assert (first.status, first.error_code) == (DetachStatus.ALREADY_DETACHED, "VolumeNotAttached")
    assert (again.status, again.original) == (DetachStatus.DUPLICATE, "already_detached")
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
    limited = fns.detach(request(server_id=WEB2, volume_id=WEB2_DATA))

    assert limited.status is DetachStatus.RETRY
    assert "BlastRadiusLimit" in limited.reason
    assert world.store.peek(f"{PID}/{WEB2}/{WEB2_DATA}") is None
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
    assert refused.status is DetachStatus.RETRY
    assert "CircuitOpen" in refused.reason
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
    fns = build(world)
    outcome = fns.detach(request())

    assert (outcome.status, outcome.error_code) == (DetachStatus.REJECTED, "Ecs.0005")
    world.faults()
    assert fns.detach(request()).status is DetachStatus.DUPLICATE  # final: kept under its key
    assert fns.blast.take(PID, "probe")  # the refused call gave its slot back


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

    assert outcome.status is DetachStatus.RETRY
    assert "no answer from ECS" in outcome.reason
    assert len(world.slept) == 2  # the client tried three times, backing off on the fake clock
    assert world.store.peek(KEY) is None
    assert fns.blast.take(PID, "probe")
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

    assert outcome.status is DetachStatus.RETRY
    assert world.store.peek(f"{PID}/{WEB1}/{WEB1_LOGS}") is None


# -- queued behind a running job -------------------------------------------------------------------


def test_a_second_disk_of_a_busy_server_is_queued_then_detached(world: World) -> None:
    fns = build(world)
    first = fns.detach(request())
    second = fns.detach(request(volume_id=WEB1_LOGS))
    third = fns.detach(request(volume_id=WEB1_LOGS))  # the sender retries: a duplicate

    assert first.status is DetachStatus.ACCEPTED
    assert second.status is DetachStatus.QUEUED
    assert record_http_status(second.status) == 202
    assert (third.status, third.original) == (DetachStatus.DUPLICATE, "queued")
    assert world.deletes() == [WEB1_DATA]
    assert world.jobs.types() == ["ecs-detach.accepted", "ecs-detach.queued"]

    steps = fns.drain(world)

    assert world.deletes() == [WEB1_DATA, WEB1_LOGS]
    assert sorted(r["volume_id"] for r in world.results_of()) == sorted([WEB1_DATA, WEB1_LOGS])
    assert {r["outcome"] for r in world.results_of()} == {"succeeded"}
    assert [s.what for s in steps].count("accepted") == 1  # the queued request's turn came once
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
    assert '"attempt":1' in step.again
    assert world.deletes() == [WEB1_DATA]
    again = fns.detach(request(volume_id=WEB1_LOGS))  # the sender's retry meanwhile
    assert (again.status, again.original) == (DetachStatus.DUPLICATE, "queued")


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

    step = fns.jobs(queued)  # the old event comes back late

    assert (step.what, step.again) == ("duplicate", None)
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


def _take(world: World, kind: str) -> str:
    """Take the first message of type ``kind`` off the jobs topic, without moving the clock."""
    body = next(body for _, body in world.jobs.messages if f'"{kind}"' in body)
    world.jobs.messages = [(due, b) for due, b in world.jobs.messages if b != body]
    return body


def _slow(seconds: float) -> Any:
    from emulator.models import VolumeFault

    return VolumeFault(job_duration_s=seconds)
