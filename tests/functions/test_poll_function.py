"""The poll function, branch by branch, on the fake clock (tests/functions/conftest.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from emulator.models import JobFailure, VolumeFault
from handler.cloud import ApiError
from handler.core.models import CloudEvent, DetachAccepted, DetachRequest
from handler.core.outcomes import DetachStatus
from handler.functions.poll import PollOutcome
from handler.sources import parse_job_event
from tests.functions.conftest import Functions, World, build
from tests.support import PID, WEB1, WEB1_DATA, WEB1_LOGS, WEB2


def accept(world: World, fns: Functions, volume_id: str = WEB1_DATA, **fields: Any) -> DetachAccepted:
    """A detach accepted by the function, and its event taken off the jobs topic."""
    outcome = fns.detach(DetachRequest(server_id=WEB1, volume_id=volume_id, **fields))
    assert outcome.status is DetachStatus.ACCEPTED, outcome.reason
    body = world.jobs.take_due()  # moves the clock to the first poll
    assert body is not None
    event = parse_job_event(body)
    assert isinstance(event.data, DetachAccepted)
    return event.data


def _error(status: int, code: str) -> dict[str, Any]:
    """An error answered to every read of a job."""
    return {"rate": 1.0, "methods": ["GET"], "paths": "/jobs/", "status": status, "code": code}


def poll_until_done(fns: Functions, message: DetachAccepted, world: World, limit: int = 50) -> PollOutcome:
    for _ in range(limit):
        step = fns.poll(message)
        if step.next is None:
            return step
        world.clock.advance(step.delay_s)
        message = step.next
    raise AssertionError("no result")


def test_a_job_is_followed_to_success(world: World) -> None:
    fns = build(world)
    message = accept(world, fns)
    first = fns.poll(message)

    assert first.next is not None
    assert first.next.attempt == 1
    assert first.delay_s == 1.0  # 15 % of the job's age, at least min_delay_s
    done = poll_until_done(fns, first.next, world)

    assert done.result is not None
    assert done.result.outcome.value == "succeeded"
    assert done.result.polls >= 2
    assert world.results.types() == ["ecs-detach.succeeded"]
    assert WEB1_DATA not in world.attached(WEB1)
    assert fns.guard.acquire(fns.guard.locks(PID, WEB1, WEB1_LOGS, "next"))  # the server is free again


def test_a_message_delivered_early_waits_without_a_cloud_call(world: World) -> None:
    fns = build(world)
    message = accept(world, fns)
    early = message.model_copy(update={"not_before": world.now() + timedelta(seconds=7)})
    calls = len(world.backend.ledger()[0])

    step = fns.poll(early)

    assert (step.next, step.delay_s) == (early, 7.0)
    assert len(world.backend.ledger()[0]) == calls


def test_a_failed_job_is_reported_and_counted_by_the_breaker(world: World) -> None:
    fns = build(world, breaker_failures=1)
    world.backend.set_volume_fault(WEB1_DATA, VolumeFault(JobFailure("Ecs.1000", "Nova timed out")))
    done = poll_until_done(fns, accept(world, fns), world)

    assert done.result is not None
    assert (done.result.outcome.value, done.result.error_code, done.result.status) == (
        "failed",
        "Ecs.1000",
        "FAIL",
    )
    assert fns.blast.breaker_open(PID)


def test_success_while_the_disk_is_still_listed_waits_for_it_to_settle(world: World) -> None:
    world.faults(settle_lag_s=4.0)
    fns = build(world)
    message = accept(world, fns)
    world.clock.advance(3)  # the job reports SUCCESS; the server still lists the disk

    step = fns.poll(message)

    assert step.next is not None
    assert step.delay_s == 1.0  # the schedule's settle delay, not its growing poll delay
    done = poll_until_done(fns, step.next, world)
    assert done.result is not None
    assert done.result.outcome.value == "succeeded"


def test_a_job_past_its_deadline_times_out(world: World) -> None:
    fns = build(world, poll_timeout_s=5.0)
    world.backend.set_volume_fault(WEB1_DATA, VolumeFault(job_duration_s=600.0))
    done = poll_until_done(fns, accept(world, fns), world)

    assert done.result is not None
    assert (done.result.outcome.value, done.result.error_code) == ("timed_out", "PollDeadline")
    assert done.result.status == "RUNNING"


def test_a_disk_that_never_settles_times_out_as_settling(world: World) -> None:
    world.faults(settle_lag_s=600.0)
    fns = build(world, poll_timeout_s=10.0)
    done = poll_until_done(fns, accept(world, fns), world)

    assert done.result is not None
    assert (done.result.outcome.value, done.result.error_code) == ("timed_out", "JobSettling")


@pytest.mark.parametrize(("detached", "outcome"), [(True, "already_detached"), (False, "failed")])
def test_a_job_gone_is_judged_by_the_disk(world: World, detached: bool, outcome: str) -> None:
    fns = build(world)
    if not detached:
        world.backend.set_volume_fault(WEB1_DATA, VolumeFault(JobFailure("Ecs.1000", "Nova timed out")))
    message = accept(world, fns)
    world.clock.advance(10)  # the job ended (and then its record was deleted)
    world.faults(errors=[_error(404, "Common.0024")])

    step = fns.poll(message)

    assert step.result is not None
    assert step.result.outcome.value == outcome
    assert step.result.error_code == (None if detached else "JobNotFound")
    assert step.result.fail_reason == (None if detached else "job gone and the volume is still attached")


@pytest.mark.parametrize(("status", "code"), [(503, "Ecs.1001"), (400, "Ecs.1001"), (409, "Ecs.0603")])
def test_a_retryable_error_reading_the_job_comes_back_later(world: World, status: int, code: str) -> None:
    fns = build(world)
    message = accept(world, fns)
    world.faults(errors=[_error(status, code)])

    step = fns.poll(message)

    assert step.next is not None
    assert step.result is None
    assert world.results.messages == []


def test_no_answer_reading_the_job_comes_back_later(world: World) -> None:
    fns = build(world)
    message = accept(world, fns)
    world.transport.fail = lambda r: "/jobs/" in r.url.path

    step = fns.poll(message)

    assert step.next is not None
    assert world.results.messages == []


def test_an_error_that_will_not_pass_is_raised_for_the_consumer_to_dead_letter(world: World) -> None:
    fns = build(world)
    message = accept(world, fns)
    world.faults(errors=[_error(403, "IAM.0002")])

    with pytest.raises(ApiError) as raised:
        fns.poll(message)
    assert raised.value.code == "IAM.0002"


def test_a_result_reported_before_is_not_reported_again(world: World) -> None:
    fns = build(world)
    message = accept(world, fns)
    world.clock.advance(10)
    first = fns.poll(message)
    again = fns.poll(message)  # a redelivery of the same message

    assert first.result is not None
    assert again.result == first.result
    assert world.results.types() == ["ecs-detach.succeeded"]


def test_a_result_being_reported_by_another_delivery_is_waited_for(world: World) -> None:
    fns = build(world)
    message = accept(world, fns)
    world.clock.advance(10)
    assert fns.guard.claim_result(message.job_id).state.value == "new"  # another delivery, right now

    step = fns.poll(message)

    assert step.next is not None
    assert step.next.job_id == message.job_id
    assert step.delay_s == 60.0  # until the other delivery's claim lapses
    assert step.contended  # a caller at a terminal looks again sooner (the CLI's detach --wait)
    assert world.results.messages == []


def test_a_results_topic_that_is_down_reports_on_the_next_look(world: World) -> None:
    fns = build(world)
    message = accept(world, fns)
    world.clock.advance(10)
    world.results.down = True

    step = fns.poll(message)

    assert step.next is not None
    assert step.delay_s == 5.0
    assert not step.contended  # nobody else is reporting it: looking again sooner would not help
    world.results.down = False
    done = fns.poll(step.next)
    assert done.result is not None
    assert world.results.types() == ["ecs-detach.succeeded"]


# -- events that are not what they claim ----------------------------------------------------------


def _forged(message: DetachAccepted, **changes: Any) -> DetachAccepted:
    return message.model_copy(update=changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"job_id": "ff8080820000000000000000deadbeef"},  # a job the function never accepted
        {"idempotency_key": None},  # no key to check it against
        {"idempotency_key": "someone-else"},  # a key with no record
    ],
)
def test_a_forged_event_changes_nothing(world: World, changes: dict[str, Any]) -> None:
    fns = build(world, breaker_failures=1)
    message = accept(world, fns)
    calls = len(world.backend.ledger()[0])

    step = fns.poll(_forged(message, **changes))

    assert step.untrusted is not None
    assert (step.result, step.next) == (None, None)
    assert len(world.backend.ledger()[0]) == calls  # no cloud call
    assert world.results.messages == []
    assert not fns.blast.breaker_open(PID)
    assert not fns.guard.acquire(fns.guard.locks(PID, WEB1, WEB1_LOGS, "intruder"))  # locks still held


def test_an_event_naming_another_requests_key_releases_none_of_its_locks(world: World) -> None:
    fns = build(world)
    running = accept(world, fns, idempotency_key="running")  # its key is guessable, say
    forged = _forged(running, job_id="ff8080820000000000000000deadbeef")

    step = fns.poll(forged)

    assert step.untrusted is not None
    assert not fns.guard.acquire(fns.guard.locks(PID, WEB1, WEB1_LOGS, "next"))
    done = poll_until_done(fns, running, world)  # the real event still ends the real job
    assert done.result is not None


def test_the_jobs_function_drops_an_untrusted_event(world: World) -> None:
    fns = build(world)
    message = accept(world, fns)
    event = CloudEvent[DetachAccepted](
        source="attacker",
        type="ecs-detach.accepted",
        data=_forged(message, job_id="ff8080820000000000000000deadbeef"),
    )

    step = fns.jobs(event.model_dump_json())

    assert (step.what, step.again) == ("untrusted", None)


# -- what the result event and the next look say -----------------------------------------------------


def test_the_result_event_carries_the_jobs_story(world: World) -> None:
    fns = build(world)
    message = accept(world, fns)
    world.clock.advance(10.2504)  # the job ended a while ago: one look reports it

    step = fns.jobs(
        CloudEvent[DetachAccepted](source="test", type="ecs-detach.accepted", data=message).model_dump_json()
    )

    assert (step.what, step.job_id, step.again) == ("succeeded", message.job_id, None)
    (result,) = world.results_of()
    assert (result["job_id"], result["request_id"], result["status"]) == (
        message.job_id,
        message.request_id,
        "SUCCESS",
    )
    assert result["request_id"] is not None
    assert result["duration_s"] == 12.25  # 2 s to the first look, then 10.2504: to the millisecond
    assert result["polls"] == 1
    assert result["finished_at"] == world.now().isoformat().replace("+00:00", "Z")
    assert fns.guard.acquire(fns.guard.locks(PID, WEB2, WEB1_DATA, "next"))  # the volume is free too


def test_a_failed_or_late_job_says_why(world: World) -> None:
    fns = build(world, poll_timeout_s=30.0)
    world.backend.set_volume_fault(WEB1_DATA, VolumeFault(JobFailure("Ecs.1000", "Nova timed out")))
    failed = poll_until_done(fns, accept(world, fns), world)
    world.backend.set_volume_fault(WEB1_LOGS, VolumeFault(job_duration_s=600.0))
    late = poll_until_done(fns, accept(world, fns, WEB1_LOGS), world)

    assert failed.result is not None
    assert late.result is not None
    assert failed.result.fail_reason == "Nova timed out"
    assert late.result.fail_reason == "deadline passed: job RUNNING"


def test_each_look_says_when_the_next_is_due(world: World) -> None:
    fns = build(world)
    world.backend.set_volume_fault(WEB1_DATA, VolumeFault(job_duration_s=600.0))
    message = accept(world, fns)
    world.clock.advance(20)  # the job has run for 22 s

    step = fns.jobs(
        CloudEvent[DetachAccepted](source="test", type="ecs-detach.accepted", data=message).model_dump_json()
    )

    assert (step.what, step.job_id) == ("continued", message.job_id)
    assert step.delay_s == pytest.approx(3.3)  # 15 % of the job's age
    assert step.again is not None
    again = parse_job_event(step.again).data
    assert isinstance(again, DetachAccepted)
    assert again.attempt == 1
    assert again.not_before == world.now() + timedelta(seconds=step.delay_s)  # early comes back


def test_a_disk_still_listed_long_after_success_is_looked_at_after_the_settle_delay(world: World) -> None:
    world.faults(settle_lag_s=600.0)
    fns = build(world)
    message = accept(world, fns)
    world.clock.advance(20)  # SUCCESS long ago: the growing delay would be 3.3 s

    step = fns.poll(message)

    assert step.delay_s == 1.0


def test_an_untrusted_step_names_the_job_it_claimed(world: World) -> None:
    fns = build(world)
    message = _forged(accept(world, fns), job_id="ff8080820000000000000000deadbeef")
    event = CloudEvent[DetachAccepted](source="attacker", type="ecs-detach.accepted", data=message)

    assert fns.jobs(event.model_dump_json()).job_id == "ff8080820000000000000000deadbeef"
